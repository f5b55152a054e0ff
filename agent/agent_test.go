package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
}

func newAgentFarm(t testing.TB) *agentFarm {
	t.Helper()
	testenv.RequireTool(t, "setpriv")
	testenv.RequireTool(t, "proot")
	f := farmtest.New(t, farmtest.Options{}, testbed.HostSpec{Name: "server1", PostmarketOS: true})
	dir := t.TempDir()
	t.Setenv("PHONEFARM_CACHE", filepath.Join(dir, "cache"))
	file, kc := filepath.Join(dir, "farm.yaml"), filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(file, []byte(f.Inventory(testbed.InventoryOptions{Name: "agent"})), 0o600); err != nil {
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
	bin := filepath.Join(dir, "phonefarm-agent")
	build := exec.Command("go", "build", "-o", bin, "github.com/phonefarm/phonefarm/cmd/phonefarm-agent")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the agent: %v\n%s", err, out)
	}
	return &agentFarm{f: f, kubeconfig: kc, cs: c.Core, bin: bin, k3s: f.K3s, token: strings.TrimSpace(string(tok))}
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
		l, err := a.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, "phone1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
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

	if err := p.stop(t); err != nil {
		t.Errorf("agent exit on SIGTERM: %v", err)
	}
}
