package fastboot_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/phonefarm/phonefarm/fastboot"
	"github.com/phonefarm/phonefarm/fastboot/sparse"
	"github.com/phonefarm/phonefarm/internal/fastbootemu"
)

func open(t *testing.T, d *fastbootemu.Device, opts fastboot.Options) *fastboot.Client {
	t.Helper()
	c, err := fastboot.Open(context.Background(), d.Serial(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func randomBytes(n int, seed byte) []byte {
	rng := rand.New(rand.NewChaCha8([32]byte{seed}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestGetVar(t *testing.T) {
	d := fastbootemu.Start(t, fastbootemu.Options{
		Product:         "enchilada",
		MaxDownloadSize: 64 << 20,
		Partitions:      map[string]int64{"boot_a": 1 << 20, "boot_b": 1 << 20, "userdata": 1 << 20},
		CurrentSlot:     "b",
	})
	c := open(t, d, fastboot.Options{})
	ctx := context.Background()
	tests := []struct {
		name     string
		want     string
		wantFail bool
	}{
		{name: "product", want: "enchilada"},
		{name: "unlocked", want: "yes"},
		{name: "max-download-size", want: "0x4000000"},
		{name: "current-slot", want: "b"},
		{name: "has-slot:boot", want: "yes"},
		{name: "has-slot:userdata", want: "no"},
		{name: "partition-type:userdata", want: "ext4"},
		{name: "is-logical:boot_a", want: "no"},
		{name: "no-such-var", wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.GetVar(ctx, tt.name)
			var fail *fastboot.FailError
			if tt.wantFail {
				if !errors.As(err, &fail) || fail.Reason != "GetVar Variable Not found" {
					t.Fatalf("got %v, want a FailError with the device's reason", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("getvar %s: got %q, want %q", tt.name, got, tt.want)
			}
		})
	}
	max, err := c.MaxDownloadSize(ctx)
	if err != nil || max != 64<<20 {
		t.Errorf("MaxDownloadSize: got %d, %v, want %d", max, err, 64<<20)
	}
	vars, err := c.GetVarAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, v := range vars {
		got[v.Name] = v.Value
	}
	for k, want := range map[string]string{"product": "enchilada", "partition-size:boot_a": "0x100000", "current-slot": "b"} {
		if got[k] != want {
			t.Errorf("getvar all %s: got %q, want %q", k, got[k], want)
		}
	}
	part, err := c.ResolvePartition(ctx, "boot")
	if err != nil || part != "boot_b" {
		t.Errorf("ResolvePartition(boot): got %q, %v, want boot_b", part, err)
	}
	part, err = c.ResolvePartition(ctx, "userdata")
	if err != nil || part != "userdata" {
		t.Errorf("ResolvePartition(userdata): got %q, %v, want userdata", part, err)
	}
}

func TestLockedAndInfo(t *testing.T) {
	d := fastbootemu.Start(t, fastbootemu.Options{Partitions: map[string]int64{"boot": 1 << 20}, Locked: true, UnlockAllowed: true})
	var info []string
	c := open(t, d, fastboot.Options{Info: func(l string) { info = append(info, l) }})
	ctx := context.Background()
	img := randomBytes(4096, 1)
	err := c.FlashImage(ctx, "boot", bytes.NewReader(img), int64(len(img)), fastboot.FlashOptions{})
	var fail *fastboot.FailError
	if !errors.As(err, &fail) {
		t.Fatalf("flash while locked: got %v, want a FailError", err)
	}
	if got, want := fail.Reason, "Flashing is not allowed in Lock State"; got != want {
		t.Errorf("FAIL reason: got %q, want %q verbatim", got, want)
	}
	if _, err := c.OEM(ctx, "device-info"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"Device tampered: false", "Device unlocked: false"}, info); diff != "" {
		t.Errorf("INFO lines (-want +got):\n%s", diff)
	}
	if err := c.FlashingUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.FlashImage(ctx, "boot", bytes.NewReader(img), int64(len(img)), fastboot.FlashOptions{}); err != nil {
		t.Fatalf("flash after unlock: %v", err)
	}
	if err := c.Erase(ctx, "boot"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetActive(ctx, "a"); err == nil {
		t.Error("set_active on a non-A/B device: got no error, want the device's FAIL")
	}
	if err := c.RebootBootloader(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"reboot-bootloader"}, d.Reboots()); diff != "" {
		t.Errorf("reboots (-want +got):\n%s", diff)
	}
}

func TestFlashImage(t *testing.T) {
	const max = 256 << 10
	tests := []struct {
		name       string
		size       int
		opts       fastboot.FlashOptions
		presparse  bool
		wantSparse bool
		wantPieces int
	}{
		{name: "raw fits", size: 200 << 10, wantPieces: 1},
		{name: "raw too big is split", size: 1 << 20, wantSparse: true, wantPieces: 4},
		{name: "forced sparse", size: 100 << 10, opts: fastboot.FlashOptions{Sparse: true}, wantSparse: true, wantPieces: 1},
		{name: "sparse input resplit", size: 1 << 20, presparse: true, wantSparse: true, wantPieces: 4},
		{name: "max override", size: 200 << 10, opts: fastboot.FlashOptions{MaxDownloadSize: 64 << 10}, wantSparse: true, wantPieces: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := fastbootemu.Start(t, fastbootemu.Options{MaxDownloadSize: max, Partitions: map[string]int64{"userdata": 2 << 20}})
			c := open(t, d, fastboot.Options{})
			img := randomBytes(tt.size, 7)
			clear(img[len(img)/2 : len(img)/2+16<<10]) // a fill chunk
			src := img
			if tt.presparse {
				im, err := sparse.FromRaw(bytes.NewReader(img), int64(len(img)))
				if err != nil {
					t.Fatal(err)
				}
				pieces, err := im.Split(1 << 30)
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				if _, err := pieces[0].WriteTo(&buf); err != nil {
					t.Fatal(err)
				}
				src = buf.Bytes()
			}
			var last fastboot.Progress
			var calls int
			tt.opts.Progress = func(p fastboot.Progress) { last = p; calls++ }
			if err := c.FlashImage(context.Background(), "userdata", bytes.NewReader(src), int64(len(src)), tt.opts); err != nil {
				t.Fatal(err)
			}
			got, _ := d.Partition("userdata")
			if !bytes.Equal(got[:len(img)], img) {
				t.Error("partition: got different bytes, want the image")
			}
			flashes := d.Flashes()
			if len(flashes) < tt.wantPieces {
				t.Errorf("got %d flash commands, want at least %d", len(flashes), tt.wantPieces)
			}
			for _, f := range flashes {
				if f.Sparse != tt.wantSparse {
					t.Errorf("flash %+v: got sparse=%v, want %v", f, f.Sparse, tt.wantSparse)
				}
			}
			if last.Piece != last.Pieces || last.Sent != last.Total || last.Partition != "userdata" || calls < 2 {
				t.Errorf("last progress after %d calls: got %+v, want the last piece complete", calls, last)
			}
		})
	}
}

// TestProtocolErrors uses a fake device for failures the emulator does not
// produce: garbage responses and a device that never answers.
func TestProtocolErrors(t *testing.T) {
	serve := func(t *testing.T, reply []byte) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			var hs [4]byte
			conn.Read(hs[:])
			conn.Write(reply)
			time.Sleep(5 * time.Second)
		}()
		return ln.Addr().String()
	}
	t.Run("bad handshake", func(t *testing.T) {
		_, err := fastboot.DialTCP(context.Background(), serve(t, []byte("HTTP")))
		if !errors.Is(err, fastboot.ErrProtocol) {
			t.Errorf("got %v, want ErrProtocol", err)
		}
	})
	t.Run("garbage response", func(t *testing.T) {
		tr, err := fastboot.DialTCP(context.Background(), serve(t, append([]byte("FB01"), 0, 0, 0, 0, 0, 0, 0, 4, 'W', 'H', 'A', 'T')))
		if err != nil {
			t.Fatal(err)
		}
		c := fastboot.New(tr, fastboot.Options{})
		defer c.Close()
		if _, err := c.GetVar(context.Background(), "product"); !errors.Is(err, fastboot.ErrProtocol) {
			t.Errorf("got %v, want ErrProtocol", err)
		}
	})
	t.Run("cancelled while waiting", func(t *testing.T) {
		tr, err := fastboot.DialTCP(context.Background(), serve(t, []byte("FB01")))
		if err != nil {
			t.Fatal(err)
		}
		c := fastboot.New(tr, fastboot.Options{})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := c.GetVar(ctx, "product"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0x4000000", 64 << 20},
		{"536870912", 512 << 20},
		{"20000000", 20000000}, // decimal wins when it parses
		{"1F000000", 0x1F000000},
	}
	for _, tt := range tests {
		got, err := fastboot.ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q): got %d, %v, want %d", tt.in, got, err, tt.want)
		}
	}
}

// TestListUSB only checks that discovery reads sysfs without error; a
// phone in fastboot mode on a USB port is needed to test the USB transport.
func TestListUSB(t *testing.T) {
	if _, err := fastboot.ListUSB(context.Background()); err != nil && runtime.GOOS == "linux" {
		t.Errorf("ListUSB: got %v, want no error", err)
	}
}
