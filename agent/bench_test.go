package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/phonefarm/phonefarm/agent/node"
	"github.com/phonefarm/phonefarm/agent/proot"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testenv"
)

// BenchmarkAgent measures the agent against real k3s (bench/agent.sh):
// from start to its node Ready, its resident memory once idle, and a
// pod's start with its image already on the phone.
func BenchmarkAgent(b *testing.B) {
	a := newAgentFarm(b)
	ctx := b.Context()
	// A new cluster makes the default service account a moment after its
	// API answers; pods are admitted once it exists.
	waitFor(b, "the default service account", time.Minute, func(ctx context.Context) (bool, error) {
		_, err := a.cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
	var ready, podStart, rss, anon float64
	for i := range b.N {
		name := fmt.Sprintf("bench%d", i)
		// Watches, not polls: a poll's period would round every figure up.
		nodes, err := a.cs.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		p := a.start(b, name, nil)
		watchUntil(b, "node Ready", nodes, func(o runtime.Object) bool {
			c := condition(o.(*corev1.Node), corev1.NodeReady)
			return c != nil && c.Status == corev1.ConditionTrue
		})
		ready += time.Since(t0).Seconds()

		// One pod pulls the image; the measured one finds it cached.
		run := func(pod string) time.Duration {
			grace := int64(0)
			spec := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod}, Spec: corev1.PodSpec{
				NodeName:                      name,
				Tolerations:                   []corev1.Toleration{{Key: node.RuntimeLabel, Operator: corev1.TolerationOpExists}},
				TerminationGracePeriodSeconds: &grace,
				Containers:                    []corev1.Container{{Name: "c", Image: testbed.BusyboxImage, Command: []string{"sleep", "3600"}}},
			}}
			pods, err := a.cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + pod})
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			if _, err := a.cs.CoreV1().Pods("default").Create(ctx, spec, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			watchUntil(b, "pod "+pod+" Running", pods, func(o runtime.Object) bool {
				return o.(*corev1.Pod).Status.Phase == corev1.PodRunning
			})
			d := time.Since(t0)
			_ = a.cs.CoreV1().Pods("default").Delete(ctx, pod, metav1.DeleteOptions{})
			return d
		}
		run(name + "-pull")
		podStart += run(name + "-cached").Seconds()

		// Idle: no pod left, a few heartbeats later.
		time.Sleep(30 * time.Second)
		rss += float64(vmRSS(b, p.cmd.Process.Pid)) / (1 << 20)
		// Of it, the heap and stacks (anonymous) and the binary's pages.
		anon += float64(procStatus(b, p.cmd.Process.Pid, "RssAnon")) / (1 << 20)
		if err := p.stop(b); err != nil {
			b.Errorf("agent exit: %v", err)
		}
	}
	n := float64(b.N)
	b.ReportMetric(ready/n, "s-to-node-ready")
	b.ReportMetric(podStart/n, "s-pod-start-cached")
	b.ReportMetric(rss/n, "MB-idle-rss")
	b.ReportMetric(anon/n, "MB-idle-rss-anon")
}

// watchUntil reads w until an object satisfies done, within 3 minutes,
// and stops it.
func watchUntil(b *testing.B, what string, w watch.Interface, done func(runtime.Object) bool) {
	b.Helper()
	defer w.Stop()
	limit := time.After(3 * time.Minute)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatalf("%s: the watch ended", what)
			}
			if (ev.Type == watch.Added || ev.Type == watch.Modified) && done(ev.Object) {
				return
			}
		case <-limit:
			b.Fatalf("%s: not within 3m", what)
		}
	}
}

// vmRSS is the resident memory of the agent (the child of setpriv, or
// the process itself once setpriv has exec'd).
func vmRSS(b *testing.B, pid int) int64 { return procStatus(b, pid, "VmRSS") }

// procStatus is a size field of /proc/PID/status (VmRSS, RssAnon,
// RssFile), in bytes.
func procStatus(b *testing.B, pid int, field string) int64 {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(s), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	b.Fatalf("no %s for pid %d", field, pid)
	return 0
}

// BenchmarkProotOverhead runs the same work directly and under proot: a
// CPU-bound shell loop and an exec-heavy one. bench/agent.sh prints the
// ratios.
func BenchmarkProotOverhead(b *testing.B) {
	bin := testenv.RequireTool(b, "proot")
	root := filepath.Join(b.TempDir(), "root")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	bb, err := os.ReadFile(testbed.BusyboxPath)
	if err != nil {
		testenv.Unavailable(b, "busybox-static: %v (scripts/setup.sh installs it)", err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
		b.Fatal(err)
	}
	for _, app := range []string{"sh", "true", "seq"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", app)); err != nil {
			b.Fatal(err)
		}
	}
	p := &proot.Proot{Path: bin, TmpDir: b.TempDir()}
	work := map[string]string{
		"cpu":  `i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done`,
		"exec": `for i in $(seq 300); do /bin/true; done`,
	}
	for _, kind := range []string{"cpu", "exec"} {
		for _, how := range []string{"direct", "proot"} {
			b.Run(kind+"/"+how, func(b *testing.B) {
				for range b.N {
					var cmd *exec.Cmd
					if how == "direct" {
						cmd = exec.Command(filepath.Join(root, "bin/busybox"), "sh", "-c", work[kind])
						cmd.Env = []string{"PATH=" + filepath.Join(root, "bin")}
					} else {
						c, err := p.Command(proot.Spec{RootFS: root, Argv: []string{"/bin/sh", "-c", work[kind]}, Env: []string{"PATH=/bin"}, Binds: proot.HostBinds})
						if err != nil {
							b.Fatal(err)
						}
						cmd = c
					}
					var stderr bytes.Buffer
					cmd.Stderr = &stderr
					if err := cmd.Run(); err != nil {
						b.Fatalf("%s %s: %v\n%s", kind, how, err, stderr.String())
					}
				}
			})
		}
	}
}
