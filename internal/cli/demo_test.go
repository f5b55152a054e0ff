package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phonefarm/phonefarm/examples/apps"
	"github.com/phonefarm/phonefarm/internal/demo"
	"github.com/phonefarm/phonefarm/internal/oci"
)

// The README's demo, on a tailnet: demo up --tailscale brings up the farm,
// headscale and this machine's tailscaled, and converges k3s over the
// tailnet; again, it changes nothing; demo down stops it all.
func TestDemoUpTailscale(t *testing.T) {
	t.Parallel()
	requireTailnetParts(t)
	// The demo applies through a phonefarm process of its own, so it runs
	// as the real binary does.
	bin := buildPhonefarm(t)
	dir := filepath.Join(t.TempDir(), "demo")
	env := append(os.Environ(), "PHONEFARM_CACHE="+dir+"-cache")
	run := func(args ...string) (int, string) {
		code, stdout, stderr := runBinary(t, bin, env, append(args, "--dir", dir, "--testbed-id", "0")...)
		return code, stdout + stderr
	}
	t.Cleanup(func() { run("demo", "down") })
	appsTar := filepath.Join(t.TempDir(), "apps.tar")
	imgs, err := apps.Images(t.Context(), "amd64", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := oci.WriteArchive(appsTar, imgs); err != nil {
		t.Fatal(err)
	}

	code, out := run("demo", "up", "--tailscale", "--apps", appsTar)
	if code != 0 {
		t.Fatalf("demo up --tailscale: exit %d\n%s", code, out)
	}
	ready := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, " Ready ") && strings.Contains(line, " 100.64.") {
			ready++
		}
	}
	if ready != len(demo.Hosts) {
		t.Errorf("demo up --tailscale: %d nodes Ready on tailnet addresses, want %d:\n%s", ready, len(demo.Hosts), out)
	}
	// The example apps run and the chat is answered by several phones.
	if got := phonesIn(linesWith(out, "Hello from ")); len(got) < 2 {
		t.Errorf("demo up --tailscale: the chat was answered by %v, want more than one phone:\n%s", got, out)
	}
	if !strings.Contains(out, "assistant  1     "+demo.AssistantPhone) {
		t.Errorf("demo up --tailscale: want the assistant on %s:\n%s", demo.AssistantPhone, out)
	}
	kc, err := os.ReadFile(filepath.Join(dir, "kubeconfig"))
	if err != nil || !strings.Contains(string(kc), "server: https://100.") || !strings.Contains(string(kc), "proxy-url: http://127.0.0.1:") {
		t.Errorf("demo kubeconfig: want the tailnet address through the tailscaled proxy: %v\n%s", err, kc)
	}

	// The demo's inventory records the check it skips, so plan on it
	// agrees with demo up without flags.
	inv, err := os.ReadFile(filepath.Join(dir, "farm.yaml"))
	if err != nil || !strings.Contains(string(inv), "- {id: kernel-config, reason: ") {
		t.Errorf("demo inventory: want checks.skip with kernel-config and why: %v\n%s", err, inv)
	}
	if code, stdout, stderr := runBinary(t, bin, append(env, tn0(t, dir).Env()...), "plan", "-f", filepath.Join(dir, "farm.yaml")); code != 0 || strings.Contains(stdout, "blocked") || !strings.Contains(stdout, "No changes") {
		t.Errorf("plan on the demo's inventory, no flags: exit %d, want no change and nothing blocked:\n%s%s", code, stdout, stderr)
	}

	code, out = run("demo", "up", "--tailscale", "--apps", appsTar)
	if code != 0 || !strings.Contains(out, "demo tailnet already running") || strings.Count(out, "unchanged") < len(demo.Hosts) {
		t.Errorf("demo up --tailscale again: exit %d, want it to reuse everything and change nothing:\n%s", code, out)
	}

	b, err := os.ReadFile(filepath.Join(dir, "tailnet.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tn demo.Tailnet
	if err := json.Unmarshal(b, &tn); err != nil {
		t.Fatal(err)
	}
	if code, out := run("demo", "down"); code != 0 || !strings.Contains(out, "demo farm removed") {
		t.Errorf("demo down: exit %d\n%s", code, out)
	}
	for name, pid := range map[string]int{"headscale": tn.Headscale.PID, "tailscaled": tn.Controller.PID} {
		// A killed process nobody has reaped yet is gone too.
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err == nil && strings.Contains(string(status), "Name:\t"+name+"\n") && !strings.Contains(string(status), "State:\tZ") {
			t.Errorf("demo down left %s (pid %d) running", name, pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("demo down left %s: %v", dir, err)
	}
}

// linesWith returns the lines of s that contain sub.
func linesWith(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// tn0 reads the demo's tailnet record.
func tn0(t *testing.T, dir string) *demo.Tailnet {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "tailnet.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tn demo.Tailnet
	if err := json.Unmarshal(b, &tn); err != nil {
		t.Fatal(err)
	}
	return &tn
}
