package flash_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/phonefarm/phonefarm/flash"
	"github.com/phonefarm/phonefarm/transport"
)

// shHost is a transport.Host running commands with the local /bin/sh in a
// private HOME; the sshd-specific commands (host keys, reload) are answered
// as a phone would, and files land in a map. No SSH server with password
// login is available to phonefarm's transport yet, so this stands in.
type shHost struct {
	home   string
	files  map[string]string
	cmds   []string
	closed bool
}

func (h *shHost) Name() string { return "phone" }
func (h *shHost) Run(ctx context.Context, c transport.Command) error {
	h.cmds = append(h.cmds, c.Cmd)
	switch {
	case strings.HasPrefix(c.Cmd, "cat /etc/ssh/ssh_host_"):
		fmt.Fprint(c.Stdout, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFAKE root@phone\necdsa-sha2-nistp256 AAAAE2VjZHNhFAKE root@phone\n")
		return nil
	case strings.Contains(c.Cmd, "rc-service sshd reload"):
		return nil
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", c.Cmd)
	cmd.Env = []string{"HOME=" + h.home, "PATH=/usr/bin:/bin"}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
	if err := cmd.Run(); err != nil {
		return &transport.ExitError{Host: "phone", Cmd: c.Cmd, Status: cmd.ProcessState.ExitCode()}
	}
	return nil
}
func (h *shHost) WriteFile(ctx context.Context, p string, mode fs.FileMode, r io.Reader) error {
	b, err := io.ReadAll(r)
	h.files[p] = string(b)
	return err
}
func (h *shHost) ReadFile(ctx context.Context, p string) ([]byte, error) { return nil, fs.ErrNotExist }
func (h *shHost) Sha256(ctx context.Context, p string) (string, error)   { return "", fs.ErrNotExist }
func (h *shHost) Describe() transport.Description                        { return transport.Description{Transport: "local"} }
func (h *shHost) Close() error                                           { h.closed = true; return nil }

func TestPostFlash(t *testing.T) {
	host := &shHost{home: t.TempDir(), files: map[string]string{}}
	var logins []flash.Login
	attempts := 0
	dial := func(ctx context.Context, l flash.Login) (transport.Host, error) {
		attempts++
		if attempts < 3 { // the phone is still booting
			return nil, fmt.Errorf("connect: %w", transport.ErrUnreachable)
		}
		logins = append(logins, l)
		return host, nil
	}
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUSER me@laptop"
	var out bytes.Buffer
	pf := &flash.PostFlash{
		Phone: "op6", Device: "oneplus-enchilada",
		Login:         flash.Login{User: "user", Password: []byte("147147")},
		AuthorizedKey: key, Identity: "/home/me/.ssh/id_ed25519", Become: "doas", Dial: dial, Out: &out,
		Sleep: func(ctx context.Context, d time.Duration) error { return nil },
	}
	for run := 0; run < 2; run++ { // twice: the key is installed once
		res, err := pf.Run(context.Background())
		if err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, out.String())
		}
		if diff := cmp.Diff([]string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFAKE", "ecdsa-sha2-nistp256 AAAAE2VjZHNhFAKE"}, res.HostKeys); diff != "" {
			t.Errorf("host keys (-want +got):\n%s", diff)
		}
		want := "  - name: op6\n    device: oneplus-enchilada\n    os: postmarketos\n    ssh:\n      host: 172.16.42.1\n      user: user\n"
		if diff := cmp.Diff(want, res.Snippet); diff != "" {
			t.Errorf("snippet (-want +got):\n%s", diff)
		}
	}
	ak, err := os.ReadFile(filepath.Join(host.home, ".ssh", "authorized_keys"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(ak), key+"\n"; got != want {
		t.Errorf("authorized_keys: got %q, want %q", got, want)
	}
	if got := host.files["/etc/ssh/sshd_config.d/00-phonefarm.conf"]; !strings.Contains(got, "PasswordAuthentication no") {
		t.Errorf("sshd drop-in: got %q, want PasswordAuthentication no", got)
	}
	if len(logins) < 2 || logins[0].Password == nil || logins[0].Become != "" ||
		logins[1].Password != nil || logins[1].Identity != "/home/me/.ssh/id_ed25519" || logins[1].Become != "doas" {
		t.Errorf("logins: got %+v, want a password login, then a key login that becomes root with doas", logins)
	}
	if logins[0].Host != "172.16.42.1" || logins[0].Port != 22 {
		t.Errorf("login address: got %s:%d, want 172.16.42.1:22", logins[0].Host, logins[0].Port)
	}
	if strings.Contains(out.String(), "147147") {
		t.Error("output shows the install password")
	}
}
