package adbemu_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/phonefarm/phonefarm/internal/adbemu"
)

// These tests drive the emulator with the real adb client and server, the
// same way a person would with a phone on a cable.

func start(t *testing.T, opts adbemu.Options) *adbemu.Device {
	t.Helper()
	dev, err := adbemu.Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := dev.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return dev
}

// connect runs `adb connect`; for a phone that never finishes the handshake
// it gives up after a few seconds, leaving the phone listed.
func connect(t *testing.T, srv *adbemu.Server, dev *adbemu.Device) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	out, err := srv.Run(ctx, "connect", dev.Addr())
	t.Logf("adb connect %s: %v: %s", dev.Addr(), err, strings.TrimSpace(out))
}

func TestStates(t *testing.T) {
	srv := adbemu.StartServer(t)
	tests := []struct {
		state adbemu.State
		want  string
	}{
		{adbemu.Authorized, "device"},
		{adbemu.Unauthorized, "unauthorized"},
		{adbemu.Offline, "offline"},
	}
	for _, tt := range tests {
		t.Run(tt.state.String(), func(t *testing.T) {
			dev := start(t, adbemu.Options{State: tt.state})
			connect(t, srv, dev)
			srv.WaitState(t, dev.Addr(), tt.want)
		})
	}
}

func TestBanner(t *testing.T) {
	srv := adbemu.StartServer(t)
	dev := start(t, adbemu.Options{Properties: map[string]string{"ro.product.model": "Nexus_5"}})
	connect(t, srv, dev)
	srv.WaitState(t, dev.Addr(), "device")
	out, err := srv.Run(t.Context(), "devices", "-l")
	if err != nil {
		t.Fatalf("adb devices -l: %v: %s", err, out)
	}
	for _, want := range []string{"product:phonefarm_emu", "model:Nexus_5", "device:emu"} {
		if !strings.Contains(out, want) {
			t.Errorf("adb devices -l: got %q, want it to contain %q", out, want)
		}
	}
	out, err = srv.Run(t.Context(), "-s", dev.Addr(), "features")
	if err != nil {
		t.Fatalf("adb features: %v: %s", err, out)
	}
	got := strings.Fields(strings.ReplaceAll(out, ",", " "))
	if diff := cmp.Diff(adbemu.DefaultFeatures, got); diff != "" {
		t.Errorf("adb features: (-want +got)\n%s", diff)
	}
}

// adbShell runs `adb -s SERIAL shell CMD` with stdin and returns stdout,
// stderr and the exit status of the adb client.
func adbShell(t *testing.T, srv *adbemu.Server, dev *adbemu.Device, cmd, stdin string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := srv.Command(ctx, "-s", dev.Addr(), "shell", cmd)
	var stdout, stderr bytes.Buffer
	c.Stdin, c.Stdout, c.Stderr = strings.NewReader(stdin), &stdout, &stderr
	err := c.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("adb shell %q: %v", cmd, err)
	}
	return stdout.String(), stderr.String(), c.ProcessState.ExitCode()
}

func TestShell(t *testing.T) {
	srv := adbemu.StartServer(t)
	v2 := start(t, adbemu.Options{Properties: map[string]string{"ro.build.version.release": "9"}, Dumpsys: map[string]string{"battery": "Current Battery Service state:\n  level: 81"}})
	legacy := start(t, adbemu.Options{Features: []string{}})
	for _, dev := range []*adbemu.Device{v2, legacy} {
		connect(t, srv, dev)
		srv.WaitState(t, dev.Addr(), "device")
	}

	tests := []struct {
		name       string
		dev        *adbemu.Device
		cmd, stdin string
		wantOut    string
		wantErr    string
		wantStatus int
	}{
		{name: "v2 exit 0", dev: v2, cmd: "echo hi", wantOut: "hi\n"},
		{name: "v2 exit 3", dev: v2, cmd: "exit 3", wantStatus: 3},
		{name: "v2 stderr apart", dev: v2, cmd: "echo out; echo err >&2", wantOut: "out\n", wantErr: "err\n"},
		{name: "v2 stdin", dev: v2, cmd: "tr a-z A-Z", stdin: "hello\n", wantOut: "HELLO\n"},
		{name: "v2 getprop", dev: v2, cmd: "getprop ro.build.version.release; getprop ro.product.cpu.abi", wantOut: "9\narm64-v8a\n"},
		{name: "v2 getprop unknown", dev: v2, cmd: "getprop no.such.prop", wantOut: "\n"},
		{name: "v2 dumpsys", dev: v2, cmd: "dumpsys battery | grep level", wantOut: "  level: 81\n"},
		{name: "v2 dumpsys unknown service", dev: v2, cmd: "dumpsys wifi", wantErr: "Can't find service: wifi\n", wantStatus: 1},
		{name: "v2 getprop all", dev: v2, cmd: "getprop | grep product.model", wantOut: "[ro.product.model]: [Emulator]\n"},
		// Without shell_v2 the exit status and the split of stderr are lost,
		// as on phones before Android 7.
		{name: "legacy merges stderr and loses status", dev: legacy, cmd: "echo out; echo err >&2; exit 3", wantOut: "out\nerr\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, status := adbShell(t, srv, tt.dev, tt.cmd, tt.stdin)
			if status != tt.wantStatus {
				t.Errorf("adb shell %q exit status: got %d, want %d", tt.cmd, status, tt.wantStatus)
			}
			if diff := cmp.Diff(tt.wantOut, out); diff != "" {
				t.Errorf("adb shell %q stdout: (-want +got)\n%s", tt.cmd, diff)
			}
			if diff := cmp.Diff(tt.wantErr, errOut); diff != "" {
				t.Errorf("adb shell %q stderr: (-want +got)\n%s", tt.cmd, diff)
			}
		})
	}
}

func TestSync(t *testing.T) {
	srv := adbemu.StartServer(t)
	dev := start(t, adbemu.Options{})
	connect(t, srv, dev)
	srv.WaitState(t, dev.Addr(), "device")
	ctx := t.Context()
	local, phone := t.TempDir(), t.TempDir()

	content := bytes.Repeat([]byte("phonefarm\x00\xff"), 300_000) // 3.3 MB, many chunks
	src := filepath.Join(local, "src.bin")
	if err := os.WriteFile(src, content, 0o640); err != nil {
		t.Fatal(err)
	}
	remote := filepath.Join(phone, "new", "dir", "dst.bin")
	if out, err := srv.Run(ctx, "-s", dev.Addr(), "push", src, remote); err != nil {
		t.Fatalf("adb push: %v: %s", err, out)
	}
	got, err := os.ReadFile(remote)
	if err != nil {
		t.Fatalf("pushed file: %v", err)
	}
	if !bytes.Equal(got, content) {
		t.Errorf("pushed file: got %d bytes, want %d identical bytes", len(got), len(content))
	}
	if fi, _ := os.Stat(remote); fi.Mode().Perm() != 0o640 {
		t.Errorf("pushed file mode: got %v, want %v", fi.Mode().Perm(), os.FileMode(0o640))
	}

	back := filepath.Join(local, "back.bin")
	if out, err := srv.Run(ctx, "-s", dev.Addr(), "pull", remote, back); err != nil {
		t.Fatalf("adb pull: %v: %s", err, out)
	}
	if got, _ := os.ReadFile(back); !bytes.Equal(got, content) {
		t.Errorf("pulled file: got %d bytes, want %d identical bytes", len(got), len(content))
	}

	out, err := srv.Run(ctx, "-s", dev.Addr(), "pull", filepath.Join(phone, "missing"), filepath.Join(local, "x"))
	if err == nil || !strings.Contains(out, "No such file or directory") {
		t.Errorf("adb pull of a missing file: got %v: %q, want a failure saying %q", err, out, "No such file or directory")
	}

	out, err = srv.Run(ctx, "-s", dev.Addr(), "ls", filepath.Dir(remote))
	if err != nil || !strings.Contains(out, " dst.bin\n") {
		t.Errorf("adb ls: got %v: %q, want a listing with dst.bin", err, out)
	}
}

func TestDropKillsCommands(t *testing.T) {
	srv := adbemu.StartServer(t)
	dev := start(t, adbemu.Options{})
	connect(t, srv, dev)
	srv.WaitState(t, dev.Addr(), "device")
	pidFile := filepath.Join(t.TempDir(), "pid")

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := srv.Run(ctx, "-s", dev.Addr(), "shell", "echo $$ > "+pidFile+"; exec sleep 60")
		done <- err
	}()
	var pid int
	for pid == 0 {
		b, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		select {
		case <-ctx.Done():
			t.Fatal("command did not start within 30s")
		case <-time.After(20 * time.Millisecond):
		}
	}
	dev.Drop()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("adb shell still running 10s after Drop, want it to end")
	}
	for syscall.Kill(pid, 0) == nil {
		select {
		case <-ctx.Done():
			t.Fatalf("command (pid %d) still running after Drop", pid)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
