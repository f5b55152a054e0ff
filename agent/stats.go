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

	dto "github.com/prometheus/client_model/go"
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

// MetricsResource answers the kubelet's /metrics/resource, what
// metrics-server reads for kubectl top: the summary's CPU time and
// working sets as Prometheus metrics, labelled as the kubelet labels them.
func (s *stats) MetricsResource(ctx context.Context) ([]*dto.MetricFamily, error) {
	sum, err := s.Summary(ctx)
	if err != nil {
		return nil, err
	}
	ms := func(t metav1.Time) *int64 { v := t.UnixMilli(); return &v }
	label := func(kv ...string) []*dto.LabelPair {
		var out []*dto.LabelPair
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, &dto.LabelPair{Name: &kv[i], Value: &kv[i+1]})
		}
		return out
	}
	family := func(name, help string, typ dto.MetricType) *dto.MetricFamily {
		return &dto.MetricFamily{Name: &name, Help: &help, Type: &typ}
	}
	counter := func(f *dto.MetricFamily, v float64, t metav1.Time, labels []*dto.LabelPair) {
		f.Metric = append(f.Metric, &dto.Metric{Label: labels, Counter: &dto.Counter{Value: &v}, TimestampMs: ms(t)})
	}
	gauge := func(f *dto.MetricFamily, v float64, t metav1.Time, labels []*dto.LabelPair) {
		f.Metric = append(f.Metric, &dto.Metric{Label: labels, Gauge: &dto.Gauge{Value: &v}, TimestampMs: ms(t)})
	}
	nodeCPU := family("node_cpu_usage_seconds_total", "Cumulative cpu time consumed by the node in core-seconds", dto.MetricType_COUNTER)
	nodeMem := family("node_memory_working_set_bytes", "Current working set of the node in bytes", dto.MetricType_GAUGE)
	podCPU := family("pod_cpu_usage_seconds_total", "Cumulative cpu time consumed by the pod in core-seconds", dto.MetricType_COUNTER)
	podMem := family("pod_memory_working_set_bytes", "Current working set of the pod in bytes", dto.MetricType_GAUGE)
	ctrCPU := family("container_cpu_usage_seconds_total", "Cumulative cpu time consumed by the container in core-seconds", dto.MetricType_COUNTER)
	ctrMem := family("container_memory_working_set_bytes", "Current working set of the container in bytes", dto.MetricType_GAUGE)
	ctrStart := family("container_start_time_seconds", "Start time of the container since unix epoch in seconds", dto.MetricType_GAUGE)
	if c := sum.Node.CPU; c != nil && c.UsageCoreNanoSeconds != nil {
		counter(nodeCPU, float64(*c.UsageCoreNanoSeconds)/1e9, c.Time, nil)
	}
	if m := sum.Node.Memory; m != nil && m.WorkingSetBytes != nil {
		gauge(nodeMem, float64(*m.WorkingSetBytes), m.Time, nil)
	}
	for _, p := range sum.Pods {
		if p.CPU != nil && p.CPU.UsageCoreNanoSeconds != nil {
			counter(podCPU, float64(*p.CPU.UsageCoreNanoSeconds)/1e9, p.CPU.Time, label("pod", p.PodRef.Name, "namespace", p.PodRef.Namespace))
		}
		if p.Memory != nil && p.Memory.WorkingSetBytes != nil {
			gauge(podMem, float64(*p.Memory.WorkingSetBytes), p.Memory.Time, label("pod", p.PodRef.Name, "namespace", p.PodRef.Namespace))
		}
		for _, c := range p.Containers {
			l := label("container", c.Name, "pod", p.PodRef.Name, "namespace", p.PodRef.Namespace)
			if c.CPU != nil && c.CPU.UsageCoreNanoSeconds != nil {
				counter(ctrCPU, float64(*c.CPU.UsageCoreNanoSeconds)/1e9, c.CPU.Time, l)
			}
			if c.Memory != nil && c.Memory.WorkingSetBytes != nil {
				gauge(ctrMem, float64(*c.Memory.WorkingSetBytes), c.Memory.Time, l)
			}
			gauge(ctrStart, float64(c.StartTime.Unix()), c.StartTime, l)
		}
	}
	var out []*dto.MetricFamily
	for _, f := range []*dto.MetricFamily{nodeCPU, nodeMem, podCPU, podMem, ctrCPU, ctrMem, ctrStart} {
		if len(f.Metric) > 0 {
			out = append(out, f)
		}
	}
	return out, nil
}
