package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phonefarm/phonefarm/internal/fastbootemu"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testenv"
)

// TestFlashSetup flashes an emulated phone, then runs --setup against a
// real sshd in a postmarketOS-like test-bed host standing in for the
// booted phone.
func TestFlashSetup(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mmdebstrap")
	ctx := context.Background()
	tb, err := testbed.Up(ctx, testbed.Options{Hosts: []testbed.HostSpec{{Name: "op6", PostmarketOS: true}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Down(context.WithoutCancel(ctx)) })
	h := tb.Hosts[0]

	farm := writeFarm(t, "op6", "oneplus-enchilada")
	dir, _, _ := writeExport(t, "oneplus-enchilada")
	emu := fastbootemu.Start(t, fastbootemu.Options{Product: "enchilada", Partitions: map[string]int64{"boot": 4 << 20, "userdata": 8 << 20}})
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	code, out, errOut := runPhonefarm(t, "", "flash", "-f", farm, "op6", "--image", dir, "--serial", emu.Serial(),
		"--setup", "--address", h.Addr, "--user", "root", "--become", "none", "--identity", tb.KeyFile, "--known-hosts", knownHosts)
	if code != 0 {
		t.Fatalf("exit status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"Flashed op6", "Password login is off on op6", "  - name: op6\n    device: oneplus-enchilada\n    os: postmarketos\n    ssh:\n      host: " + h.Addr + "\n      user: root\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout: got\n%s\nwant %q in it", out, want)
		}
	}
	kh, err := os.ReadFile(knownHosts)
	if err != nil || !strings.Contains(string(kh), h.Addr) {
		t.Errorf("known_hosts: got %q (%v), want the phone's host key recorded", kh, err)
	}
}
