package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phonefarm/phonefarm/checks"
	"github.com/phonefarm/phonefarm/internal/adbemu"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testenv"
	"github.com/phonefarm/phonefarm/kernelcfg"
	"github.com/phonefarm/phonefarm/transport/adb"
)

func TestCheckTestbedAndADB(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mmdebstrap")
	ctx := context.Background()
	tb, err := testbed.Up(ctx, testbed.Options{Hosts: []testbed.HostSpec{{Name: "good", PostmarketOS: true}, {Name: "busy"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tb.Down(context.Background()) })
	// Break "busy": another program holds the API server port, and a
	// route clashes with the pod network.
	if _, err := tb.Exec(ctx, tb.Host("busy"), "/usr/sbin/sshd -p 6443 && ip route add 10.42.7.0/24 dev eth0"); err != nil {
		t.Fatal(err)
	}
	srv := adbemu.StartServer(t)
	dev, err := adbemu.Start(ctx, adbemu.Options{Properties: map[string]string{"ro.build.version.sdk": "30", "ro.build.version.release": "11"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	if err := adb.Connect(t.Context(), srv.Addr(), dev.Addr()); err != nil {
		t.Fatal(err)
	}
	farm := fmt.Sprintf(`apiVersion: phonefarm.dev/v1alpha1
kind: Farm
ssh: {user: root, identityFile: %s, knownHosts: %s}
phones:
  - {name: good, os: postmarketos, role: server, ssh: {host: %s}}
  - {name: busy, os: linux, role: server, ssh: {host: %s}}
  - {name: pixel, os: android, role: agent, adb: {serial: %q, server: %q}}
`, tb.KeyFile, tb.KnownHosts, tb.Host("good").Addr, tb.Host("busy").Addr, dev.Addr(), srv.Addr())
	file := filepath.Join(t.TempDir(), "farm.yaml")
	if err := os.WriteFile(file, []byte(farm), 0o600); err != nil {
		t.Fatal(err)
	}

	// What the phones' kernel config lacks, read here directly: the test-bed
	// hosts share this machine's kernel.
	raw, err := os.ReadFile("/proc/config.gz")
	if err != nil {
		testenv.Unavailable(t, "this kernel has no /proc/config.gz: %v", err)
	}
	cfg, err := kernelcfg.Parse(raw, kernelcfg.ParseOptions{Name: "/proc/config.gz"})
	if err != nil {
		t.Fatal(err)
	}
	k3s, _ := kernelcfg.LookupProfiles("k3s")
	local := kernelcfg.Check(cfg, k3s...)

	code, stdout, stderr := run(t, "check", "-f", file, "-o", "json")
	if code != 1 {
		t.Errorf("exit status: got %d, want 1 (busy fails); stderr: %s", code, stderr)
	}
	var reports []checks.Report
	if err := json.Unmarshal([]byte(stdout), &reports); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	byPhone := map[string]checks.Report{}
	for _, r := range reports {
		byPhone[r.Phone] = r
	}
	result := func(phone, id string) checks.Result {
		for _, res := range byPhone[phone].Results {
			if res.ID == id {
				return res
			}
		}
		t.Errorf("%s: no %s check in %+v", phone, id, byPhone[phone].Results)
		return checks.Result{}
	}
	good := byPhone["good"]
	if good.Kernel == nil || good.Kernel.Path != "/proc/config.gz" || good.Kernel.Verdict != local.Verdict().String() {
		t.Errorf("good: kernel summary %+v, want /proc/config.gz with verdict %s", good.Kernel, local.Verdict())
	}
	for _, m := range local.MissingRequired() {
		if good.Kernel == nil || !strings.Contains(strings.Join(good.Kernel.MissingRequired, " "), m.ID) {
			t.Errorf("good: the phone's report does not name missing %s", m.ID)
		}
	}
	for _, id := range []string{"cgroups", "ports", "routes", "arch", "clock", "nftables"} {
		if r := result("good", id); r.Status != checks.Pass {
			t.Errorf("good/%s: got %s %q, want pass", id, r.Status, r.Message)
		}
	}
	if r := result("busy", "ports"); r.Status != checks.Fail || !strings.Contains(r.Message, "6443/tcp") {
		t.Errorf("busy/ports: got %s %q, want fail naming 6443/tcp", r.Status, r.Message)
	}
	if r := result("busy", "routes"); r.Status != checks.Fail || !strings.Contains(r.Message, "10.42.7.0/24 via eth0") {
		t.Errorf("busy/routes: got %s %q, want fail naming 10.42.7.0/24 via eth0", r.Status, r.Message)
	}
	if r := result("pixel", "android-sdk"); r.Status != checks.Pass || !strings.Contains(r.Message, "SDK 30") {
		t.Errorf("pixel/android-sdk: got %s %q, want pass naming SDK 30", r.Status, r.Message)
	}
	for _, r := range byPhone["pixel"].Results {
		if r.ID == "android-root" {
			t.Errorf("pixel: a root check (%s %q): root is a fact, not something to pass or fail", r.Status, r.Message)
		}
	}
	if _, ok := byPhone["pixel"]; ok && byPhone["pixel"].Kernel != nil {
		t.Error("pixel: android phones get no kernel-config verdict (the rootless agent runs no k3s)")
	}
}
