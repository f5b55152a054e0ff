package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/phonefarm/phonefarm/agent/config"
	"github.com/phonefarm/phonefarm/agent/node"
	"github.com/phonefarm/phonefarm/internal/cli"
	"github.com/phonefarm/phonefarm/internal/kube"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testbed/farmtest"
	"github.com/phonefarm/phonefarm/internal/testenv"
)

// shellUID is Android's shell user, whom adb runs the agent as.
const shellUID = 2000

// agentFarm is a k3s server in the test bed and the agent binary, run as
// an unprivileged user on this machine (the phone) against it.
type agentFarm struct {
	f          *farmtest.Farm
	kubeconfig string
	cs         kubernetes.Interface
	bin        string
	k3s        string
	token      string
	e2e        string // the e2e tools' directory, with farmOptions.E2E
}

// farmOptions shape an agent farm.
type farmOptions struct {
	// E2E builds Kubernetes' e2e tests and serves their images.
	E2E bool
	// ServerTaints are the k3s server's.
	ServerTaints []string
}

func newAgentFarm(t testing.TB, opts ...farmOptions) *agentFarm {
	t.Helper()
	var o farmOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	testenv.RequireTool(t, "setpriv")
	testenv.RequireTool(t, "proot")
	f := farmtest.New(t, farmtest.Options{E2E: o.E2E}, testbed.HostSpec{Name: "server1", PostmarketOS: true})
	dir := t.TempDir()
	t.Setenv("PHONEFARM_CACHE", filepath.Join(dir, "cache"))
	file, kc := filepath.Join(dir, "farm.yaml"), filepath.Join(dir, "kubeconfig")
	inv := f.Inventory(testbed.InventoryOptions{Name: "agent", PhoneTaints: map[string][]string{"server1": o.ServerTaints}})
	if err := os.WriteFile(file, []byte(inv), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"apply", "-f", file, "--skip-checks=kernel-config"}, {"kubeconfig", "-f", file, "--out", kc}} {
		var out bytes.Buffer
		if code := cli.Run(t.Context(), args, strings.NewReader(""), &out, &out); code != 0 {
			t.Fatalf("phonefarm %s: exit %d\n%s", strings.Join(args, " "), code, out.String())
		}
	}
	b, err := os.ReadFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kube.NewClient(b)
	if err != nil {
		t.Fatal(err)
	}
	server := f.Testbed.Host("server1")
	tok, err := f.Testbed.Exec(t.Context(), server, "cat /var/lib/rancher/k3s/server/agent-token 2>/dev/null || cat /var/lib/rancher/k3s/server/node-token")
	if err != nil {
		t.Fatalf("read the join token: %v", err)
	}
	bin := farmtest.AgentBinary(t)
	return &agentFarm{f: f, kubeconfig: kc, cs: c.Core, bin: bin, k3s: f.K3s, token: strings.TrimSpace(string(tok)), e2e: f.E2E}
}

// phone is one running agent.
type phone struct {
	name, dir, logFile string
	cmd                *exec.Cmd
	done               chan error
}

// freePort is a TCP port nothing listens on now.
func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs the agent binary as the shell user, with a directory of its
// own as adb's /data/local/tmp is.
func (a *agentFarm) start(t testing.TB, name string, edit func(*config.Config)) *phone {
	t.Helper()
	dir, err := os.MkdirTemp("", "phonefarm-agent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(a.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	regs := config.Registries{Mirrors: map[string]config.Mirror{}}
	for _, up := range testbed.Upstreams {
		regs.Mirrors[up] = config.Mirror{Endpoints: []string{a.f.Registry.URL}, Rewrites: testbed.MirrorRewrite(up)}
	}
	cfg := config.Config{
		Server:      "https://" + a.f.Testbed.Host("server1").Addr + ":6443",
		TokenFile:   tokenFile,
		NodeName:    name,
		NodeIP:      a.f.Testbed.Gateway,
		Dir:         filepath.Join(dir, "state"),
		Proot:       testenv.RequireTool(t, "proot"),
		KubeletPort: freePort(t),
		Labels:      map[string]string{node.ModelLabel: "Pixel_3a", node.SDKLabel: "34"},
		DNS:         []string{a.f.Testbed.Gateway},
		Registries:  regs,
	}
	if edit != nil {
		edit(&cfg)
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	cfgFile := filepath.Join(dir, "agent.json")
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, shellUID, shellUID)
	}); err != nil {
		t.Fatal(err)
	}
	p := &phone{name: name, dir: dir, logFile: filepath.Join(dir, "agent.log"), done: make(chan error, 1)}
	logf, err := os.Create(p.logFile)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command("setpriv", "--reuid="+strconv.Itoa(shellUID), "--regid="+strconv.Itoa(shellUID), "--clear-groups", "--",
		a.bin, "-config", cfgFile)
	p.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(p.logFile)
			t.Logf("agent %s log:\n%s", name, tail(string(b), 6000))
		}
	})
	return p
}

// stop sends SIGTERM and waits for the agent to exit.
func (p *phone) stop(t testing.TB) error {
	if p.cmd.ProcessState != nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(time.Minute):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		t.Errorf("agent %s did not stop within a minute of SIGTERM", p.name)
		return <-p.done
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (a *agentFarm) kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	// k3s is kubectl when called by that name.
	cmd := exec.CommandContext(t.Context(), a.k3s, append([]string{"--kubeconfig", a.kubeconfig}, args...)...)
	cmd.Args[0] = "kubectl"
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func waitFor(t testing.TB, what string, limit time.Duration, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), time.Second, limit, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil {
			last = err
			return false, nil
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %s (last error: %v)", what, limit, last)
	}
}

func condition(n *corev1.Node, typ corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == typ {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// The agent joins real k3s as a k3s agent does, registers an honest Node,
// renews its Lease, runs a pod under proot as the shell user, and serves
// logs and exec through its tunnel; deleting the pod stops it, and
// stopping the agent stops what it runs.
func TestAgentJoinsK3sAndRunsPods(t *testing.T) {
	a := newAgentFarm(t)
	p := a.start(t, "phone1", nil)
	ctx := t.Context()

	var n *corev1.Node
	waitFor(t, "node phone1 Ready", 3*time.Minute, func(ctx context.Context) (bool, error) {
		var err error
		n, err = a.cs.CoreV1().Nodes().Get(ctx, "phone1", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := condition(n, corev1.NodeReady)
		return c != nil && c.Status == corev1.ConditionTrue, nil
	})
	t.Run("node", func(t *testing.T) {
		// Beside the node lifecycle controller's own (not-ready until it
		// has seen the node Ready), the proot taint only.
		var taints []string
		for _, tn := range n.Spec.Taints {
			if !strings.HasPrefix(tn.Key, "node.kubernetes.io/") {
				taints = append(taints, tn.ToString())
			}
		}
		if len(taints) != 1 || taints[0] != node.RuntimeLabel+"=proot:NoSchedule" {
			t.Errorf("taints: got %v, want only %s=proot:NoSchedule", n.Spec.Taints, node.RuntimeLabel)
		}
		for k, v := range map[string]string{node.RuntimeLabel: "proot", node.ModelLabel: "Pixel_3a", "kubernetes.io/os": "linux"} {
			if n.Labels[k] != v {
				t.Errorf("label %s: got %q, want %q", k, n.Labels[k], v)
			}
		}
		if cpu := n.Status.Allocatable.Cpu().Value(); cpu < 1 {
			t.Errorf("allocatable cpu: got %d, want the machine's cores", cpu)
		}
		if mem := n.Status.Allocatable.Memory().Value(); mem < 1<<30 {
			t.Errorf("allocatable memory: got %d, want the machine's memory less a reserve", mem)
		}
		server, err := a.cs.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if n.Status.NodeInfo.KubeletVersion != server.GitVersion {
			t.Errorf("kubelet version: got %q, want the server's %q", n.Status.NodeInfo.KubeletVersion, server.GitVersion)
		}
		if got := n.Status.Addresses; len(got) == 0 || got[0].Address != a.f.Testbed.Gateway {
			t.Errorf("addresses: got %v, want %s first", got, a.f.Testbed.Gateway)
		}
	})

	t.Run("lease", func(t *testing.T) {
		// The agent makes its Lease once its node is registered, which
		// on a loaded machine can be after the node is first Ready.
		var l *coordinationv1.Lease
		waitFor(t, "phone1's Lease", time.Minute, func(ctx context.Context) (bool, error) {
			var err error
			l, err = a.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, "phone1", metav1.GetOptions{})
			return err == nil, err
		})
		if l.Spec.LeaseDurationSeconds == nil || *l.Spec.LeaseDurationSeconds != 40 || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != "phone1" {
			t.Errorf("lease: got duration %v holder %v, want 40 s held by phone1", l.Spec.LeaseDurationSeconds, l.Spec.HolderIdentity)
		}
		first := l.Spec.RenewTime.Time
		ready := condition(n, corev1.NodeReady).LastTransitionTime
		waitFor(t, "lease renewed", time.Minute, func(ctx context.Context) (bool, error) {
			l, err := a.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, "phone1", metav1.GetOptions{})
			return err == nil && l.Spec.RenewTime.After(first), err
		})
		n2, err := a.cs.CoreV1().Nodes().Get(ctx, "phone1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := condition(n2, corev1.NodeReady).LastTransitionTime; !got.Equal(&ready) {
			t.Errorf("Ready's lastTransitionTime moved without a flip: %s, then %s", ready, got)
		}
	})

	t.Run("outages", func(t *testing.T) {
		// Restarting the k3s server, then cutting the agent off from it
		// for 30 s, leave the node Ready: the Lease resumes within the
		// node lifecycle controller's grace period and no condition's
		// lastTransitionTime moves.
		nft := testenv.RequireTool(t, "nft")
		server := a.f.Testbed.Host("server1")
		before, err := a.cs.CoreV1().Nodes().Get(ctx, "phone1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w := watchNode(t, a.cs, "phone1", before)

		restarted := time.Now()
		if out, err := a.f.Testbed.Exec(ctx, server, "rc-service k3s restart"); err != nil {
			t.Fatalf("restart k3s on server1: %v\n%s", err, out)
		}
		w.waitRenewedAfter(t, restarted, 2*time.Minute)

		// Every packet the shell user sends to the server is dropped:
		// its connections stall as on a phone whose Wi-Fi went away.
		table := fmt.Sprintf("pfcut%d", os.Getpid())
		rule := fmt.Sprintf("add table inet %[1]s; add chain inet %[1]s out { type filter hook output priority 0; }; add rule inet %[1]s out meta skuid %[2]d ip daddr %[3]s drop",
			table, shellUID, server.Addr)
		if out, err := exec.Command(nft, rule).CombinedOutput(); err != nil {
			t.Fatalf("cut the agent off: %v\n%s", err, out)
		}
		cut := func() { _ = exec.Command(nft, "delete table inet "+table).Run() }
		t.Cleanup(cut)
		time.Sleep(30 * time.Second)
		cut()
		back := time.Now()
		w.waitRenewedAfter(t, back, time.Minute)
		// The lifecycle controller looks every 5 s: give it a look at the
		// Lease it saw last before the outage ended.
		time.Sleep(10 * time.Second)
		w.stop()
		t.Logf("longest gap between lease renewals seen: %s (restart at %s, cut for 30 s until %s)",
			w.maxGap.Round(100*time.Millisecond), restarted.Format("15:04:05"), back.Format("15:04:05"))
		for _, p := range w.problems {
			t.Error(p)
		}
	})

	t.Run("pod", func(t *testing.T) {
		ns := "default"
		// A new cluster creates the default service account a moment
		// after its API answers; pods are admitted once it exists.
		waitFor(t, "the default service account", time.Minute, func(ctx context.Context) (bool, error) {
			_, err := a.cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err == nil, err
		})
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "greeting"}, Data: map[string]string{"GREETING": "hello from a phone"}}
		if _, err := a.cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		grace := int64(5)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "ticker"},
			Spec: corev1.PodSpec{
				NodeSelector:                  map[string]string{"kubernetes.io/hostname": "phone1"},
				Tolerations:                   []corev1.Toleration{{Key: node.RuntimeLabel, Operator: corev1.TolerationOpExists}},
				TerminationGracePeriodSeconds: &grace,
				Containers: []corev1.Container{{
					Name:    "ticker",
					Image:   testbed.BusyboxImage,
					Command: []string{"sh", "-c", `echo "$GREETING as $(id -u)"; i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done`},
					EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "greeting"}}}},
				}},
			},
		}
		if _, err := a.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "pod ticker Running and Ready", 3*time.Minute, func(ctx context.Context) (bool, error) {
			got, err := a.cs.CoreV1().Pods(ns).Get(ctx, "ticker", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, c := range got.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					return got.Status.Phase == corev1.PodRunning, nil
				}
			}
			return false, fmt.Errorf("phase %s, conditions %v, containers %v", got.Status.Phase, got.Status.Conditions, got.Status.ContainerStatuses)
		})
		got, _ := a.cs.CoreV1().Pods(ns).Get(ctx, "ticker", metav1.GetOptions{})
		if got.Status.PodIP != a.f.Testbed.Gateway || got.Status.HostIP != a.f.Testbed.Gateway {
			t.Errorf("pod IP %q host IP %q, want the phone's %s", got.Status.PodIP, got.Status.HostIP, a.f.Testbed.Gateway)
		}

		// Logs and exec go API server -> tunnel -> agent.
		waitFor(t, "logs through the tunnel", time.Minute, func(ctx context.Context) (bool, error) {
			rc, err := a.cs.CoreV1().Pods(ns).GetLogs("ticker", &corev1.PodLogOptions{}).Stream(ctx)
			if err != nil {
				return false, err
			}
			defer rc.Close()
			b, _ := io.ReadAll(rc)
			if !strings.Contains(string(b), "hello from a phone as 0\n") || !strings.Contains(string(b), "tick 2\n") {
				return false, fmt.Errorf("logs: %q", b)
			}
			return true, nil
		})
		out, err := a.kubectl(t, "exec", "ticker", "--", "sh", "-c", "echo $GREETING; cat /etc/hostname; exit 3")
		if !strings.Contains(out, "hello from a phone\nticker\n") {
			t.Errorf("kubectl exec: got %q", out)
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("kubectl exec exit: got %v, want status 3", err)
		}

		// The kubelet's summary, through the API server's node proxy:
		// the node's memory and disk, the pod's CPU and memory.
		var summary struct {
			Node struct {
				Memory struct{ AvailableBytes uint64 }
				Fs     struct{ CapacityBytes uint64 }
			}
			Pods []struct {
				PodRef     struct{ Name string }
				Containers []struct {
					Name   string
					CPU    struct{ UsageCoreNanoSeconds uint64 }
					Memory struct{ WorkingSetBytes uint64 }
				}
			}
		}
		// CPU time counts in 10 ms ticks: a container seconds old on a
		// loaded machine may have none yet, so the summary is read until
		// it has (up to 30 s). A failed read ends the wait at once.
		var raw []byte
		err = wait.PollUntilContextTimeout(ctx, time.Second, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			var err error
			if raw, err = a.cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes/phone1/proxy/stats/summary").DoRaw(ctx); err != nil {
				return false, fmt.Errorf("stats summary: %v", err)
			}
			if err := json.Unmarshal(raw, &summary); err != nil {
				return false, fmt.Errorf("stats summary: %v\n%s", err, raw)
			}
			for _, ps := range summary.Pods {
				if ps.PodRef.Name == "ticker" && len(ps.Containers) == 1 && ps.Containers[0].Memory.WorkingSetBytes > 0 && ps.Containers[0].CPU.UsageCoreNanoSeconds > 0 {
					return true, nil
				}
			}
			return false, nil
		})
		if wait.Interrupted(err) {
			t.Errorf("stats summary: no CPU and memory for ticker's container within 30 s:\n%s", raw)
		} else if err != nil {
			t.Error(err)
		}
		if summary.Node.Memory.AvailableBytes == 0 || summary.Node.Fs.CapacityBytes == 0 {
			t.Errorf("stats summary: node memory or disk missing:\n%s", raw)
		}
		// The same as metrics-server reads it for kubectl top.
		metrics, err := a.cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes/phone1/proxy/metrics/resource").DoRaw(ctx)
		if err != nil {
			t.Errorf("metrics/resource: %v", err)
		}
		for _, want := range []string{"node_memory_working_set_bytes ", `container_cpu_usage_seconds_total{container="ticker",pod="ticker",namespace="default"}`, `pod_memory_working_set_bytes{pod="ticker",namespace="default"}`} {
			if !strings.Contains(string(metrics), want) {
				t.Errorf("metrics/resource lacks %s:\n%s", want, metrics)
			}
		}

		// The container runs as the shell user, under proot.
		// proot's command line names the pod's root, in this agent's
		// directory (other tests run agents as the shell user too).
		ps, _ := exec.Command("pgrep", "-u", strconv.Itoa(shellUID), "-f", "proot.*"+p.dir).Output()
		if len(bytes.Fields(ps)) == 0 {
			t.Error("no proot process of the shell user while the pod runs")
		}

		if err := a.cs.CoreV1().Pods(ns).Delete(ctx, "ticker", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "pod ticker gone", time.Minute, func(ctx context.Context) (bool, error) {
			_, err := a.cs.CoreV1().Pods(ns).Get(ctx, "ticker", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, err
		})
		waitFor(t, "the pod's processes gone", 30*time.Second, func(context.Context) (bool, error) {
			ps, _ := exec.Command("pgrep", "-a", "-u", strconv.Itoa(shellUID), "-f", "proot.*"+p.dir).Output()
			if len(bytes.Fields(ps)) > 0 {
				return false, fmt.Errorf("left: %s", ps)
			}
			return true, nil
		})
	})

	t.Run("two containers, an init container, volumes and a probe", func(t *testing.T) {
		testTwoContainerPod(t, a)
	})

	if err := p.stop(t); err != nil {
		t.Errorf("agent exit on SIGTERM: %v", err)
	}
}

// A pod as people write them: an init container prepares a shared
// emptyDir, a web server serves a configMap volume behind a readiness
// probe, a second container logs; kubectl logs -f follows it, kubectl exec
// -it gets a terminal, kubectl port-forward reaches the server.
func testTwoContainerPod(t *testing.T, a *agentFarm) {
	ctx := t.Context()
	ns := "default"
	script := testenv.RequireTool(t, "script") // a terminal for kubectl exec -it
	port := freePort(t)                        // pods share the phone's network
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "site"}, Data: map[string]string{"index.html": "served from a configMap on a phone\n"}}
	if _, err := a.cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tol := []corev1.Toleration{{Key: node.RuntimeLabel, Operator: corev1.TolerationOpExists}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "duo"},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"kubernetes.io/hostname": "phone1"},
			Tolerations:  tol,
			InitContainers: []corev1.Container{{
				Name: "prepare", Image: testbed.BusyboxImage,
				Command:      []string{"sh", "-c", "echo prepared by the init container > /work/state"},
				VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}},
			}},
			Containers: []corev1.Container{
				{
					Name: "web", Image: testbed.BusyboxImage,
					Command:      []string{"httpd", "-f", "-p", strconv.Itoa(port), "-h", "/www"},
					VolumeMounts: []corev1.VolumeMount{{Name: "site", MountPath: "/www"}},
					ReadinessProbe: &corev1.Probe{
						ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/index.html", Port: intstr.FromInt(port)}},
						PeriodSeconds: 1,
					},
				},
				{
					Name: "talker", Image: testbed.BusyboxImage,
					Command:      []string{"sh", "-c", "cat /work/state; i=0; while true; do i=$((i+1)); echo line $i; sleep 1; done"},
					VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}},
				},
			},
			Volumes: []corev1.Volume{
				{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "site", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "site"}}}},
			},
		},
	}
	if _, err := a.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod duo Ready", 3*time.Minute, func(ctx context.Context) (bool, error) {
		got, err := a.cs.CoreV1().Pods(ns).Get(ctx, "duo", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, fmt.Errorf("phase %s, init %v, containers %v", got.Status.Phase, got.Status.InitContainerStatuses, got.Status.ContainerStatuses)
	})

	// kubectl logs -f: the init container's work first, then lines that
	// were written after following began.
	logs := exec.CommandContext(ctx, a.k3s, "--kubeconfig", a.kubeconfig, "logs", "-f", "duo", "-c", "talker")
	logs.Args[0] = "kubectl"
	out, err := logs.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := logs.Start(); err != nil {
		t.Fatal(err)
	}
	followed := make(chan []string, 1)
	go func() {
		var lines []string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if len(lines) >= 6 {
				break
			}
		}
		followed <- lines
	}()
	select {
	case lines := <-followed:
		if len(lines) < 6 || lines[0] != "prepared by the init container" || lines[5] != "line 5" {
			t.Errorf("kubectl logs -f talker: got %q, want the init container's line, then line 1 to line 5", lines)
		}
	case <-time.After(time.Minute):
		t.Error("kubectl logs -f: fewer than 6 lines within a minute")
	}
	_ = logs.Process.Kill()
	_ = logs.Wait()

	// kubectl exec -it, on a terminal script(1) provides.
	// k3s is kubectl when called by that name.
	kubectlPath := filepath.Join(t.TempDir(), "kubectl")
	if err := os.Symlink(a.k3s, kubectlPath); err != nil {
		t.Fatal(err)
	}
	kubectl := fmt.Sprintf("%s --kubeconfig %s exec -it duo -c talker -- sh -c 'tty; cat /work/state; exit 0'", kubectlPath, a.kubeconfig)
	execIt := exec.CommandContext(ctx, script, "-qec", kubectl, "/dev/null")
	execIt.Env = append(os.Environ(), "TERM=dumb")
	got, err := execIt.CombinedOutput()
	if err != nil || !strings.Contains(string(got), "/dev/pts/") || !strings.Contains(string(got), "prepared by the init container") {
		t.Errorf("kubectl exec -it: %v\n%s\nwant a terminal and the shared volume", err, got)
	}

	// kubectl port-forward to the web container.
	local := freePort(t)
	pfw := exec.CommandContext(ctx, a.k3s, "--kubeconfig", a.kubeconfig, "port-forward", "pod/duo", fmt.Sprintf("%d:%d", local, port))
	pfw.Args[0] = "kubectl"
	var pfOut bytes.Buffer
	pfw.Stdout, pfw.Stderr = &pfOut, &pfOut
	if err := pfw.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pfw.Process.Kill(); _ = pfw.Wait() }()
	waitFor(t, "the page through kubectl port-forward", 30*time.Second, func(ctx context.Context) (bool, error) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", local))
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "served from a configMap on a phone\n" {
			return false, fmt.Errorf("got %d %q (port-forward: %s)", resp.StatusCode, b, pfOut.String())
		}
		return true, nil
	})

	if err := a.cs.CoreV1().Pods(ns).Delete(ctx, "duo", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod duo gone", time.Minute, func(ctx context.Context) (bool, error) {
		_, err := a.cs.CoreV1().Pods(ns).Get(ctx, "duo", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// nodeWatch polls a node and its Lease every second and notes what must
// not happen while the node is healthy: Ready other than True, a
// condition whose lastTransitionTime moved.
type nodeWatch struct {
	mu       sync.Mutex
	renewals []time.Time
	maxGap   time.Duration
	problems []string
	done     chan struct{}
	stopped  chan struct{}
}

func watchNode(t *testing.T, cs kubernetes.Interface, name string, before *corev1.Node) *nodeWatch {
	w := &nodeWatch{done: make(chan struct{}), stopped: make(chan struct{})}
	transitions := map[corev1.NodeConditionType]metav1.Time{}
	for _, c := range before.Status.Conditions {
		transitions[c.Type] = c.LastTransitionTime
	}
	seen := map[string]bool{}
	go func() {
		defer close(w.stopped)
		for {
			select {
			case <-w.done:
				return
			case <-time.After(time.Second):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			l, lerr := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{})
			cancel()
			w.mu.Lock()
			if err == nil {
				for _, c := range n.Status.Conditions {
					var p string
					switch {
					case c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue:
						p = fmt.Sprintf("node %s went %s=%s (%s: %s)", name, c.Type, c.Status, c.Reason, c.Message)
					case !c.LastTransitionTime.Equal(ptrTime(transitions[c.Type])):
						p = fmt.Sprintf("condition %s: lastTransitionTime moved from %s to %s (status %s)", c.Type, transitions[c.Type], c.LastTransitionTime, c.Status)
					}
					if p != "" && !seen[p] {
						seen[p] = true
						w.problems = append(w.problems, time.Now().Format("15:04:05 ")+p)
					}
				}
			}
			if lerr == nil && l.Spec.RenewTime != nil {
				r := l.Spec.RenewTime.Time
				if k := len(w.renewals); k == 0 || r.After(w.renewals[k-1]) {
					if k > 0 {
						w.maxGap = max(w.maxGap, r.Sub(w.renewals[k-1]))
					}
					w.renewals = append(w.renewals, r)
				}
			}
			w.mu.Unlock()
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }

func (w *nodeWatch) stop() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	<-w.stopped
}

// waitRenewedAfter waits until the Lease was renewed after since.
func (w *nodeWatch) waitRenewedAfter(t *testing.T, since time.Time, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		w.mu.Lock()
		k := len(w.renewals)
		ok := k > 0 && w.renewals[k-1].After(since)
		w.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease not renewed after %s within %s", since.Format("15:04:05"), limit)
		}
		time.Sleep(time.Second)
	}
}
