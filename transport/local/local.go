// Package local implements transport.Host on the machine phonefarm runs on:
// for the test-bed controller, for tests, and for farms where phonefarm runs
// on one of the phones itself.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/phonefarm/phonefarm/transport"
)

var _ transport.Host = (*Host)(nil)

// Host is this machine.
type Host struct {
	// Label is the inventory name used in errors; "localhost" when empty.
	Label string
	// Become is "sudo" or "doas" to run commands as root when phonefarm
	// itself does not run as root.
	Become string
}

// Name implements transport.Host.
func (h *Host) Name() string {
	if h.Label == "" {
		return "localhost"
	}
	return h.Label
}

// Describe implements transport.Host.
func (h *Host) Describe() transport.Description {
	return transport.Description{Transport: "local", Address: "localhost", Become: h.become()}
}

func (h *Host) become() string {
	if os.Geteuid() == 0 || h.Become == "none" {
		return ""
	}
	return h.Become
}

// Run implements transport.Host. The command runs in its own process group,
// which cancellation kills as a whole.
func (h *Host) Run(ctx context.Context, c transport.Command) error {
	args := []string{"/bin/sh", "-c", c.Cmd}
	switch h.become() {
	case "sudo":
		args = append([]string{"sudo", "-n", "--"}, args...)
	case "doas":
		args = append([]string{"doas", "-n"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout = c.Stdin, c.Stdout
	stderr := &tail{max: 4096}
	cmd.Stderr = stderr
	if c.Stderr != nil {
		cmd.Stderr = io.MultiWriter(c.Stderr, stderr)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start %q: %w", h.Name(), c.Cmd, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("%s: %q: %w", h.Name(), c.Cmd, ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &transport.ExitError{Host: h.Name(), Cmd: c.Cmd, Status: ee.ExitCode(), Stderr: string(stderr.buf)}
	}
	return err
}

// WriteFile implements transport.Host.
func (h *Host) WriteFile(ctx context.Context, path string, mode fs.FileMode, r io.Reader) error {
	if h.become() != "" {
		return fmt.Errorf("write %s on %s: writing files through %s is not supported; run phonefarm as root", path, h.Name(), h.become())
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".phonefarm-"+hex.EncodeToString(b))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm())
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = io.Copy(f, transport.ContextReader(ctx, r))
	if err == nil {
		err = f.Chmod(mode.Perm()) // umask must not change the mode
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadFile implements transport.Host.
func (h *Host) ReadFile(ctx context.Context, path string) ([]byte, error) {
	if h.become() != "" {
		return transport.ShellReadFile(ctx, h, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s on %s: %w", path, h.Name(), err)
	}
	return b, nil
}

// Sha256 implements transport.Host.
func (h *Host) Sha256(ctx context.Context, path string) (string, error) {
	return transport.ShellSha256(ctx, h, path)
}

// Close implements transport.Host.
func (h *Host) Close() error { return nil }

type tail struct {
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}
