package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/phonefarm/phonefarm/internal/adbemu"
	"github.com/phonefarm/phonefarm/internal/kube"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testbed/farmtest"
	"github.com/phonefarm/phonefarm/internal/testenv"
	"github.com/phonefarm/phonefarm/transport/adb"
)

// shellUID is Android's shell user: adbd runs commands as it on a phone
// that is not rooted.
const shellUID = 2000

// A stock Android phone (the adb device emulator, its commands run as the
// shell user on this machine) joins a test-bed k3s server through
// phonefarm's rootless agent: apply uploads the agent and proot over adb,
// writes its configuration and token, starts it; the node is Ready with
// its Android labels and the proot taint and runs a pod. Drained off the
// charger, the phone's node gets the battery-low taint (with the
// credential apply gave the agent) until it is plugged in again. A
// re-apply changes nothing, a label change restarts the agent with the
// label, and reset stops it and removes its directory and credentials.
func TestApplyAndroidAgent(t *testing.T) {
	t.Parallel()
	// The agent listens on the kubelet's port on this machine, as other
	// packages' agents may.
	testenv.HoldPort(t, 10250)
	// The proot phonefarm builds for phones (Debian's, with its C
	// library, in one static file), as a phone would get it.
	prootBin, err := testbed.ProotBundle(runtime.GOARCH)
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	// A postmarketOS server, a Linux agent and the Android phone: one
	// apply converges the three.
	f := farmtest.New(t, farmtest.Options{}, testbed.HostSpec{Name: "server1", PostmarketOS: true}, testbed.HostSpec{Name: "linux1"})
	dir := t.TempDir()

	// The emulated phone is this machine: its agent is a linux/amd64 build.
	agentBin := farmtest.AgentBinary(t)
	// /data/local/tmp: a directory the shell user owns.
	data, err := os.MkdirTemp("", "phonefarm-android-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// An agent a failed test left running (other tests run agents as
		// the shell user too: only this one's).
		if pid, err := os.ReadFile(filepath.Join(data, "phonefarm", "agent.pid")); err == nil {
			_ = exec.Command("kill", "-KILL", strings.TrimSpace(string(pid))).Run()
		}
		_ = exec.Command("pkill", "-KILL", "-f", data).Run()
		os.RemoveAll(data)
	})
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, shellUID, shellUID); err != nil {
		t.Fatal(err)
	}
	agentDir := filepath.Join(data, "phonefarm")

	srv := adbemu.StartServer(t)
	dev, err := adbemu.Start(t.Context(), adbemu.Options{UID: shellUID, GID: shellUID, Properties: map[string]string{
		"ro.build.version.release": "14", "ro.build.version.sdk": "34", "ro.product.cpu.abi": "x86_64", "ro.product.model": "Pixel 3a",
	}, Dumpsys: map[string]string{
		// On the charger, nearly full.
		"battery": batteryDump(true, 90),
		// Android 14 leaves net.dns1 empty; the name servers are the
		// default network's.
		"connectivity": "Active default network: 101\n  NetworkAgentInfo{network{101}  ni{WIFI CONNECTED} lp{{InterfaceName: wlan0 LinkAddresses: [ " + f.Testbed.Gateway + "/24 ] DnsAddresses: [ /" + f.Testbed.Gateway + " ] Domains: lan MTU: 0}}",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	if err := adb.Connect(t.Context(), srv.Addr(), dev.Addr()); err != nil {
		t.Fatal(err)
	}

	inventory := func(labels string) string {
		return f.Inventory(testbed.InventoryOptions{Name: "android"}) +
			fmt.Sprintf("  - name: pixel\n    os: android\n    role: agent\n    adb: {serial: %q, server: %q}\n    labels: {%s}\n", dev.Addr(), srv.Addr(), labels) +
			fmt.Sprintf("android:\n  agent: {amd64: %s}\n  proot: {amd64: %s}\n  dir: %s\n", agentBin, prootBin, agentDir)
	}
	file, kc := filepath.Join(dir, "farm.yaml"), filepath.Join(dir, "kubeconfig")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pf := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if code := Run(t.Context(), args, strings.NewReader(""), &out, &out); code != 0 {
			b, _ := os.ReadFile(filepath.Join(agentDir, "agent.log"))
			t.Fatalf("phonefarm %s: exit %d\n%s\nagent log:\n%s", strings.Join(args, " "), code, out.String(), tailString(string(b), 4000))
		}
		return out.String()
	}
	write(inventory("farm.example/room: kitchen"))
	plan := pf("plan", "-f", file, "--skip-checks=kernel-config")
	for _, want := range []string{"upload phonefarm-agent", "upload proot", "write join token", "write health credentials", "write agent config", "(re)start phonefarm-agent", "wait for node pixel to be Ready"} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
	out := pf("apply", "-f", file, "--skip-checks=kernel-config")
	for _, phone := range []string{"server1", "linux1", "pixel"} {
		if !regexpLine(out, phone+`\s+changed`) {
			t.Errorf("first apply: %s not changed:\n%s", phone, out)
		}
	}
	pf("kubeconfig", "-f", file, "--out", kc)
	b, err := os.ReadFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kube.NewClient(b)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, name := range []string{"server1", "linux1"} {
		n, err := c.Core.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil || !nodeReady(n) {
			t.Errorf("node %s: %v, want Ready after the one apply", name, err)
		}
	}
	n, err := c.Core.CoreV1().Nodes().Get(ctx, "pixel", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !nodeReady(n) {
		t.Errorf("node pixel not Ready after the one apply: %v", n.Status.Conditions)
	}
	for k, v := range map[string]string{"phonefarm.dev/runtime": "proot", "phonefarm.dev/android-model": "Pixel_3a", "phonefarm.dev/android-sdk": "34", "farm.example/room": "kitchen"} {
		if n.Labels[k] != v {
			t.Errorf("node label %s: got %q, want %q", k, n.Labels[k], v)
		}
	}
	// Beside the node lifecycle controller's own (not-ready until it has
	// seen the node Ready), the proot taint only.
	var taints []string
	for _, tn := range n.Spec.Taints {
		if !strings.HasPrefix(tn.Key, "node.kubernetes.io/") {
			taints = append(taints, tn.ToString())
		}
	}
	if len(taints) != 1 || taints[0] != "phonefarm.dev/runtime=proot:NoSchedule" {
		t.Errorf("taints: got %v, want the proot taint", n.Spec.Taints)
	}
	if n.Status.NodeInfo.OSImage != "Android 14" {
		t.Errorf("OS image: got %q, want Android 14 (from getprop)", n.Status.NodeInfo.OSImage)
	}
	// The pods' name server is the phone's, from its connectivity dump.
	var agentCfg struct{ DNS []string }
	if b, err := os.ReadFile(filepath.Join(agentDir, "agent.json")); err != nil || json.Unmarshal(b, &agentCfg) != nil || len(agentCfg.DNS) != 1 || agentCfg.DNS[0] != f.Testbed.Gateway {
		t.Errorf("agent config dns: got %v (%v), want [%s] from dumpsys connectivity", agentCfg.DNS, err, f.Testbed.Gateway)
	}
	// The token is readable by the agent's user only.
	if st, err := os.Stat(filepath.Join(agentDir, "token")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}

	// A pod runs there, pulled through the farm's registry.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hello"},
		Spec: corev1.PodSpec{
			NodeName:      "pixel",
			Tolerations:   []corev1.Toleration{{Key: "phonefarm.dev/runtime", Operator: corev1.TolerationOpExists}},
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "hello", Image: testbed.BusyboxImage, Command: []string{"sh", "-c", "echo hello from $(cat /etc/hostname) on android"}}},
		},
	}
	// A new cluster creates the default service account a moment after
	// its API answers; the pod is admitted once it exists.
	if err := wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.Core.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		t.Fatalf("the default service account: %v", err)
	}
	if _, err := c.Core.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var phase corev1.PodPhase
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := c.Core.CoreV1().Pods("default").Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		phase = p.Status.Phase
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	}); err != nil || phase != corev1.PodSucceeded {
		t.Fatalf("pod hello: phase %s (%v), want Succeeded", phase, err)
	}
	rc, err := c.Core.CoreV1().Pods("default").GetLogs("hello", &corev1.PodLogOptions{}).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	logs, _ := io.ReadAll(rc)
	rc.Close()
	if string(logs) != "hello from hello on android\n" {
		t.Errorf("pod logs: got %q", logs)
	}

	// The phone drains off the charger: the agent reports it and taints
	// its node with the credential apply wrote (root's only: 0600), and
	// takes the taint away once the phone is plugged in again.
	if st, err := os.Stat(filepath.Join(agentDir, "health.kubeconfig")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("health credentials: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	healthTaint := func() string {
		n, err := c.Core.CoreV1().Nodes().Get(ctx, "pixel", metav1.GetOptions{})
		if err != nil {
			return "error: " + err.Error()
		}
		for _, tn := range n.Spec.Taints {
			if tn.Key == "phonefarm.dev/phone-health" {
				return tn.ToString()
			}
		}
		return ""
	}
	waitTaint := func(when, want string) {
		t.Helper()
		got := ""
		if err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(context.Context) (bool, error) {
			got = healthTaint()
			return got == want, nil
		}); err != nil {
			t.Errorf("%s: node pixel's health taint %q, want %q", when, got, want)
		}
	}
	if err := dev.SetDumpsys("battery", batteryDump(false, 10)); err != nil {
		t.Fatal(err)
	}
	waitTaint("drained to 10% off the charger", "phonefarm.dev/phone-health=battery-low:NoSchedule")
	if n, err := c.Core.CoreV1().Nodes().Get(ctx, "pixel", metav1.GetOptions{}); err == nil {
		if cond := nodeCondition(n, "PhoneBatteryLow"); cond == nil || cond.Status != corev1.ConditionTrue {
			t.Errorf("drained: PhoneBatteryLow %v, want True", cond)
		}
	}
	if err := dev.SetDumpsys("battery", batteryDump(true, 12)); err != nil {
		t.Fatal(err)
	}
	waitTaint("back on the charger", "")

	// Converged: nothing to do.
	out = pf("apply", "-f", file, "--skip-checks=kernel-config")
	for _, phone := range []string{"server1", "linux1", "pixel"} {
		if !regexpLine(out, phone+`\s+unchanged`) {
			t.Errorf("re-apply: %s not unchanged:\n%s", phone, out)
		}
	}

	// A label change reaches the node.
	write(inventory("farm.example/room: hall"))
	out = pf("apply", "-f", file, "--skip-checks=kernel-config")
	if !strings.Contains(out, "write agent config") {
		t.Errorf("label change: apply did not rewrite the agent config:\n%s", out)
	}
	if n, err = c.Core.CoreV1().Nodes().Get(ctx, "pixel", metav1.GetOptions{}); err != nil || n.Labels["farm.example/room"] != "hall" {
		t.Errorf("after the label change: node label room %q (%v), want hall", n.Labels["farm.example/room"], err)
	}

	// Reset stops the agent and removes its directory.
	pid, _ := os.ReadFile(filepath.Join(agentDir, "agent.pid"))
	if out := pf("reset", "-f", file, "--yes", "pixel"); !strings.Contains(out, "pixel: reset, node deleted") {
		t.Errorf("reset: got %q, want the node deleted", out)
	}
	if n, err := c.Core.CoreV1().Nodes().Get(ctx, "pixel", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after reset: node pixel: got %v, want not found (created %s, deleting %v, finalizers %v)", err, n.CreationTimestamp, n.DeletionTimestamp, n.Finalizers)
	}
	if _, err := os.Stat(agentDir); !os.IsNotExist(err) {
		t.Errorf("after reset: %s still there (%v)", agentDir, err)
	}
	if _, err := c.Core.CoreV1().ServiceAccounts("kube-system").Get(ctx, "phonefarm-health-pixel", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after reset: the agent's health service account: %v, want not found", err)
	}
	if p := strings.TrimSpace(string(pid)); p != "" {
		if _, err := os.Stat("/proc/" + p); err == nil {
			t.Errorf("after reset: the agent (pid %s) still runs", p)
		}
	}
}

// batteryDump is `dumpsys battery` of a phone at level percent, on the
// charger (USB, charging) or off it (discharging).
func batteryDump(plugged bool, level int) string {
	status := 3
	if plugged {
		status = 2
	}
	return fmt.Sprintf("Current Battery Service state:\n  AC powered: false\n  USB powered: %t\n  Wireless powered: false\n  status: %d\n  present: true\n  level: %d\n  scale: 100\n", plugged, status, level)
}

func nodeCondition(n *corev1.Node, typ corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == typ {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// regexpLine reports whether a line of out matches re.
func regexpLine(out, re string) bool {
	r := regexp.MustCompile(re)
	for _, l := range strings.Split(out, "\n") {
		if r.MatchString(l) {
			return true
		}
	}
	return false
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
