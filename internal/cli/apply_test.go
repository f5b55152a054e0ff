package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testenv"
	"github.com/phonefarm/phonefarm/provision"
)

// releaseServer serves k3s the way the release downloads do: for each
// version, the asset and its sha256sum file under /VERSION/.
func releaseServer(t *testing.T, binaries map[string]string) string {
	t.Helper()
	mux := http.NewServeMux()
	for version, binary := range binaries {
		f, err := os.Open(binary)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := f.WriteTo(h); err != nil {
			t.Fatal(err)
		}
		f.Close()
		sums := hex.EncodeToString(h.Sum(nil)) + "  k3s\n"
		prefix := "/" + version + "/"
		mux.HandleFunc(prefix+"sha256sum-amd64.txt", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, sums) })
		mux.HandleFunc(prefix+"k3s", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, binary) })
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

type applyFarm struct {
	tb      *testbed.Testbed
	file    string
	release string
	gone    string
	version string
}

func (f *applyFarm) write(t *testing.T, labels map[string]string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: phonefarm.dev/v1alpha1\nkind: Farm\nname: testfarm\nk3s:\n  version: %s\n  disable: [traefik, metrics-server, servicelb]\n  source: {releaseURL: %s}\n", f.version, f.release)
	fmt.Fprintf(&b, "ssh: {user: user, become: doas, identityFile: %s, knownHosts: %s}\nphones:\n", f.tb.KeyFile, f.tb.KnownHosts)
	for i, h := range f.tb.Hosts {
		role := "agent"
		if i < 2 {
			role = "server"
		}
		args, _ := json.Marshal(h.K3sArgsFor(role == "server"))
		fmt.Fprintf(&b, "  - name: %s\n    os: postmarketos\n    role: %s\n    ssh: {host: %s}\n    k3sArgs: %s\n", h.Name, role, h.Addr, args)
		if v, ok := labels[h.Name]; ok {
			fmt.Fprintf(&b, "    labels: {phonefarm.dev/shelf: %q}\n", v)
		}
	}
	fmt.Fprintf(&b, "  - name: gone\n    os: postmarketos\n    role: agent\n    ssh: {host: %s, port: 2}\n", f.gone)
	if err := os.WriteFile(f.file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f *applyFarm) apply(t *testing.T) map[string]provision.PhoneResult {
	t.Helper()
	res, _ := f.applyLog(t)
	return res
}

// applyLog applies and also returns apply's progress log.
func (f *applyFarm) applyLog(t *testing.T) (map[string]provision.PhoneResult, string) {
	t.Helper()
	code, stdout, stderr := run(t, "apply", "-f", f.file, "--skip-checks=kernel-config", "-o", "json")
	if code != 1 {
		t.Errorf("apply exit status: got %d, want 1 (phone gone is unreachable)\n%s", code, stderr)
	}
	var res []provision.PhoneResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v: %s\n%s", err, stdout, stderr)
	}
	out := map[string]provision.PhoneResult{}
	for _, r := range res {
		out[r.Phone] = r
	}
	if g := out["gone"]; g.Outcome != provision.Blocked || !strings.Contains(g.Reason, "unreachable") {
		t.Errorf("gone: got %s %q, want blocked as unreachable", g.Outcome, g.Reason)
	}
	return out, stderr
}

// startTimes reads when each phone's k3s process started.
func (f *applyFarm) startTimes(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, h := range f.tb.Hosts {
		b, err := f.tb.Exec(context.Background(), h, "p=$(pgrep -o -f '^/usr/local/bin/k3s (server|agent)'); echo $p; cat /proc/$p/stat")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(strings.TrimSpace(string(b)), "\n", 2)
		// Field 22 of /proc/PID/stat, counted after the command name, which
		// is in parentheses and may hold spaces.
		fields := strings.Fields(lines[len(lines)-1][strings.LastIndex(lines[len(lines)-1], ")")+1:])
		if len(lines) != 2 || len(fields) < 20 {
			t.Fatalf("%s: no running k3s: %q", h.Name, b)
		}
		out[h.Name] = fields[19]
	}
	return out
}

func kubectl(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	k3s, err := testbed.K3sBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(k3s, filepath.Join(dir, "kubectl")); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(dir, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func reachable(tb *testbed.Testbed, from *testbed.Host, addr string, port int) bool {
	_, err := tb.Exec(context.Background(), from, fmt.Sprintf("timeout 3 bash -c 'echo > /dev/tcp/%s/%d'", addr, port))
	return err == nil
}

func TestApplyFarmOnRealK3s(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mmdebstrap")
	k3s, err := testbed.K3sBinary()
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	k3sNext, err := testbed.K3sBinaryVersion(testbed.K3sUpgradeVersion)
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	ctx := context.Background()
	tb, err := testbed.Up(ctx, testbed.Options{Hosts: []testbed.HostSpec{
		{Name: "server1", PostmarketOS: true}, {Name: "server2", PostmarketOS: true},
		{Name: "agent1", PostmarketOS: true}, {Name: "agent2"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tb.Down(context.Background()) })
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// What the servers' k3s said last: an API that stops answering
		// mid-test is explained there.
		for _, name := range []string{"server1", "server2"} {
			out, _ := tb.Exec(context.Background(), tb.Host(name), "date -u; tail -n 120 /var/log/k3s.log")
			t.Logf("%s: end of /var/log/k3s.log:\n%s", name, out)
		}
	})
	release := releaseServer(t, map[string]string{testbed.K3sVersion: k3s, testbed.K3sUpgradeVersion: k3sNext})
	f := &applyFarm{tb: tb, file: filepath.Join(t.TempDir(), "farm.yaml"), release: release, gone: tb.Gateway, version: testbed.K3sVersion}
	f.write(t, map[string]string{"agent1": "top", "agent2": "top"})
	server1, agent1 := tb.Host("server1"), tb.Host("agent1")

	// Before: postmarketOS's firewall drops the API port.
	if reachable(tb, agent1, server1.Addr, 6443) {
		t.Error("6443 on server1 reachable before apply; the drop-by-default firewall should stop it")
	}

	res := f.apply(t)
	for _, h := range tb.Hosts {
		if r := res[h.Name]; r.Outcome != provision.Changed {
			t.Errorf("%s: got %s %q, want changed", h.Name, r.Outcome, r.Reason)
		}
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if code, out, errOut := run(t, "kubeconfig", "-f", f.file, "--out", kc); code != 0 {
		t.Fatalf("kubeconfig: %d %s %s", code, out, errOut)
	}
	nodes := kubectl(t, kc, "get", "nodes", "--no-headers", "-o", "custom-columns=NAME:.metadata.name,READY:.status.conditions[?(@.type==\"Ready\")].status,IP:.status.addresses[0].address,SHELF:.metadata.labels.phonefarm\\.dev/shelf,ROLES:.metadata.labels.node-role\\.kubernetes\\.io/etcd")
	t.Logf("kubectl get nodes:\n%s", nodes)
	for _, h := range tb.Hosts {
		fields := ""
		for _, line := range strings.Split(nodes, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == h.Name {
				fields = strings.Join(f, " ")
			}
		}
		want := h.Name + " True " + h.Addr
		if !strings.HasPrefix(fields, want) {
			t.Errorf("node %s: got %q, want it Ready at its address (%q)", h.Name, fields, want)
		}
	}
	for _, line := range strings.Split(nodes, "\n") {
		if strings.HasPrefix(line, "server2") && !strings.HasSuffix(strings.TrimSpace(line), "true") {
			t.Errorf("server2 is not an etcd member: %q; it should have joined the first server's cluster", line)
		}
	}

	// The firewall fragment opens the API; without it the port is closed.
	if !reachable(tb, agent1, server1.Addr, 6443) {
		t.Error("6443 on server1 not reachable from agent1 with phonefarm's fragment loaded")
	}
	if _, err := tb.Exec(ctx, server1, "rm "+provision.NftFragmentPath+" && rc-service nftables reload"); err != nil {
		t.Fatal(err)
	}
	if reachable(tb, agent1, server1.Addr, 6443) {
		t.Error("6443 on server1 reachable without phonefarm's fragment")
	}
	// The next apply puts back the fragment and only that.
	res = f.apply(t)
	if r := res["server1"]; r.Outcome != provision.Changed || r.Applied != 1 {
		t.Errorf("server1 after losing its firewall fragment: got %s with %d steps, want changed with 1 step", r.Outcome, r.Applied)
	}
	if !reachable(tb, agent1, server1.Addr, 6443) {
		t.Error("6443 on server1 not reachable after apply restored the fragment")
	}

	// Converged: nothing changes and nothing restarts.
	before := f.startTimes(t)
	res = f.apply(t)
	for _, h := range tb.Hosts {
		if r := res[h.Name]; r.Outcome != provision.Unchanged {
			t.Errorf("%s on re-apply: got %s (%d steps, %q), want unchanged", h.Name, r.Outcome, r.Applied, r.Reason)
		}
	}
	if after := f.startTimes(t); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("k3s restarted on a converged re-apply: start times %v, then %v", before, after)
	}
	// The unreachable phone is blocked: the plan says so by its exit status.
	code, planOut, _ := run(t, "plan", "-f", f.file, "--skip-checks=kernel-config")
	if code != 1 || strings.Count(planOut, ": no changes") != 4 || !strings.Contains(planOut, "gone") {
		t.Errorf("plan on a converged farm with an unreachable phone (exit %d, want 1):\n%s", code, planOut)
	}

	// One label changes: only that node's labels change, nothing restarts.
	f.write(t, map[string]string{"agent1": "bottom", "agent2": "top"})
	res = f.apply(t)
	for _, h := range tb.Hosts {
		want := provision.Unchanged
		if h.Name == "agent1" {
			want = provision.Changed
		}
		if r := res[h.Name]; r.Outcome != want || (want == provision.Changed && r.Applied != 1) {
			t.Errorf("%s after a label change: got %s with %d steps (%q), want %s", h.Name, r.Outcome, r.Applied, r.Reason, want)
		}
	}
	if got := strings.TrimSpace(kubectl(t, kc, "get", "node", "agent1", "-o", "jsonpath={.metadata.labels.phonefarm\\.dev/shelf}")); got != "bottom" {
		t.Errorf("agent1 label: got %q, want bottom", got)
	}
	if after := f.startTimes(t); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a label change restarted k3s: start times %v, then %v", before, after)
	}

	// Upgrade: a new k3s version rolls one phone at a time, servers first,
	// each Ready before the next restarts.
	f.version = testbed.K3sUpgradeVersion
	f.write(t, map[string]string{"agent1": "bottom", "agent2": "top"})
	code, planJSON, _ := run(t, "plan", "-f", f.file, "--skip-checks=kernel-config", "-o", "json")
	wantWhy := "installed " + testbed.K3sVersion + ", want " + testbed.K3sUpgradeVersion
	if code != 1 || strings.Count(planJSON, wantWhy) != 4 {
		t.Errorf("upgrade plan (exit %d) does not give %q for the 4 phones:\n%s", code, wantWhy, planJSON)
	}
	res, progress := f.applyLog(t)
	for _, h := range tb.Hosts {
		if r := res[h.Name]; r.Outcome != provision.Changed {
			t.Errorf("%s on upgrade: got %s %q, want changed", h.Name, r.Outcome, r.Reason)
		}
	}
	// phonefarm's own log shows the roll: each phone restarts, then waits
	// for Ready, before the next restarts. (k3s start times would not: with
	// two etcd members, restarting one costs quorum and the other's k3s
	// restarts by itself.)
	var order []string
	for _, line := range strings.Split(progress, "\n") {
		for _, h := range []string{"server1", "server2", "agent1", "agent2"} {
			switch {
			case strings.Contains(line, "["+h+"]") && strings.Contains(line, ") restart k3s"):
				order = append(order, h+" restart")
			case strings.Contains(line, "["+h+"]") && strings.Contains(line, ") wait for node"):
				order = append(order, h+" ready")
			}
		}
	}
	wantOrder := []string{"server1 restart", "server1 ready", "server2 restart", "server2 ready", "agent1 restart", "agent1 ready", "agent2 restart", "agent2 ready"}
	if diff := cmp.Diff(wantOrder, order); diff != "" {
		t.Errorf("upgrade order in apply's log (-want +got):\n%s\n%s", diff, progress)
	}
	// The relabelled build keeps the kubelet's own version stamp, so the
	// new version shows in what each phone's k3s reports.
	code, factsJSON, _ := run(t, "facts", "-f", f.file, "-o", "json")
	if code != 1 || strings.Count(factsJSON, `"version": "`+testbed.K3sUpgradeVersion+`"`) != 4 {
		t.Errorf("after the upgrade, want 4 phones running %s (exit %d):\n%s", testbed.K3sUpgradeVersion, code, factsJSON)
	}
	ready := kubectl(t, kc, "get", "nodes", "--no-headers", "-o", "custom-columns=NAME:.metadata.name,READY:.status.conditions[?(@.type==\"Ready\")].status")
	if strings.Count(ready, "True") != 4 {
		t.Errorf("after the upgrade, want 4 Ready nodes:\n%s", ready)
	}

	// Reset asks first; "no" changes nothing.
	var stdout, stderr strings.Builder
	if code := Run(t.Context(), []string{"reset", "-f", f.file, "agent2"}, strings.NewReader("no\n"), &stdout, &stderr); code != 1 {
		t.Errorf("reset answered no: got exit %d, want 1", code)
	}
	installed := "test -x /usr/local/bin/k3s && pgrep -f '^/usr/local/bin/k3s agent' >/dev/null"
	if _, err := tb.Exec(ctx, tb.Host("agent2"), installed); err != nil {
		t.Errorf("k3s gone from agent2 after the reset was declined: %v", err)
	}
	// With --yes it removes k3s, its data and the firewall fragment.
	if code, out, errOut := run(t, "reset", "-f", f.file, "agent2", "--yes"); code != 0 || !strings.Contains(out, "agent2: reset") {
		t.Fatalf("reset: exit %d\n%s%s", code, out, errOut)
	}
	left, err := tb.Exec(ctx, tb.Host("agent2"), "ls -d /usr/local/bin/k3s /usr/local/bin/kubectl /etc/rancher/k3s /var/lib/rancher/k3s /etc/init.d/k3s-agent "+provision.NftFragmentPath+" 2>/dev/null; pgrep -f '^/usr/local/bin/k3s' || true")
	if err != nil || strings.TrimSpace(string(left)) != "" {
		t.Errorf("after reset, agent2 still has: %q (%v)", left, err)
	}
	if _, err := tb.Exec(ctx, tb.Host("agent1"), installed); err != nil {
		t.Errorf("resetting agent2 touched agent1: %v", err)
	}
}
