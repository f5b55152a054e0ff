package fastbootemu_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/phonefarm/phonefarm/internal/fastbootemu"
	"github.com/phonefarm/phonefarm/internal/testenv"
)

// runFastboot runs the real fastboot tool against d.
func runFastboot(t *testing.T, tool string, d *fastbootemu.Device, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(tool, append([]string{"-s", d.Serial()}, args...)...).CombinedOutput()
	return string(out), err
}

func randomFile(t *testing.T, size int, seed byte) (string, []byte) {
	t.Helper()
	rng := rand.New(rand.NewChaCha8([32]byte{seed}))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	// Zero runs so fill chunks appear in the sparse pieces too.
	clear(b[size/3 : size/3+min(256<<10, size/3)])
	f := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return f, b
}

// TestRealFastboot drives the emulator with the real fastboot tool.
func TestRealFastboot(t *testing.T) {
	tool := testenv.RequireTool(t, "fastboot")
	parts := map[string]int64{"boot": 4 << 20, "userdata": 16 << 20}

	t.Run("getvar all", func(t *testing.T) {
		d := fastbootemu.Start(t, fastbootemu.Options{Product: "sargo", Partitions: parts, MaxDownloadSize: 1 << 20})
		out, err := runFastboot(t, tool, d, "getvar", "all")
		if err != nil {
			t.Fatalf("fastboot getvar all: %v\n%s", err, out)
		}
		for _, want := range []string{"(bootloader) product:sargo", "(bootloader) unlocked:yes", "(bootloader) max-download-size:0x100000", "(bootloader) partition-size:userdata:0x1000000"} {
			if !strings.Contains(out, want) {
				t.Errorf("getvar all: got\n%s\nwant a line %q", out, want)
			}
		}
		out, err = runFastboot(t, tool, d, "getvar", "product")
		if err != nil || !strings.Contains(out, "product: sargo") {
			t.Errorf("getvar product: got %v\n%s\nwant product: sargo", err, out)
		}
	})

	t.Run("flash raw and sparse", func(t *testing.T) {
		d := fastbootemu.Start(t, fastbootemu.Options{Partitions: parts, MaxDownloadSize: 1 << 20})
		small, smallData := randomFile(t, 700<<10, 1)
		out, err := runFastboot(t, tool, d, "flash", "boot", small)
		if err != nil {
			t.Fatalf("fastboot flash boot: %v\n%s", err, out)
		}
		got, _ := d.Partition("boot")
		if !bytes.Equal(got[:len(smallData)], smallData) {
			t.Error("boot partition after fastboot flash: got different bytes, want the image")
		}
		// Larger than max-download-size: the tool resparses it into pieces.
		// (fastboot 29 fails on sizes that are not whole 4 KiB blocks.)
		big, bigData := randomFile(t, 3<<20, 2)
		out, err = runFastboot(t, tool, d, "flash", "userdata", big)
		if err != nil {
			t.Fatalf("fastboot flash userdata: %v\n%s", err, out)
		}
		if !strings.Contains(out, "Sending sparse 'userdata' 1/") {
			t.Errorf("fastboot output: got\n%s\nwant sparse pieces", out)
		}
		got, _ = d.Partition("userdata")
		if !bytes.Equal(got[:len(bigData)], bigData) {
			t.Error("userdata partition after a sparse flash: got different bytes, want the image")
		}
		var sparsePieces int
		for _, f := range d.Flashes() {
			if f.Partition == "userdata" && f.Sparse {
				sparsePieces++
				if f.Size > 1<<20 {
					t.Errorf("sparse piece of %d bytes: want at most max-download-size 1 MiB", f.Size)
				}
			}
		}
		if sparsePieces < 3 {
			t.Errorf("got %d sparse pieces, want at least 3", sparsePieces)
		}
		wantCmds := []string{"getvar:has-slot:userdata", "getvar:max-download-size", "getvar:is-logical:userdata"}
		if diff := cmp.Diff(wantCmds, d.Commands()[5:8]); diff != "" {
			t.Errorf("commands the tool sends before flashing (-want +got):\n%s", diff)
		}
	})

	t.Run("locked refusal and unlock", func(t *testing.T) {
		d := fastbootemu.Start(t, fastbootemu.Options{Partitions: parts, Locked: true})
		small, _ := randomFile(t, 64<<10, 3)
		out, err := runFastboot(t, tool, d, "flash", "boot", small)
		if err == nil || !strings.Contains(out, "FAILED (remote: 'Flashing is not allowed in Lock State')") {
			t.Errorf("flash while locked: got %v\n%s\nwant the lock-state refusal", err, out)
		}
		out, err = runFastboot(t, tool, d, "flashing", "unlock")
		if err == nil || !strings.Contains(out, "flashing unlock is not allowed") {
			t.Errorf("unlock without OEM unlocking: got %v\n%s\nwant a refusal", err, out)
		}
		if d.Unlocked() {
			t.Error("got unlocked, want still locked")
		}
	})

	t.Run("unlock allowed", func(t *testing.T) {
		d := fastbootemu.Start(t, fastbootemu.Options{Partitions: parts, Locked: true, UnlockAllowed: true})
		out, err := runFastboot(t, tool, d, "flashing", "unlock")
		if err != nil {
			t.Fatalf("flashing unlock: %v\n%s", err, out)
		}
		out, err = runFastboot(t, tool, d, "getvar", "unlocked")
		if err != nil || !strings.Contains(out, "unlocked: yes") {
			t.Errorf("getvar unlocked after unlock: got %v\n%s\nwant unlocked: yes", err, out)
		}
		out, err = runFastboot(t, tool, d, "oem", "device-info")
		if err != nil || !strings.Contains(out, "(bootloader) Device unlocked: true") {
			t.Errorf("oem device-info: got %v\n%s\nwant Device unlocked: true", err, out)
		}
		out, err = runFastboot(t, tool, d, "erase", "userdata")
		if err != nil {
			t.Errorf("erase userdata: %v\n%s", err, out)
		}
		out, err = runFastboot(t, tool, d, "reboot-bootloader")
		if err != nil {
			t.Errorf("reboot-bootloader: %v\n%s", err, out)
		}
		if diff := cmp.Diff([]string{"reboot-bootloader"}, d.Reboots()); diff != "" {
			t.Errorf("reboots (-want +got):\n%s", diff)
		}
	})

	t.Run("slots", func(t *testing.T) {
		d := fastbootemu.Start(t, fastbootemu.Options{Partitions: map[string]int64{"boot_a": 1 << 20, "boot_b": 1 << 20}, CurrentSlot: "a"})
		small, data := randomFile(t, 100<<10, 4)
		out, err := runFastboot(t, tool, d, "flash", "boot", small)
		if err != nil {
			t.Fatalf("flash boot on an A/B device: %v\n%s", err, out)
		}
		got, _ := d.Partition("boot_a")
		if !bytes.Equal(got[:len(data)], data) {
			t.Error("boot_a: got different bytes, want the image")
		}
		if out, err := runFastboot(t, tool, d, "set_active", "b"); err != nil {
			t.Fatalf("set_active b: %v\n%s", err, out)
		}
		out, _ = runFastboot(t, tool, d, "getvar", "current-slot")
		if !strings.Contains(out, "current-slot: b") {
			t.Errorf("current-slot after set_active b: got\n%s\nwant b", out)
		}
	})
}
