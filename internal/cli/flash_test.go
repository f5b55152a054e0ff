package cli

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/phonefarm/phonefarm/internal/fastbootemu"
)

// The -update flag rewrites golden files. Other test files of this package
// may register it too: package variables initialise before init runs, so
// this registers it only when nobody has.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files")
	}
}

func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func writeFarm(t *testing.T, phone, device string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "farm.yaml")
	farm := "apiVersion: phonefarm.dev/v1alpha1\nkind: Farm\nphones:\n  - name: " + phone + "\n    device: " + device + "\n    os: postmarketos\n    ssh: {host: 172.16.42.1}\n"
	if err := os.WriteFile(p, []byte(farm), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeExport(t *testing.T, codename string) (dir string, boot, rootfs []byte) {
	t.Helper()
	dir = t.TempDir()
	rng := rand.New(rand.NewChaCha8([32]byte{9}))
	boot = make([]byte, 512<<10)
	rootfs = make([]byte, 3<<20)
	for _, b := range [][]byte{boot, rootfs[:2<<20]} {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "boot.img"), boot, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, codename+".img"), rootfs, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, boot, rootfs
}

func TestFlashCmd(t *testing.T) {
	farm := writeFarm(t, "op6", "oneplus-enchilada")
	dir, boot, rootfs := writeExport(t, "oneplus-enchilada")
	parts := map[string]int64{"boot": 4 << 20, "userdata": 8 << 20}
	tests := []struct {
		name       string
		emu        fastbootemu.Options
		stdin      string
		extra      []string
		wantCode   int
		wantFlash  bool
		wantUnlock bool
		wantOut    []string
		wantErr    []string
	}{
		{
			name: "unlocked", emu: fastbootemu.Options{Product: "enchilada", Partitions: parts, MaxDownloadSize: 1 << 20},
			wantFlash: true, wantOut: []string{"Flashing rootfs", "Flashed op6"}, wantErr: []string{"sending userdata (sparse 1/"},
		},
		{
			name: "locked, confirmed", emu: fastbootemu.Options{Product: "enchilada", Partitions: parts, Locked: true, UnlockAllowed: true},
			stdin: "y\n", wantFlash: true, wantUnlock: true,
			wantOut: []string{"bootloader of op6 is locked", "erases everything"}, wantErr: []string{"Unlock the bootloader of op6 and erase everything on it? [y/N]"},
		},
		{
			name: "locked, declined", emu: fastbootemu.Options{Product: "enchilada", Partitions: parts, Locked: true, UnlockAllowed: true},
			stdin: "n\n", wantCode: 3, wantErr: []string{"unlock declined"},
		},
		{
			name: "locked, --yes", emu: fastbootemu.Options{Product: "enchilada", Partitions: parts, Locked: true, UnlockAllowed: true},
			extra: []string{"--yes"}, wantFlash: true, wantUnlock: true,
		},
		{
			name: "a Pixel on the cable", emu: fastbootemu.Options{Product: "sargo", Partitions: parts},
			wantCode: 4, wantErr: []string{"wrong phone", "reports \"sargo\""},
		},
		{
			name: "wrong checksum", emu: fastbootemu.Options{Product: "enchilada", Partitions: parts},
			extra: []string{"--sha256", strings.Repeat("0", 64)}, wantCode: 1, wantErr: []string{"checksum mismatch"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emu := fastbootemu.Start(t, tt.emu)
			args := append([]string{"flash", "-f", farm, "op6", "--image", dir, "--serial", emu.Serial()}, tt.extra...)
			code, out, errOut := runPhonefarm(t, tt.stdin, args...)
			if code != tt.wantCode {
				t.Fatalf("exit status: got %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, out, errOut)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout: got\n%s\nwant %q in it", out, w)
				}
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr: got\n%s\nwant %q in it", errOut, w)
				}
			}
			gotBoot, _ := emu.Partition("boot")
			gotRoot, _ := emu.Partition("userdata")
			flashed := bytes.Equal(gotBoot[:len(boot)], boot) && bytes.Equal(gotRoot[:len(rootfs)], rootfs)
			if flashed != tt.wantFlash {
				t.Errorf("partitions hold the images: got %v, want %v", flashed, tt.wantFlash)
			}
			unlocked := false
			for _, c := range emu.Commands() {
				if c == "flashing unlock" {
					unlocked = true
				}
			}
			if unlocked != tt.wantUnlock {
				t.Errorf("flashing unlock sent: got %v, want %v (commands %q)", unlocked, tt.wantUnlock, emu.Commands())
			}
		})
	}
}

func TestFlashCmdUsage(t *testing.T) {
	farm := writeFarm(t, "op6", "oneplus-enchilada")
	noDevice := filepath.Join(t.TempDir(), "farm.yaml")
	os.WriteFile(noDevice, []byte("apiVersion: phonefarm.dev/v1alpha1\nkind: Farm\nphones:\n  - name: op6\n    os: postmarketos\n    ssh: {host: 10.0.0.2}\n"), 0o644)
	mtk := writeFarm(t, "tab", "xiaomi-cereus")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{name: "unknown phone", args: []string{"flash", "-f", farm, "nope"}, wantCode: 2, wantErr: `no phone "nope"`},
		{name: "no device field", args: []string{"flash", "-f", noDevice, "op6"}, wantCode: 2, wantErr: "has no device: field"},
		{name: "url without checksum", args: []string{"flash", "-f", farm, "op6", "--image", "https://example.org/x.img.xz"}, wantCode: 2, wantErr: "needs --sha256"},
		{name: "bad checksum", args: []string{"flash", "-f", farm, "op6", "--sha256", "xyz"}, wantCode: 2, wantErr: "not hex"},
		{name: "mtkclient", args: []string{"flash", "-f", mtk, "tab", "--dry-run"}, wantCode: 1, wantErr: "flash method mtkclient: not supported yet"},
		{name: "no phone", args: []string{"flash", "-f", farm}, wantCode: 2, wantErr: "one PHONE"},
		{name: "unlock code given as itself", args: []string{"flash", "-f", farm, "op6", "--dry-run", "--unlock-code", "0xC0DE5EC2E7"}, wantCode: 2, wantErr: "must be a reference, env:NAME or file:PATH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runPhonefarm(t, "", tt.args...)
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("got status %d and stderr %q, want %d and %q", code, errOut, tt.wantCode, tt.wantErr)
			}
			if strings.Contains(out+errOut, "C0DE5EC2E7") {
				t.Errorf("the unlock code was printed: %q %q", out, errOut)
			}
		})
	}
}

// TestFlashDryRun is the plan --dry-run prints; the phone is not touched.
func TestFlashDryRun(t *testing.T) {
	farm := writeFarm(t, "pixel", "google-sargo")
	export := filepath.Join("..", "..", "flash", "testdata", "export")
	code, out, errOut := runPhonefarm(t, "", "flash", "-f", farm, "pixel", "--image", export, "--serial", "tcp:127.0.0.1:1", "--dry-run")
	if code != 0 {
		t.Fatalf("exit status %d: %s", code, errOut)
	}
	golden := filepath.Join("testdata", t.Name()+".golden")
	if updateGolden() {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), out); diff != "" {
		t.Errorf("dry run (-want +got):\n%s", diff)
	}
}
