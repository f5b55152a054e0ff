package pods

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// PodUsage is what one pod's running containers use now.
type PodUsage struct {
	Namespace, Name string
	UID             types.UID
	Started         time.Time
	Containers      []ContainerUsage
}

// ContainerUsage is one running container's processes: proot and what
// runs under it, the process group the agent started.
type ContainerUsage struct {
	Name    string
	Started time.Time
	// CPU is the processes' CPU time so far, the exited ones' included
	// (proot waits for them).
	CPU time.Duration
	// Memory is their resident set.
	Memory uint64
}

// Usage reads each pod's running containers' CPU time and memory from
// procfs (proc is its root, "/proc" when empty). A container whose
// processes cannot be read is reported with zeros.
func (m *Manager) Usage(proc string) []PodUsage {
	if proc == "" {
		proc = "/proc"
	}
	groups := readGroups(proc)
	m.mu.Lock()
	runs := make([]*podRun, 0, len(m.pods))
	for _, p := range m.pods {
		runs = append(runs, p)
	}
	m.mu.Unlock()
	var out []PodUsage
	for _, p := range runs {
		p.mu.Lock()
		pod := p.pod
		cs := append(append([]*container{}, p.inits...), p.mains...)
		p.mu.Unlock()
		u := PodUsage{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, Started: pod.CreationTimestamp.Time}
		if pod.Status.StartTime != nil {
			u.Started = pod.Status.StartTime.Time
		}
		for _, c := range cs {
			c.mu.Lock()
			proc := c.proc
			c.mu.Unlock()
			if proc == nil {
				continue
			}
			select {
			case <-proc.done:
				continue
			default:
			}
			g := groups[proc.pgid]
			u.Containers = append(u.Containers, ContainerUsage{Name: c.name(), Started: proc.started, CPU: g.cpu, Memory: g.rss})
		}
		out = append(out, u)
	}
	return out
}

type groupUsage struct {
	cpu time.Duration
	rss uint64
}

// clockTicks is USER_HZ, 100 on every Linux and Android ABI.
const clockTicks = 100

// readGroups sums CPU time and resident memory per process group.
func readGroups(proc string) map[int]groupUsage {
	out := map[int]groupUsage{}
	entries, err := os.ReadDir(proc)
	if err != nil {
		return out
	}
	page := uint64(os.Getpagesize())
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(proc, e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name may hold spaces and parentheses: fields
		// start after the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		// f[0] is field 3 (state): pgrp is field 5, utime..cstime 14-17,
		// rss 24.
		if len(f) < 22 {
			continue
		}
		pgrp, _ := strconv.Atoi(f[2])
		var ticks uint64
		for _, k := range []int{11, 12, 13, 14} {
			v, _ := strconv.ParseUint(f[k], 10, 64)
			ticks += v
		}
		rss, _ := strconv.ParseUint(f[21], 10, 64)
		g := out[pgrp]
		g.cpu += time.Duration(ticks) * time.Second / clockTicks
		g.rss += rss * page
		out[pgrp] = g
	}
	return out
}
