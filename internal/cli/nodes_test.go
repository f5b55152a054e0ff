package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phonefarm/phonefarm/facts"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testbed/farmtest"
	"github.com/phonefarm/phonefarm/internal/testenv"
	"github.com/phonefarm/phonefarm/nodes"
	"github.com/phonefarm/phonefarm/provision"
)

// The table lines up with colour on, and says what is missing where.
func TestNodesTable(t *testing.T) {
	view := []nodes.Node{
		{Name: "enchilada", InInventory: true, InCluster: true, Role: "server", Runtime: nodes.RuntimeK3sServer, Ready: "True",
			KubeletVersion: "v1.32.0+k3s1", Addresses: []string{"10.0.0.11"}, Pods: 3,
			Conditions: []nodes.Condition{{Type: "PhoneOnBattery"}},
			Facts: &facts.Facts{Battery: &facts.Battery{CapacityPercent: 41, Status: "Discharging", ChargeLimitFile: "/sys/x", ChargeLimit: 80},
				ThermalMaxC: 38.5, Throttled: []string{"thermal-cpufreq-0:3/10"}, UptimeSeconds: 90061}},
		{Name: "fajita", InInventory: true, Role: "agent", Runtime: nodes.RuntimeK3sAgent, Error: "no route to host"},
		{Name: "stray", InCluster: true, Runtime: nodes.RuntimeK3sAgent, Ready: "Unknown"},
	}
	var plain, colour bytes.Buffer
	writeNodesTable(&plain, view, false)
	writeNodesTable(&colour, view, true)
	want := []string{
		"NAME       STATUS   RUNS        VERSION       ADDRESS    BATTERY                     TEMP              UPTIME  PODS  NOTES",
		"enchilada  Ready    k3s server  v1.32.0+k3s1  10.0.0.11  41% on battery (limit 80%)  38.5°C throttled  1d1h    3     PhoneOnBattery",
		"fajita     -        k3s agent   -             -          -                           -                 -       -     not in the cluster; unreachable: no route to host",
		"stray      Unknown  k3s agent   -             -          -                           -                 -       0     not in the inventory",
	}
	if got := strings.TrimRight(plain.String(), "\n"); got != strings.Join(want, "\n") {
		t.Errorf("table:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	sgr := regexp.MustCompile("\x1b\\[[0-9;]*m")
	if !strings.Contains(colour.String(), "\x1b[32mReady\x1b[0m") {
		t.Errorf("colour table does not show Ready in green:\n%q", colour.String())
	}
	if got := sgr.ReplaceAllString(colour.String(), ""); got != plain.String() {
		t.Errorf("colour table without its colours differs from the plain one:\n%s", got)
	}
}

// phonefarm nodes on test-bed phones with a battery and a thermal zone
// shaped as a phone's sysfs: power.chargeLimit holds the battery at 80 and
// a second apply changes nothing; nodes -o json agrees with the cluster
// and with facts; nodes --watch shows a drained battery as it happens.
func TestNodesAndChargeLimit(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mmdebstrap")
	k3s, err := testbed.K3sBinary()
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	ctx := context.Background()
	tb, err := testbed.Up(ctx, testbed.Options{Hosts: []testbed.HostSpec{{Name: "server1", PostmarketOS: true}, {Name: "agent1"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tb.Down(context.Background()) })
	inv := tb.Inventory(testbed.InventoryOptions{Name: "nodes-farm", K3s: k3s, Servers: 1,
		SkipChecks: map[string]string{"kernel-config": "test-bed hosts run this machine's kernel"}})
	// The test bed's phones are this machine: the reporter is a
	// linux/amd64 build.
	agentBin := farmtest.AgentBinary(t)
	const interval = 2 * time.Second
	inv = strings.Replace(inv, "\nphones:\n", "\npower:\n  chargeLimit: 80\nhealth:\n  agent: {amd64: "+agentBin+"}\n  interval: "+interval.String()+"\nphones:\n", 1)
	file := filepath.Join(t.TempDir(), "farm.yaml")
	if err := os.WriteFile(file, []byte(inv), 0o600); err != nil {
		t.Fatal(err)
	}
	const threshold = "/sys/class/power_supply/battery/charge_control_end_threshold"

	code, planOut, errOut := run(t, "plan", "-f", file)
	if code != 0 || strings.Count(planOut, "hold the battery at 80% "+threshold) != 2 || strings.Count(planOut, provision.ChargeLimitRulePath) != 2 {
		t.Errorf("plan (exit %d) does not hold both batteries at 80%%:\n%s%s", code, planOut, errOut)
	}
	if code, out, errOut := run(t, "apply", "-f", file); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	for _, h := range tb.Hosts {
		out, err := tb.Exec(ctx, h, "cat "+threshold+" && cat "+provision.ChargeLimitRulePath)
		if err != nil || !strings.HasPrefix(string(out), "80\n") || !strings.Contains(string(out), `ATTR{charge_control_end_threshold}="80"`) {
			t.Errorf("%s after apply: %q (%v), want the threshold at 80 and the udev rule", h.Name, out, err)
		}
	}
	for _, h := range tb.Hosts {
		out, err := tb.Exec(ctx, h, "pgrep -af '^/usr/local/bin/phonefarm-agent health'; ls -l "+provision.HealthKubeconfigPath)
		if err != nil || !strings.Contains(string(out), "-node "+h.Name) || !strings.Contains(string(out), "-rw-------") {
			t.Errorf("%s after apply: the health reporter is not running for it with a root-only credential: %q (%v)", h.Name, out, err)
		}
	}
	// Its credential may patch its own node and no other.
	healthKC, err := tb.Exec(ctx, tb.Host("agent1"), "cat "+provision.HealthKubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	healthFile := filepath.Join(t.TempDir(), "health.kubeconfig")
	if err := os.WriteFile(healthFile, healthKC, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectlBin := filepath.Join(t.TempDir(), "kubectl")
	if err := os.Symlink(k3s, kubectlBin); err != nil {
		t.Fatal(err)
	}
	for node, allowed := range map[string]bool{"agent1": true, "server1": false} {
		out, err := exec.Command(kubectlBin, "--kubeconfig", healthFile, "annotate", "--overwrite", "node", node, "phonefarm.dev/test=1").CombinedOutput()
		if (err == nil) != allowed || (!allowed && !strings.Contains(string(out), "forbidden")) {
			t.Errorf("agent1's health credential annotating node %s: %v %s; want allowed %v", node, err, out, allowed)
		}
	}
	if code, out, errOut := run(t, "apply", "-f", file, "-o", "json"); code != 0 || strings.Count(out, `"outcome": "unchanged"`) != 2 {
		t.Errorf("second apply (exit %d) is not unchanged on both phones:\n%s%s", code, out, errOut)
	}

	// server1's kernel caps its CPU to cool it (a cooling device in use).
	if out, err := tb.Exec(ctx, tb.Host("server1"), "echo 3 > /sys/class/thermal/cooling_device0/cur_state"); err != nil {
		t.Fatalf("throttle server1: %v\n%s", err, out)
	}
	// nodes -o json agrees with the cluster and with facts.
	code, out, errOut := run(t, "nodes", "-f", file, "-o", "json")
	if code != 0 {
		t.Fatalf("nodes: exit %d\n%s%s", code, out, errOut)
	}
	var view []nodes.Node
	if err := json.Unmarshal([]byte(out), &view); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if code, out, errOut := run(t, "kubeconfig", "-f", file, "--out", kc); code != 0 {
		t.Fatalf("kubeconfig: %d %s %s", code, out, errOut)
	}
	kube := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(kubectl(t, kc, "get", "nodes", "--no-headers", "-o",
		`custom-columns=NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,VERSION:.status.nodeInfo.kubeletVersion,IP:.status.addresses[?(@.type=="InternalIP")].address`)), "\n") {
		f := strings.Fields(line)
		kube[f[0]] = strings.Join(f[1:], " ")
	}
	_, factsOut, _ := run(t, "facts", "-f", file, "-o", "json")
	var fs []phoneFacts
	if err := json.Unmarshal([]byte(factsOut), &fs); err != nil {
		t.Fatal(err)
	}
	if len(view) != 2 {
		t.Fatalf("nodes shows %d phones, want 2:\n%s", len(view), out)
	}
	for i, n := range view {
		if got := n.Ready + " " + n.KubeletVersion + " " + strings.Join(n.Addresses, ","); got != kube[n.Name] {
			t.Errorf("%s: nodes says %q, kubectl %q", n.Name, got, kube[n.Name])
		}
		if !n.InInventory || !n.InCluster || n.Facts == nil || fs[i].Facts == nil {
			t.Fatalf("%s: in inventory %v, in cluster %v, facts %v", n.Name, n.InInventory, n.InCluster, n.Facts)
		}
		if *n.Facts.Battery != *fs[i].Facts.Battery || n.Facts.Arch != fs[i].Facts.Arch || n.Facts.K3s != fs[i].Facts.K3s {
			t.Errorf("%s: nodes says battery %+v arch %s k3s %+v, facts %+v %s %+v", n.Name, *n.Facts.Battery, n.Facts.Arch, n.Facts.K3s,
				*fs[i].Facts.Battery, fs[i].Facts.Arch, fs[i].Facts.K3s)
		}
		if b := n.Facts.Battery; b.CapacityPercent != 80 || b.Status != "Charging" || !b.External || b.ChargeLimit != 80 {
			t.Errorf("%s: battery %+v, want 80%% charging on the charger, limit 80", n.Name, *b)
		}
		want := map[string]string{"server1": "thermal-cpufreq-0:3/10"}[n.Name]
		if got := strings.Join(n.Facts.Throttled, " "); got != want || got != strings.Join(fs[i].Facts.Throttled, " ") {
			t.Errorf("%s: nodes says throttled %q, facts %q; want %q", n.Name, got, fs[i].Facts.Throttled, want)
		}
	}
	if want := map[string]string{"server1": nodes.RuntimeK3sServer, "agent1": nodes.RuntimeK3sAgent}; view[0].Runtime != want[view[0].Name] || view[1].Runtime != want[view[1].Name] {
		t.Errorf("runtimes: %s %q, %s %q", view[0].Name, view[0].Runtime, view[1].Name, view[1].Runtime)
	}

	// --watch: the charger pulled and the battery drained on agent1 shows
	// at the next read of the phones.
	wctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var stderr bytes.Buffer
		Run(wctx, []string{"nodes", "-f", file, "--watch", "--interval", "2s", "-o", "json"}, strings.NewReader(""), pw, &stderr)
		pw.CloseWithError(io.EOF)
	}()
	t.Cleanup(func() { cancel(); pr.Close(); wg.Wait() })
	lines := bufio.NewScanner(pr)
	lines.Buffer(make([]byte, 1<<20), 1<<22)
	next := func() []nodes.Node {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("nodes --watch ended: %v", lines.Err())
		}
		var v []nodes.Node
		if err := json.Unmarshal(lines.Bytes(), &v); err != nil {
			t.Fatalf("nodes --watch line: %v\n%s", err, lines.Text())
		}
		return v
	}
	battery := func(v []nodes.Node, name string) *facts.Battery {
		for _, n := range v {
			if n.Name == name && n.Facts != nil {
				return n.Facts.Battery
			}
		}
		return nil
	}
	if b := battery(next(), "agent1"); b == nil || b.CapacityPercent != 80 {
		t.Fatalf("nodes --watch first shows agent1's battery as %+v, want 80%%", b)
	}
	drained := time.Now()
	if out, err := tb.Exec(ctx, tb.Host("agent1"), "cd /sys/class/power_supply && echo 0 > ac/online && echo Discharging > battery/status && echo 15 > battery/capacity"); err != nil {
		t.Fatalf("drain agent1: %v\n%s", err, out)
	}
	for {
		b := battery(next(), "agent1")
		if b != nil && b.CapacityPercent == 15 && b.OnBattery() {
			t.Logf("nodes --watch showed agent1 drained after %s", time.Since(drained).Round(time.Millisecond))
			break
		}
		if time.Since(drained) > time.Minute {
			t.Fatalf("nodes --watch still shows agent1 at %+v a minute after it was drained", b)
		}
	}

	// The health reporter apply runs on agent1 (phonefarm-agent health,
	// reading the same sysfs): PhoneBatteryLow and the battery-low taint,
	// which keep a pod that does not tolerate it off the phone, and nodes
	// --watch shows them as they come.
	agent1 := tb.Host("agent1")
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if log, err := tb.Exec(context.Background(), agent1, "cat /var/log/phonefarm-health.log"); err == nil {
			t.Logf("agent1's health reporter's log:\n%s", log)
		}
	})
	healthOf := func(v []nodes.Node) (conds []string, taints []string) {
		for _, n := range v {
			if n.Name == "agent1" {
				for _, c := range n.Conditions {
					conds = append(conds, c.Type)
				}
				return conds, n.Taints
			}
		}
		return nil, nil
	}
	const taint = "phonefarm.dev/phone-health=battery-low:NoSchedule"
	for {
		conds, taints := healthOf(next())
		if slices.Contains(conds, "PhoneBatteryLow") && slices.Contains(conds, "PhoneOnBattery") && slices.Contains(taints, taint) {
			t.Logf("nodes --watch showed agent1 %v, tainted %v, %s after it was drained", conds, taints, time.Since(drained).Round(time.Millisecond))
			break
		}
		if time.Since(drained) > time.Minute {
			t.Fatalf("a minute after agent1 was drained, nodes --watch shows it with %v, taints %v", conds, taints)
		}
	}
	since := func() string {
		return kubectl(t, kc, "get", "node", "agent1", "-o", `jsonpath={.status.conditions[?(@.type=="PhoneBatteryLow")].lastTransitionTime}`)
	}
	lowSince := since()

	// A pod that does not tolerate the taint is not scheduled there.
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"wants-agent1","namespace":"default"},
"spec":{"nodeSelector":{"kubernetes.io/hostname":"agent1"},"tolerations":[{"operator":"Exists","key":"node-role.kubernetes.io/control-plane"}],
"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10"}]}}`
	podFile := filepath.Join(t.TempDir(), "pod.json")
	if err := os.WriteFile(podFile, []byte(pod), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(t, kc, "apply", "-f", podFile)
	scheduled := func() string {
		return kubectl(t, kc, "get", "pod", "wants-agent1", "-o", `jsonpath={.status.conditions[?(@.type=="PodScheduled")].status} {.status.conditions[?(@.type=="PodScheduled")].message}`)
	}
	deadline := time.Now().Add(time.Minute)
	for got := scheduled(); !strings.Contains(got, "untolerated taint") || !strings.Contains(got, "phonefarm.dev/phone-health"); got = scheduled() {
		if time.Now().After(deadline) {
			t.Fatalf("the pod that does not tolerate the health taint: PodScheduled %q, want False for the untolerated taint", got)
		}
		time.Sleep(time.Second)
	}
	// Two reporting periods on, still low: the transition time holds.
	time.Sleep(2 * interval)
	if got := since(); got != lowSince {
		t.Errorf("PhoneBatteryLow's lastTransitionTime moved from %s to %s while the status held", lowSince, got)
	}

	// Back on the charger: the taint goes and the pod is scheduled.
	if out, err := tb.Exec(ctx, agent1, "cd /sys/class/power_supply && echo 1 > ac/online && echo Charging > battery/status"); err != nil {
		t.Fatalf("charge agent1: %v\n%s", err, out)
	}
	recovered := time.Now()
	for {
		conds, taints := healthOf(next())
		if !slices.Contains(conds, "PhoneBatteryLow") && !slices.Contains(taints, taint) {
			t.Logf("nodes --watch showed agent1 recovered (%v, taints %v) after %s", conds, taints, time.Since(recovered).Round(time.Millisecond))
			break
		}
		if time.Since(recovered) > time.Minute {
			t.Fatalf("a minute after the charger came back, agent1 shows %v, taints %v", conds, taints)
		}
	}
	deadline = time.Now().Add(time.Minute)
	for got := scheduled(); !strings.HasPrefix(got, "True"); got = scheduled() {
		if time.Now().After(deadline) {
			t.Fatalf("after recovery the pod is still not scheduled: %q", got)
		}
		time.Sleep(time.Second)
	}
	if got := since(); got == lowSince {
		t.Errorf("PhoneBatteryLow's lastTransitionTime did not move when it flipped back to False")
	}
}
