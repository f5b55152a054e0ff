package agent

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/phonefarm/phonefarm/agent/node"
	"github.com/phonefarm/phonefarm/agent/pods"
)

// stats answers the kubelet's /stats/summary: the node's CPU, memory and
// filesystem from its sensors, each running container's CPU and memory
// from its processes. CPU rates (usageNanoCores) are measured between two
// requests, as the kubelet's are between two housekeeping samples.
type stats struct {
	node    string
	started time.Time
	sensors node.Sensors
	pods    *pods.Manager
	proc    string
	now     func() time.Time

	mu   sync.Mutex
	prev map[string]cpuSample // by "" (the node) or pod UID/container
}

type cpuSample struct {
	at    time.Time
	total time.Duration
}

// rate is the CPU use since the previous sample of key, in nanocores; nil
// on the first sample.
func (s *stats) rate(key string, now time.Time, total time.Duration) *uint64 {
	prev, ok := s.prev[key]
	s.prev[key] = cpuSample{at: now, total: total}
	if !ok || !now.After(prev.at) || total < prev.total {
		return nil
	}
	v := uint64(float64(total-prev.total) / now.Sub(prev.at).Seconds())
	return &v
}

func u64(v uint64) *uint64 { return &v }

func (s *stats) Summary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	r, err := s.sensors.Read(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	t := metav1.NewTime(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prev == nil {
		s.prev = map[string]cpuSample{}
	}
	sum := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{
		NodeName:  s.node,
		StartTime: metav1.NewTime(s.started),
		Memory: &statsv1alpha1.MemoryStats{
			Time: t, AvailableBytes: u64(r.MemAvailable),
			UsageBytes: u64(r.MemTotal - r.MemAvailable), WorkingSetBytes: u64(r.MemTotal - r.MemAvailable),
		},
		Fs: &statsv1alpha1.FsStats{
			Time: t, CapacityBytes: u64(r.DiskTotal), AvailableBytes: u64(r.DiskFree), UsedBytes: u64(r.DiskTotal - r.DiskFree),
		},
	}}
	// Android keeps /proc/stat from apps on some releases: the node then
	// reports no CPU rather than a made-up one.
	if busy, ok := cpuBusy(s.proc); ok {
		sum.Node.CPU = &statsv1alpha1.CPUStats{Time: t, UsageCoreNanoSeconds: u64(uint64(busy)), UsageNanoCores: s.rate("", now, busy)}
	}
	seen := map[string]bool{"": true}
	for _, p := range s.pods.Usage(s.proc) {
		ps := statsv1alpha1.PodStats{
			PodRef:    statsv1alpha1.PodReference{Name: p.Name, Namespace: p.Namespace, UID: string(p.UID)},
			StartTime: metav1.NewTime(p.Started),
		}
		var cpu time.Duration
		var mem uint64
		for _, c := range p.Containers {
			key := string(p.UID) + "/" + c.Name
			seen[key] = true
			cpu += c.CPU
			mem += c.Memory
			ps.Containers = append(ps.Containers, statsv1alpha1.ContainerStats{
				Name: c.Name, StartTime: metav1.NewTime(c.Started),
				CPU:    &statsv1alpha1.CPUStats{Time: t, UsageCoreNanoSeconds: u64(uint64(c.CPU)), UsageNanoCores: s.rate(key, now, c.CPU)},
				Memory: &statsv1alpha1.MemoryStats{Time: t, UsageBytes: u64(c.Memory), WorkingSetBytes: u64(c.Memory), RSSBytes: u64(c.Memory)},
			})
		}
		seen[string(p.UID)] = true
		ps.CPU = &statsv1alpha1.CPUStats{Time: t, UsageCoreNanoSeconds: u64(uint64(cpu)), UsageNanoCores: s.rate(string(p.UID), now, cpu)}
		ps.Memory = &statsv1alpha1.MemoryStats{Time: t, UsageBytes: u64(mem), WorkingSetBytes: u64(mem), RSSBytes: u64(mem)}
		sum.Pods = append(sum.Pods, ps)
	}
	for k := range s.prev {
		if !seen[k] {
			delete(s.prev, k)
		}
	}
	return sum, nil
}

// cpuBusy is the CPU time all cores spent other than idle and waiting
// for I/O, from /proc/stat.
func cpuBusy(proc string) (time.Duration, bool) {
	if proc == "" {
		proc = "/proc"
	}
	b, err := os.ReadFile(filepath.Join(proc, "stat"))
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[0] != "cpu" {
			continue
		}
		// user nice system idle iowait irq softirq [steal ...]
		var busy uint64
		for i, v := range f[1:] {
			if i == 3 || i == 4 || i > 7 {
				continue // idle, iowait; guest time is inside user
			}
			n, _ := strconv.ParseUint(v, 10, 64)
			busy += n
		}
		return time.Duration(busy) * time.Second / 100, true
	}
	return 0, false
}
