package adb_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/phonefarm/phonefarm/internal/adbemu"
	"github.com/phonefarm/phonefarm/transport"
	"github.com/phonefarm/phonefarm/transport/adb"
)

// startPhone starts an emulated phone and connects the adb server to it.
func startPhone(t *testing.T, srv *adbemu.Server, opts adbemu.Options) *adbemu.Device {
	t.Helper()
	ctx := t.Context()
	dev, err := adbemu.Start(ctx, opts)
	if err != nil {
		t.Fatalf("start emulated phone: %v", err)
	}
	t.Cleanup(func() { dev.Close() })
	return dev
}

// onlinePhone is an authorized emulated phone and phonefarm's Host for it.
func onlinePhone(t *testing.T, srv *adbemu.Server, opts adbemu.Options) (*adbemu.Device, *adb.Host) {
	t.Helper()
	dev := startPhone(t, srv, opts)
	if err := adb.Connect(t.Context(), srv.Addr(), dev.Addr()); err != nil {
		t.Fatalf("Connect(%s): %v", dev.Addr(), err)
	}
	srv.WaitState(t, dev.Addr(), "device")
	h, err := adb.Dial(t.Context(), adb.Config{Name: "pixel", Serial: dev.Addr(), Server: srv.Addr()})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return dev, h
}

func TestRun(t *testing.T) {
	srv := adbemu.StartServer(t)
	_, h := onlinePhone(t, srv, adbemu.Options{})

	bigStdin := randomBytes(1, 300*1024)
	tests := []struct {
		name       string
		cmd        string
		stdin      []byte
		wantStdout string
		wantStderr string
		wantStatus int
	}{
		{name: "exit 0", cmd: "echo hello", wantStdout: "hello\n"},
		{name: "exit 3", cmd: "echo oops >&2; exit 3", wantStderr: "oops\n", wantStatus: 3},
		{name: "exit 127", cmd: "phonefarm-no-such-command", wantStatus: 127},
		{name: "stderr apart from stdout", cmd: "echo out; echo err >&2; echo out2", wantStdout: "out\nout2\n", wantStderr: "err\n"},
		{name: "stdin round trip", cmd: "cat", stdin: bigStdin, wantStdout: string(bigStdin)},
		{name: "stdin closed", cmd: "cat; echo done", stdin: []byte{}, wantStdout: "done\n"},
		{name: "no stdin", cmd: "cat; echo done", wantStdout: "done\n"},
		{name: "getprop", cmd: "getprop ro.product.model; getprop ro.build.version.sdk", wantStdout: "Emulator\n34\n"},
		{name: "long command line", cmd: "echo " + strings.Repeat("x", 2000), wantStdout: strings.Repeat("x", 2000) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			c := transport.Command{Cmd: tt.cmd, Stdout: &stdout, Stderr: &stderr}
			if tt.stdin != nil {
				c.Stdin = bytes.NewReader(tt.stdin)
			}
			err := h.Run(t.Context(), c)
			status := 0
			var ee *transport.ExitError
			if errors.As(err, &ee) {
				status = ee.Status
				if ee.Host != "pixel" {
					t.Errorf("ExitError.Host: got %q, want %q", ee.Host, "pixel")
				}
			} else if err != nil {
				t.Fatalf("Run(%q): %v", tt.cmd, err)
			}
			if status != tt.wantStatus {
				t.Errorf("Run(%q) exit status: got %d, want %d (err %v)", tt.cmd, status, tt.wantStatus, err)
			}
			if tt.wantStatus == 127 {
				tt.wantStderr = stderr.String() // the shell's wording varies
			}
			if stdout.String() != tt.wantStdout {
				if len(tt.wantStdout) > 200 {
					t.Errorf("Run(%q) stdout: got %d bytes, want %d identical bytes", tt.cmd, stdout.Len(), len(tt.wantStdout))
				} else {
					t.Errorf("Run(%q) stdout: (-want +got)\n%s", tt.cmd, cmp.Diff(tt.wantStdout, stdout.String()))
				}
			}
			if diff := cmp.Diff(tt.wantStderr, stderr.String()); diff != "" {
				t.Errorf("Run(%q) stderr: (-want +got)\n%s", tt.cmd, diff)
			}
		})
	}

	t.Run("Output keeps stderr in ExitError", func(t *testing.T) {
		_, err := transport.Output(t.Context(), h, "echo broken >&2; exit 3")
		var ee *transport.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("Output: got %v, want *transport.ExitError", err)
		}
		if got, want := strings.TrimSpace(ee.Stderr), "broken"; got != want {
			t.Errorf("ExitError.Stderr: got %q, want %q", got, want)
		}
	})
}

// lineSignal closes ready when the first write arrives.
type lineSignal struct {
	once  sync.Once
	ready chan struct{}
	buf   bytes.Buffer
	mu    sync.Mutex
}

func (l *lineSignal) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	l.once.Do(func() { close(l.ready) })
	return len(p), nil
}

func (l *lineSignal) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestRunCancel(t *testing.T) {
	srv := adbemu.StartServer(t)
	_, h := onlinePhone(t, srv, adbemu.Options{})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &lineSignal{ready: make(chan struct{})}
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		errc <- h.Run(ctx, transport.Command{Cmd: "echo $$; exec sleep 60", Stdout: out})
	}()
	select {
	case <-out.ready:
	case err := <-errc:
		t.Fatalf("Run ended before it was cancelled: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("command printed nothing within 20s")
	}
	// Let the whole pid line arrive.
	time.Sleep(100 * time.Millisecond)
	pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("remote pid: got %q, want a number", out.String())
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run after cancel: got %v, want an error wrapping context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Run took %v, want well under the command's 60s", d)
	}
	// Closing the connection kills the command on the phone.
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("remote command (pid %d) still running 10s after cancel", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	return b
}

func TestFiles(t *testing.T) {
	srv := adbemu.StartServer(t)
	_, h := onlinePhone(t, srv, adbemu.Options{})
	dir := t.TempDir()

	tests := []struct {
		name    string
		path    string
		old     []byte // existing content, if any
		content []byte
		mode    fs.FileMode
	}{
		{name: "small", path: "etc/small.conf", content: []byte("key = value\n"), mode: 0o644},
		{name: "empty", path: "empty", content: []byte{}, mode: 0o600},
		{name: "20 MB", path: "big.bin", content: randomBytes(2, 20<<20), mode: 0o640},
		{name: "replace existing", path: "script.sh", old: []byte("#!/bin/sh\necho old\n"), content: []byte("#!/bin/sh\necho new\n"), mode: 0o755},
		{name: "odd name", path: "with space, comma's", content: []byte("x"), mode: 0o644},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.path)
			if tt.old != nil {
				if err := os.WriteFile(p, tt.old, 0o600); err != nil {
					t.Fatal(err)
				}
			} else if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := h.WriteFile(t.Context(), p, tt.mode, bytes.NewReader(tt.content)); err != nil {
				t.Fatalf("WriteFile(%s): %v", p, err)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatalf("stat after WriteFile: %v", err)
			}
			if got := fi.Mode().Perm(); got != tt.mode {
				t.Errorf("mode after WriteFile: got %v, want %v", got, tt.mode)
			}
			got, err := h.ReadFile(t.Context(), p)
			if err != nil {
				t.Fatalf("ReadFile(%s): %v", p, err)
			}
			if !bytes.Equal(got, tt.content) {
				t.Errorf("ReadFile after WriteFile: got %d bytes (sha256 %s), want %d identical bytes (sha256 %s)",
					len(got), sum(got), len(tt.content), sum(tt.content))
			}
			onDisk, _ := os.ReadFile(p)
			if !bytes.Equal(onDisk, tt.content) {
				t.Errorf("file on the phone: got %d bytes, want %d identical bytes", len(onDisk), len(tt.content))
			}
			gotSum, err := h.Sha256(t.Context(), p)
			if err != nil {
				t.Fatalf("Sha256(%s): %v", p, err)
			}
			if want := sum(tt.content); gotSum != want {
				t.Errorf("Sha256: got %s, want %s", gotSum, want)
			}
			assertNoTemp(t, filepath.Dir(p))
		})
	}
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	left, _ := filepath.Glob(filepath.Join(dir, "*.phonefarm-tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: got %v, want none", left)
	}
}

func TestMissingFile(t *testing.T) {
	srv := adbemu.StartServer(t)
	_, h := onlinePhone(t, srv, adbemu.Options{})
	missing := filepath.Join(t.TempDir(), "no", "such", "file")

	tests := []struct {
		name string
		op   func() error
	}{
		{"ReadFile", func() error { _, err := h.ReadFile(t.Context(), missing); return err }},
		{"Sha256", func() error { _, err := h.Sha256(t.Context(), missing); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s of a missing file: got %v, want an error wrapping fs.ErrNotExist", tt.name, err)
			}
			if err != nil && !strings.Contains(err.Error(), "pixel") {
				t.Errorf("%s error: got %q, want it to name the phone %q", tt.name, err, "pixel")
			}
		})
	}
}

// dropAfter hands out n bytes of content, then drops the phone's
// connections and keeps handing out data, as a transfer in flight would.
type dropAfter struct {
	dev   *adbemu.Device
	n     int
	total int
	read  int
	once  sync.Once
}

func (d *dropAfter) Read(p []byte) (int, error) {
	if d.read >= d.total {
		return 0, io.EOF
	}
	if d.read >= d.n {
		d.once.Do(d.dev.Drop)
	}
	n := min(len(p), d.total-d.read)
	for i := range p[:n] {
		p[i] = byte(d.read + i)
	}
	d.read += n
	return n, nil
}

func TestWriteFileDropped(t *testing.T) {
	srv := adbemu.StartServer(t)
	dev, h := onlinePhone(t, srv, adbemu.Options{})
	dir := t.TempDir()
	p := filepath.Join(dir, "k3s.yaml")
	old := []byte("old: content\n")
	if err := os.WriteFile(p, old, 0o644); err != nil {
		t.Fatal(err)
	}

	r := &dropAfter{dev: dev, n: 4 << 20, total: 256 << 20}
	err := h.WriteFile(t.Context(), p, 0o600, r)
	if err == nil {
		t.Fatalf("WriteFile with the phone dropped mid-transfer: got nil error after %d bytes, want a failure", r.read)
	}
	t.Logf("WriteFile stopped after %d of %d bytes: %v", r.read, r.total, err)
	if !errors.Is(err, transport.ErrUnreachable) {
		t.Errorf("WriteFile error: got %v, want one wrapping transport.ErrUnreachable", err)
	}
	if r.read >= r.total {
		t.Errorf("WriteFile read all %d bytes, want it to stop once the phone dropped", r.read)
	}
	got, rerr := os.ReadFile(p)
	if rerr != nil {
		t.Fatalf("read the old file: %v", rerr)
	}
	if diff := cmp.Diff(string(old), string(got)); diff != "" {
		t.Errorf("file after a dropped write: (-want +got)\n%s", diff)
	}
	fi, _ := os.Stat(p)
	if got := fi.Mode().Perm(); got != 0o644 {
		t.Errorf("mode after a dropped write: got %v, want %v", got, fs.FileMode(0o644))
	}
	// adbd deletes the partial temporary file when the transfer breaks.
	deadline := time.Now().Add(5 * time.Second)
	for {
		left, _ := filepath.Glob(filepath.Join(dir, "*.phonefarm-tmp-*"))
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("temporary files left 5s after the drop: got %v, want none", left)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestUnreachable(t *testing.T) {
	srv := adbemu.StartServer(t)

	unauthorized := startPhone(t, srv, adbemu.Options{State: adbemu.Unauthorized})
	err := adb.Connect(t.Context(), srv.Addr(), unauthorized.Addr())
	if !errors.Is(err, transport.ErrUnreachable) || !strings.Contains(err.Error(), "Allow USB debugging") {
		t.Errorf("Connect to an unauthorized phone: got %v, want an ErrUnreachable naming the USB debugging prompt", err)
	}
	srv.WaitState(t, unauthorized.Addr(), "unauthorized")

	offline := startPhone(t, srv, adbemu.Options{State: adbemu.Offline})
	// The server waits for the handshake for a while before it answers;
	// the phone is listed as offline meanwhile.
	connecting := make(chan struct{})
	t.Cleanup(func() { <-connecting })
	go func() {
		defer close(connecting)
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		adb.Connect(ctx, srv.Addr(), offline.Addr())
	}()
	srv.WaitState(t, offline.Addr(), "offline")

	tests := []struct {
		name     string
		serial   string
		server   string
		wantMsgs []string
	}{
		{name: "unauthorized", serial: unauthorized.Addr(), wantMsgs: []string{"is unauthorized", "accept the \"Allow USB debugging?\" prompt"}},
		{name: "offline", serial: offline.Addr(), wantMsgs: []string{"is offline", "adb reconnect"}},
		{name: "absent", serial: "127.0.0.1:1", wantMsgs: []string{"is absent", "adb connect 127.0.0.1:1"}},
		{name: "no server", serial: "0123456789", server: closedPort(t), wantMsgs: []string{"adb start-server"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := tt.server
			if server == "" {
				server = srv.Addr()
			}
			h, err := adb.Dial(t.Context(), adb.Config{Name: "pixel", Serial: tt.serial, Server: server})
			if err == nil {
				h.Close()
				t.Fatalf("Dial(%s): got nil error, want one", tt.serial)
			}
			t.Logf("Dial(%s): %v", tt.serial, err)
			if !errors.Is(err, transport.ErrUnreachable) {
				t.Errorf("Dial(%s): got %v, want an error wrapping transport.ErrUnreachable", tt.serial, err)
			}
			for _, want := range append([]string{"pixel"}, tt.wantMsgs...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Dial(%s) error: got %q, want it to contain %q", tt.serial, err, want)
				}
			}
		})
	}
}

func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestConnect(t *testing.T) {
	srv := adbemu.StartServer(t)
	dev := startPhone(t, srv, adbemu.Options{})
	tests := []struct {
		name    string
		addr    string
		wantErr error
	}{
		{name: "first", addr: dev.Addr()},
		{name: "again", addr: dev.Addr()},
		{name: "nobody listening", addr: closedPort(t), wantErr: transport.ErrUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := adb.Connect(t.Context(), srv.Addr(), tt.addr)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Connect(%s): got %v, want %v", tt.addr, err, tt.wantErr)
			}
		})
	}
}

func TestDialChecksShellV2(t *testing.T) {
	srv := adbemu.StartServer(t)
	dev := startPhone(t, srv, adbemu.Options{Features: []string{"stat_v2"}})
	if err := adb.Connect(t.Context(), srv.Addr(), dev.Addr()); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	srv.WaitState(t, dev.Addr(), "device")
	_, err := adb.Dial(t.Context(), adb.Config{Name: "old-phone", Serial: dev.Addr(), Server: srv.Addr()})
	if err == nil || !strings.Contains(err.Error(), "Android 7.0") {
		t.Errorf("Dial to a phone without shell_v2: got %v, want an error naming Android 7.0", err)
	}
}

func TestDescribe(t *testing.T) {
	srv := adbemu.StartServer(t)
	dev, h := onlinePhone(t, srv, adbemu.Options{})
	if got, want := h.Name(), "pixel"; got != want {
		t.Errorf("Name: got %q, want %q", got, want)
	}
	want := transport.Description{Transport: "adb", Address: dev.Addr()}
	if diff := cmp.Diff(want, h.Describe()); diff != "" {
		t.Errorf("Describe: (-want +got)\n%s", diff)
	}
}

// The real adb server lists the emulated phone with what it reported.
func TestDevices(t *testing.T) {
	srv := adbemu.StartServer(t)
	dev, _ := onlinePhone(t, srv, adbemu.Options{Properties: map[string]string{"ro.product.model": "Pixel 3a", "ro.product.device": "sargo"}})
	ds, err := adb.Devices(t.Context(), srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var got *adb.Device
	for i := range ds {
		if ds[i].Serial == dev.Addr() {
			got = &ds[i]
		}
	}
	if got == nil || got.State != "device" || got.Model != "Pixel 3a" || got.Device != "sargo" {
		t.Errorf("Devices: got %+v, want %s as a device, Pixel 3a (sargo)", ds, dev.Addr())
	}
}
