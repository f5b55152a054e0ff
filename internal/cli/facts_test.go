package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/phonefarm/phonefarm/internal/adbemu"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testenv"
	"github.com/phonefarm/phonefarm/transport/adb"
)

// run runs the CLI and returns its exit status, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(t.Context(), args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestFactsTestbedAndADB(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mmdebstrap")
	ctx := context.Background()
	tb, err := testbed.Up(ctx, testbed.Options{Hosts: []testbed.HostSpec{
		{Name: "pmos1", PostmarketOS: true}, {Name: "pmos2", PostmarketOS: true}, {Name: "pmos3", PostmarketOS: true},
		{Name: "deb1"}, {Name: "deb2"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tb.Down(context.Background()) })

	srv := adbemu.StartServer(t)
	dev, err := adbemu.Start(ctx, adbemu.Options{Properties: map[string]string{
		"ro.build.version.release": "11", "ro.build.version.sdk": "30", "ro.product.cpu.abi": "arm64-v8a", "ro.product.model": "Pixel 3a",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	if err := adb.Connect(t.Context(), srv.Addr(), dev.Addr()); err != nil {
		t.Fatal(err)
	}

	var farm strings.Builder
	fmt.Fprintf(&farm, "apiVersion: phonefarm.dev/v1alpha1\nkind: Farm\nssh:\n  user: user\n  become: doas\n  identityFile: %s\n  knownHosts: %s\nphones:\n", tb.KeyFile, tb.KnownHosts)
	for _, h := range tb.Hosts {
		os := "linux"
		if h.PostmarketOS {
			os = "postmarketos"
		}
		fmt.Fprintf(&farm, "  - name: %s\n    os: %s\n    ssh: {host: %s}\n", h.Name, os, h.Addr)
	}
	fmt.Fprintf(&farm, "  - name: pixel\n    os: android\n    adb: {serial: %q, server: %q}\n", dev.Addr(), srv.Addr())
	// A phone that is switched off: the others must still be read.
	fmt.Fprintf(&farm, "  - name: gone\n    os: linux\n    ssh: {host: %s, port: 2}\n", tb.Gateway)
	file := filepath.Join(t.TempDir(), "farm.yaml")
	if err := os.WriteFile(file, []byte(farm.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	// deb2 carries the port forwarder Android's Linux terminal VM runs.
	if out, err := tb.Exec(ctx, tb.Host("deb2"), "mkdir -p /usr/lib/systemd/system && touch /usr/lib/systemd/system/forwarder_guest_launcher.service"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	code, stdout, stderr := run(t, "facts", "-f", file, "-o", "json")
	if code != 1 {
		t.Errorf("exit status: got %d, want 1 (one phone unreachable); stderr: %s", code, stderr)
	}
	var res []phoneFacts
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	type row struct{ Phone, OS, Init, Arch, Via, Nft string }
	var got []row
	for _, r := range res {
		if !r.Reachable {
			got = append(got, row{Phone: r.Phone, OS: "unreachable"})
			if !strings.Contains(r.Error, "gone") || !strings.Contains(r.Error, "unreachable") {
				t.Errorf("unreachable phone error %q does not name the phone and the reason", r.Error)
			}
			continue
		}
		nft := r.Facts.Firewall.NftVersion
		if r.Transport.Transport == "adb" {
			nft = "" // the emulated phone's shell sees this machine's tools
		}
		got = append(got, row{r.Phone, r.Facts.OS.ID, r.Facts.Init, r.Facts.Arch, r.Transport.Transport, nft})
	}
	want := []row{
		{"pmos1", "postmarketos", "openrc", "amd64", "ssh", "1.0.6"},
		{"pmos2", "postmarketos", "openrc", "amd64", "ssh", "1.0.6"},
		{"pmos3", "postmarketos", "openrc", "amd64", "ssh", "1.0.6"},
		{"deb1", "debian", "openrc", "amd64", "ssh", "1.0.6"},
		{"deb2", "debian", "openrc", "amd64", "ssh", "1.0.6"},
		{"pixel", "android", "android", "arm64", "adb", ""},
		{"gone", "unreachable", "", "", "", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("facts (-want +got):\n%s", diff)
	}
	for _, r := range res[:5] {
		f := r.Facts
		if f.CPUs < 1 || f.Memory.Total == 0 || f.Disk.Free == 0 || f.Cgroup.Version == 0 || f.Hostname != r.Phone || f.Kernel == "" {
			t.Errorf("%s: incomplete facts: %+v", r.Phone, f)
		}
		if r.Transport.Become != "doas" {
			t.Errorf("%s: become: got %q, want doas", r.Phone, r.Transport.Become)
		}
		if f.OS.AndroidTerminal != (r.Phone == "deb2") {
			t.Errorf("%s: Android's Linux terminal %v, want it on deb2 only", r.Phone, f.OS.AndroidTerminal)
		}
	}
	if a := res[5].Facts.OS.Android; a == nil || a.SDK != 30 || a.Model != "Pixel 3a" {
		t.Errorf("android facts: got %+v, want sdk 30, model Pixel 3a", a)
	}

	// The table names every phone and the unreachable one's reason.
	code, stdout, _ = run(t, "facts", "-f", file)
	if code != 1 || !strings.Contains(stdout, "gone: ") || !strings.Contains(stdout, "postmarketos v25.06") || !strings.Contains(stdout, "android 11 (sdk 30)") ||
		!strings.Contains(stdout, "(Android terminal)") {
		t.Errorf("table output (exit %d):\n%s", code, stdout)
	}
	t.Logf("phonefarm facts:\n%s", stdout)
}
