package flash_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ulikunitz/xz"

	"github.com/phonefarm/phonefarm/devicedb"
	"github.com/phonefarm/phonefarm/fastboot"
	"github.com/phonefarm/phonefarm/flash"
	"github.com/phonefarm/phonefarm/internal/fastbootemu"
)

var update = flag.Bool("update", false, "rewrite golden files")

func device(t *testing.T, codename string) devicedb.Device {
	t.Helper()
	d, ok := devicedb.Lookup(codename)
	if !ok {
		t.Fatalf("device %s not in the database", codename)
	}
	return d
}

// writeImage writes a size-byte image: random data in the 1 MiB blocks
// where data(i) is true, zeros (holes) elsewhere.
func writeImage(t *testing.T, path string, size int64, seed byte, data func(i int64) bool) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewChaCha8([32]byte{seed}))
	buf := make([]byte, 1<<20)
	for i := int64(0); i*int64(len(buf)) < size; i++ {
		if !data(i) {
			continue
		}
		for j := 0; j < len(buf); j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8; k++ {
				buf[j+k] = byte(v >> (8 * k))
			}
		}
		n := min(int64(len(buf)), size-i*int64(len(buf)))
		if _, err := f.WriteAt(buf[:n], i*int64(len(buf))); err != nil {
			t.Fatal(err)
		}
	}
}

// samePrefix checks that partition starts with the file's bytes and is
// zero after them.
func samePrefix(t *testing.T, emu *fastbootemu.Device, partition, file string) {
	t.Helper()
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := emu.Partition(partition)
	if !ok {
		t.Fatalf("partition %s missing", partition)
	}
	if len(got) < len(want) {
		t.Fatalf("partition %s: got %d bytes, want at least %d", partition, len(got), len(want))
	}
	if !bytes.Equal(got[:len(want)], want) {
		t.Errorf("partition %s: got bytes that differ from %s, want them identical", partition, file)
	}
	if slices.ContainsFunc(got[len(want):], func(b byte) bool { return b != 0 }) {
		t.Errorf("partition %s: got data after the image, want zeros", partition)
	}
}

type recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

func newFlasher(out io.Writer, confirm func(context.Context, string) (bool, error)) *flash.Flasher {
	return &flash.Flasher{
		Out:     out,
		Confirm: confirm,
		Connect: func(ctx context.Context, serial string) (flash.Device, error) {
			return fastboot.Open(ctx, serial, fastboot.Options{Info: func(l string) { fmt.Fprintf(out, "(bootloader) %s\n", l) }})
		},
		Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() },
	}
}

// TestFlash200MB flashes a 200 MB boot+rootfs pair onto an emulated
// OnePlus 6 whose download buffer is 64 MB: the rootfs goes in sparse
// pieces and both partitions end up byte-identical to the images.
func TestFlash200MB(t *testing.T) {
	dir := t.TempDir()
	boot := filepath.Join(dir, "boot.img")
	rootfs := filepath.Join(dir, "oneplus-enchilada.img")
	writeImage(t, boot, 24<<20, 1, func(i int64) bool { return i%4 != 3 })
	writeImage(t, rootfs, 176<<20, 2, func(i int64) bool { return i%2 == 0 || i%5 == 0 })

	emu := fastbootemu.Start(t, fastbootemu.Options{
		Product:         "enchilada",
		MaxDownloadSize: 64 << 20,
		Partitions:      map[string]int64{"boot_a": 64 << 20, "boot_b": 64 << 20, "userdata": 256 << 20},
		CurrentSlot:     "a",
	})
	var out recorder
	f := newFlasher(&out, func(context.Context, string) (bool, error) {
		t.Error("confirm called for an unlocked phone")
		return false, nil
	})
	var progress []fastboot.Progress
	f.Progress = func(p fastboot.Progress) {
		if p.Sent == p.Total {
			progress = append(progress, p)
		}
	}
	spec := flash.Spec{Phone: "op6", Device: device(t, "oneplus-enchilada"), Source: flash.Source{Dir: dir}, Serial: emu.Serial()}
	plan, err := f.Run(context.Background(), spec)
	if err != nil {
		t.Fatalf("flash: %v\noutput:\n%s", err, out.String())
	}
	samePrefix(t, emu, "boot_a", boot)
	samePrefix(t, emu, "userdata", rootfs)

	var pieces int
	for _, fl := range emu.Flashes() {
		if fl.Size > 64<<20 {
			t.Errorf("flash of %s: got a %d-byte download, want at most 64 MiB", fl.Partition, fl.Size)
		}
		if fl.Partition == "userdata" {
			if !fl.Sparse {
				t.Errorf("userdata flash: got raw, want sparse")
			}
			pieces++
		}
	}
	if pieces < 2 {
		t.Errorf("got %d sparse pieces for userdata, want at least 2 (the sparse split)", pieces)
	}
	if got, want := len(progress), pieces+1; got != want {
		t.Errorf("got %d completed downloads in progress reports, want %d: %+v", got, want, progress)
	}
	if last := progress[len(progress)-1]; last.Partition != "userdata" || last.Piece != last.Pieces || last.Pieces != pieces {
		t.Errorf("last progress: got %+v, want userdata piece %d of %d", last, pieces, pieces)
	}
	if diff := cmp.Diff([]string{"reboot"}, emu.Reboots()); diff != "" {
		t.Errorf("reboots (-want +got):\n%s", diff)
	}
	if plan.Facts == nil || plan.Facts.Partitions["boot"] != "boot_a" {
		t.Errorf("plan facts: got %+v, want boot resolved to boot_a", plan.Facts)
	}
	for _, c := range emu.Commands() {
		if isUnlock(c) {
			t.Errorf("got command %q on an unlocked phone, want no unlock", c)
		}
	}
}

// isUnlock reports whether a fastboot command unlocks (getvar unlocked only
// reads the state).
func isUnlock(cmd string) bool {
	return strings.Contains(cmd, "unlock") && !strings.HasPrefix(cmd, "getvar:")
}

// smallExport writes a tiny export directory for codename.
func smallExport(t *testing.T, codename string) (dir, boot, rootfs string) {
	t.Helper()
	dir = t.TempDir()
	boot = filepath.Join(dir, "boot.img")
	rootfs = filepath.Join(dir, codename+".img")
	writeImage(t, boot, 1<<20, 3, func(int64) bool { return true })
	writeImage(t, rootfs, 3<<20, 4, func(i int64) bool { return i != 1 })
	return dir, boot, rootfs
}

func TestLockedPhone(t *testing.T) {
	parts := map[string]int64{"boot": 4 << 20, "userdata": 8 << 20}
	tests := []struct {
		name        string
		device      string
		product     string
		drop        bool
		unlockCode  string
		answer      bool
		wantErr     error
		wantConfirm bool
		wantUnlock  string // command expected after confirmation
		wantOut     []string
	}{
		{
			name: "confirmed", device: "oneplus-enchilada", product: "enchilada", answer: true,
			wantConfirm: true, wantUnlock: "flashing unlock",
			wantOut: []string{"bootloader of op6 is locked", "OEM unlocking", "volume up or down", "erases everything"},
		},
		{
			name: "confirmed, phone drops the connection", device: "oneplus-enchilada", product: "enchilada", answer: true, drop: true,
			wantConfirm: true, wantUnlock: "flashing unlock",
		},
		{
			name: "declined", device: "oneplus-enchilada", product: "enchilada", answer: false,
			wantConfirm: true, wantErr: flash.ErrBootloaderLocked,
			wantOut: []string{"erases everything"},
		},
		{
			name: "xiaomi waits", device: "xiaomi-beryllium", product: "beryllium",
			wantErr: flash.ErrBootloaderLocked,
			wantOut: []string{"Mi account", "7 to 30 days"},
		},
		{
			name: "sony without code", device: "sony-tulip", product: "tulip",
			wantErr: flash.ErrBootloaderLocked,
			wantOut: []string{"developer.sony.com"},
		},
		{
			name: "sony with code", device: "sony-tulip", product: "tulip", unlockCode: "0x1234ABCD", answer: true,
			wantConfirm: true, wantUnlock: "oem unlock 0x1234ABCD",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, boot, rootfs := smallExport(t, tt.device)
			emu := fastbootemu.Start(t, fastbootemu.Options{Product: tt.product, Partitions: parts, Locked: true, UnlockAllowed: true, UnlockCode: tt.unlockCode, DropAfterUnlock: tt.drop})
			var out recorder
			confirmed := false
			f := newFlasher(&out, func(ctx context.Context, q string) (bool, error) {
				confirmed = true
				for _, c := range emu.Commands() {
					if isUnlock(c) {
						t.Errorf("before confirmation: got command %q, want no unlock sent yet", c)
					}
				}
				if !strings.Contains(q, "erase") {
					t.Errorf("question: got %q, want it to mention erasing", q)
				}
				return tt.answer, nil
			})
			spec := flash.Spec{Phone: "op6", Device: device(t, tt.device), Source: flash.Source{Dir: dir}, Serial: emu.Serial(), UnlockCode: tt.unlockCode}
			_, err := f.Run(context.Background(), spec)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v\noutput:\n%s", err, tt.wantErr, out.String())
			}
			if confirmed != tt.wantConfirm {
				t.Errorf("got confirm called %v, want %v", confirmed, tt.wantConfirm)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output: got\n%s\nwant it to contain %q", out.String(), w)
				}
			}
			if tt.unlockCode != "" && strings.Contains(out.String(), tt.unlockCode) {
				t.Errorf("output shows the unlock code, want it kept secret")
			}
			cmds := emu.Commands()
			unlocks := slices.DeleteFunc(slices.Clone(cmds), func(c string) bool { return !isUnlock(c) })
			if tt.wantUnlock == "" {
				if len(unlocks) > 0 {
					t.Errorf("got unlock commands %q, want none", unlocks)
				}
				if slices.ContainsFunc(cmds, func(c string) bool { return strings.HasPrefix(c, "download") }) {
					t.Errorf("got a download on a locked phone, want none: %q", cmds)
				}
				return
			}
			if diff := cmp.Diff([]string{tt.wantUnlock}, unlocks); diff != "" {
				t.Errorf("unlock commands (-want +got):\n%s", diff)
			}
			if !emu.Unlocked() {
				t.Error("got a locked phone, want it unlocked")
			}
			samePrefix(t, emu, "boot", boot)
			samePrefix(t, emu, "userdata", rootfs)
		})
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func xzFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(in); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// imageServer serves dir like images.postmarketos.org: NAME.img.xz,
// NAME-boot.img.xz and their .sha256 files.
func imageServer(t *testing.T, codename string) (srv *httptest.Server, rootfsURL, rootfsSum, boot, rootfs string) {
	t.Helper()
	_, boot, rootfs = smallExport(t, codename)
	web := t.TempDir()
	name := "20260101-0000-postmarketOS-edge-console-" + codename
	xzFile(t, boot, filepath.Join(web, name+"-boot.img.xz"))
	xzFile(t, rootfs, filepath.Join(web, name+".img.xz"))
	for _, f := range []string{name + "-boot.img.xz", name + ".img.xz"} {
		sum := sha256File(t, filepath.Join(web, f))
		if err := os.WriteFile(filepath.Join(web, f+".sha256"), []byte(sum+"  "+f+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv = httptest.NewServer(http.FileServer(http.Dir(web)))
	t.Cleanup(srv.Close)
	return srv, srv.URL + "/" + name + ".img.xz", sha256File(t, filepath.Join(web, name+".img.xz")), boot, rootfs
}

func TestFlashFromURL(t *testing.T) {
	_, url, sum, boot, rootfs := imageServer(t, "oneplus-enchilada")
	emu := fastbootemu.Start(t, fastbootemu.Options{Product: "enchilada", Partitions: map[string]int64{"boot": 4 << 20, "userdata": 8 << 20}})
	var out recorder
	f := newFlasher(&out, nil)
	var reports []flash.DownloadProgress
	f.Images.Progress = func(p flash.DownloadProgress) { reports = append(reports, p) }
	check, err := flash.ParseChecksum("sha256:" + sum)
	if err != nil {
		t.Fatal(err)
	}
	spec := flash.Spec{Phone: "op6", Device: device(t, "oneplus-enchilada"), Source: flash.Source{URL: url, Checksum: &check}, Serial: emu.Serial()}
	if _, err := f.Run(context.Background(), spec); err != nil {
		t.Fatalf("flash: %v\n%s", err, out.String())
	}
	samePrefix(t, emu, "boot", boot)
	samePrefix(t, emu, "userdata", rootfs)
	if len(reports) < 2 || reports[len(reports)-1].Done != reports[len(reports)-1].Total {
		t.Errorf("download progress: got %+v, want reports ending complete for both images", reports)
	}
}

// TestStopsBeforeThePhone: a wrong checksum sends nothing at all; a
// product mismatch sends nothing but the getvar product that reveals it.
func TestStopsBeforeThePhone(t *testing.T) {
	srv, url, _, _, _ := imageServer(t, "oneplus-enchilada")
	_ = srv
	dir, _, _ := smallExport(t, "oneplus-enchilada")
	wrong := &flash.Checksum{Algo: "sha256", Hex: strings.Repeat("ab", 32)}
	tests := []struct {
		name     string
		product  string
		source   flash.Source
		wantErr  error
		wantCmds []string
		wantMsg  string
	}{
		{name: "wrong checksum of a download", product: "enchilada", source: flash.Source{URL: url, Checksum: wrong}, wantErr: flash.ErrChecksumMismatch},
		{name: "wrong checksum of a local image", product: "enchilada", source: flash.Source{Dir: dir, Checksum: wrong}, wantErr: flash.ErrChecksumMismatch},
		{name: "a Pixel 3a instead of the OnePlus 6", product: "sargo", source: flash.Source{Dir: dir}, wantErr: flash.ErrProductMismatch, wantCmds: []string{"getvar:product"}, wantMsg: "Google Pixel 3a (google-sargo)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emu := fastbootemu.Start(t, fastbootemu.Options{Product: tt.product, Partitions: map[string]int64{"boot": 4 << 20, "userdata": 8 << 20}})
			var out recorder
			f := newFlasher(&out, nil)
			spec := flash.Spec{Phone: "op6", Device: device(t, "oneplus-enchilada"), Source: tt.source, Serial: emu.Serial()}
			_, err := f.Run(context.Background(), spec)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error: got %q, want it to name %q", err, tt.wantMsg)
			}
			if diff := cmp.Diff(tt.wantCmds, emu.Commands()); diff != "" {
				t.Errorf("commands the phone received (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNotSupported(t *testing.T) {
	tests := []struct {
		device string
		want   string
	}{
		{device: "xiaomi-cereus", want: "flash method mtkclient"},
		{device: "purism-librem5", want: "flash method uuu"},
		{device: "pine64-pinephone", want: "flash method none"},
		{device: "samsung-i9100-downstream", want: "flash method heimdall-isorec"},
	}
	for _, tt := range tests {
		t.Run(tt.device, func(t *testing.T) {
			d, ok := devicedb.Lookup(tt.device)
			if !ok {
				t.Fatalf("%s is not in the pinned device database (devicedb); the test pins it: update the test with the data", tt.device)
			}
			f := newFlasher(io.Discard, nil)
			_, err := f.Run(context.Background(), flash.Spec{Phone: "p", Device: d, Source: flash.Source{Dir: t.TempDir()}})
			if !errors.Is(err, flash.ErrNotSupported) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want ErrNotSupported naming %q", err, tt.want)
			}
		})
	}
}

// TestHeimdall checks the heimdall invocation with a stand-in script: no
// heimdall device side exists to test against.
func TestHeimdall(t *testing.T) {
	var dev devicedb.Device
	for _, d := range devicedb.All() {
		if d.FlashMethod == devicedb.MethodHeimdallBootimg {
			if v, _ := d.Value("generate_bootimg"); v == "true" {
				dev = d
				break
			}
		}
	}
	if dev.Codename == "" {
		t.Fatal("no heimdall-bootimg device in the database")
	}
	dir, _, _ := smallExport(t, dev.Codename)
	bin := t.TempDir()
	log := filepath.Join(bin, "args")
	script := filepath.Join(bin, "heimdall")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" > "+log+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := newFlasher(io.Discard, nil)
	f.LookPath = func(string) (string, error) { return script, nil }
	if _, err := f.Run(context.Background(), flash.Spec{Phone: "s", Device: dev, Source: flash.Source{Dir: dir}}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"flash", "--" + dev.Partitions.Kernel + " ", "--" + dev.Partitions.Rootfs + " "} {
		if !strings.Contains(string(got), want) {
			t.Errorf("heimdall arguments: got %q, want %q in them", got, want)
		}
	}
	f.LookPath = func(string) (string, error) { return "", errors.New("not found") }
	if _, err := f.Run(context.Background(), flash.Spec{Phone: "s", Device: dev, Source: flash.Source{Dir: dir}}); err == nil || !strings.Contains(err.Error(), "needs heimdall") {
		t.Errorf("without heimdall: got %v, want an error saying heimdall is needed", err)
	}
}

// TestDryRunPlan is the plan --dry-run prints for a Pixel 3a export.
func TestDryRunPlan(t *testing.T) {
	spec := flash.Spec{Phone: "pixel", Device: device(t, "google-sargo"), Source: flash.Source{Dir: filepath.Join("testdata", "export")}}
	plan, images, err := flash.Prepare(context.Background(), spec, flash.ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer images.Close()
	var buf bytes.Buffer
	plan.Write(&buf)
	golden := filepath.Join("testdata", t.Name()+".golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), buf.String()); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
}

func TestParseChecksum(t *testing.T) {
	h64, h128 := strings.Repeat("a", 64), strings.Repeat("B", 128)
	tests := []struct {
		in      string
		want    flash.Checksum
		wantErr bool
	}{
		{in: h64, want: flash.Checksum{Algo: "sha256", Hex: h64}},
		{in: "sha256:" + h64, want: flash.Checksum{Algo: "sha256", Hex: h64}},
		{in: "sha512:" + h128, want: flash.Checksum{Algo: "sha512", Hex: strings.ToLower(h128)}},
		{in: "sha512:" + h64, wantErr: true},
		{in: "md5:abc", wantErr: true},
		{in: strings.Repeat("z", 64), wantErr: true},
	}
	for _, tt := range tests {
		got, err := flash.ParseChecksum(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseChecksum(%.12q...): got error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseChecksum(%.12q...) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestUnlockGuide(t *testing.T) {
	tests := []struct {
		device      string
		wantCommand string
		wantCode    bool
	}{
		{device: "google-sargo", wantCommand: "flashing unlock"},
		{device: "oneplus-enchilada", wantCommand: "flashing unlock"},
		{device: "oneplus-bacon", wantCommand: "oem unlock"},
		{device: "fairphone-fp4", wantCommand: "flashing unlock"},
		{device: "sony-tulip", wantCommand: "oem unlock CODE", wantCode: true},
		{device: "motorola-harpia", wantCommand: "oem unlock CODE", wantCode: true},
		{device: "xiaomi-beryllium", wantCommand: ""},
		{device: "huawei-kiwi", wantCommand: ""},
		{device: "samsung-i9100-downstream", wantCommand: ""},
	}
	for _, tt := range tests {
		t.Run(tt.device, func(t *testing.T) {
			d, ok := devicedb.Lookup(tt.device)
			if !ok {
				t.Fatalf("%s is not in the pinned device database (devicedb); the test pins it: update the test with the data", tt.device)
			}
			g := flash.UnlockGuide(d)
			if g.Command != tt.wantCommand || g.NeedsCode != tt.wantCode {
				t.Errorf("got command %q (code %v), want %q (code %v)", g.Command, g.NeedsCode, tt.wantCommand, tt.wantCode)
			}
			if g.Outlook == "" {
				t.Error("got no outlook, want one")
			}
		})
	}
}
