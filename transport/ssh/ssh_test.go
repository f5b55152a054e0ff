package ssh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testenv"
	"github.com/phonefarm/phonefarm/transport"
)

var (
	bedOnce sync.Once
	bed     *testbed.Testbed
	bedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if bed != nil {
		_ = bed.Down(context.Background())
	}
	os.Exit(code)
}

// testBed starts one test bed for the package on first use.
func testBed(t *testing.T) *testbed.Testbed {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mmdebstrap")
	bedOnce.Do(func() {
		bed, bedErr = testbed.Up(context.Background(), testbed.Options{
			Hosts: []testbed.HostSpec{{Name: "phone1", PostmarketOS: true}, {Name: "phone2"}},
		})
	})
	if bedErr != nil {
		t.Fatal(bedErr)
	}
	return bed
}

func config(tb *testbed.Testbed, h *testbed.Host, user, become string) Config {
	return Config{Name: h.Name, Host: h.Addr, User: user, IdentityFile: tb.KeyFile, KnownHosts: tb.KnownHosts,
		Become: become, DialTimeout: 5 * time.Second}
}

func dial(t *testing.T, cfg Config) *Host {
	t.Helper()
	h, err := (&Dialer{}).Dial(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestRun(t *testing.T) {
	tb := testBed(t)
	h := dial(t, config(tb, tb.Hosts[0], "root", ""))
	tests := []struct {
		name, cmd, stdin string
		wantOut, wantErr string
		wantStatus       int
	}{
		{name: "ok", cmd: "echo hello", wantOut: "hello\n"},
		{name: "exit 3", cmd: "echo out; echo oops >&2; exit 3", wantOut: "out\n", wantErr: "oops\n", wantStatus: 3},
		{name: "not found", cmd: "no-such-command-phonefarm", wantStatus: 127},
		{name: "stdin", cmd: "tr a-z A-Z", stdin: "phone farm", wantOut: "PHONE FARM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := h.Run(t.Context(), transport.Command{Cmd: tt.cmd, Stdin: strings.NewReader(tt.stdin), Stdout: &stdout, Stderr: &stderr})
			status := 0
			var ee *transport.ExitError
			if errors.As(err, &ee) {
				status = ee.Status
			} else if err != nil {
				t.Fatal(err)
			}
			if status != tt.wantStatus {
				t.Errorf("exit status: got %d, want %d", status, tt.wantStatus)
			}
			if got := stdout.String(); got != tt.wantOut {
				t.Errorf("stdout: got %q, want %q", got, tt.wantOut)
			}
			if tt.wantErr != "" && stderr.String() != tt.wantErr {
				t.Errorf("stderr: got %q, want %q", stderr.String(), tt.wantErr)
			}
		})
	}
}

func TestRunCancelKillsRemoteCommand(t *testing.T) {
	tb := testBed(t)
	tests := []struct{ user, become, cmd, pattern string }{
		{"root", "", "sleep 41", "^sleep 41"},
		{"user", "sudo", "sleep 42; echo after", "^sleep 42"},
		{"user", "doas", "(sleep 43 &) ; sleep 44", "^sleep 4[34]"},
	}
	for _, tt := range tests {
		t.Run(tt.user+"-"+tt.become, func(t *testing.T) {
			h := dial(t, config(tb, tb.Hosts[0], tt.user, tt.become))
			ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := h.Run(ctx, transport.Command{Cmd: tt.cmd})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want context.DeadlineExceeded", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("Run returned after %s, want promptly after cancellation", d)
			}
			// The remote command and what it started are gone too.
			out, _ := tb.Exec(t.Context(), tb.Hosts[0], "ps -eo args | grep -E '"+tt.pattern+"' || true")
			if len(bytes.TrimSpace(out)) != 0 {
				t.Errorf("remote processes still running after cancellation: %q", out)
			}
			// The connection is still usable.
			if _, err := transport.Output(t.Context(), h, "true"); err != nil {
				t.Errorf("after cancellation: %v", err)
			}
		})
	}
}

func TestFiles(t *testing.T) {
	tb := testBed(t)
	for _, c := range []struct{ user, become string }{{"root", ""}, {"user", "sudo"}, {"user", "doas"}} {
		t.Run(c.user+"-"+c.become, func(t *testing.T) {
			h := dial(t, config(tb, tb.Hosts[1], c.user, c.become))
			dir := "/etc/phonefarm-test-" + c.user + c.become
			p := dir + "/sub/config.yaml"
			for _, content := range []string{"first\n", "second, longer content\n"} {
				if err := h.WriteFile(t.Context(), p, 0o640, strings.NewReader(content)); err != nil {
					t.Fatal(err)
				}
				got, err := h.ReadFile(t.Context(), p)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != content {
					t.Errorf("ReadFile: got %q, want %q", got, content)
				}
				sum, err := h.Sha256(t.Context(), p)
				if err != nil {
					t.Fatal(err)
				}
				want := sha256.Sum256([]byte(content))
				if sum != hex.EncodeToString(want[:]) {
					t.Errorf("Sha256: got %s, want %x", sum, want)
				}
			}
			out, err := tb.Exec(t.Context(), tb.Hosts[1], "stat -c '%a %U' "+p+"; ls -A "+dir+"/sub")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(out), "640 root\nconfig.yaml\n"; got != want {
				t.Errorf("mode, owner and directory listing: got %q, want %q (no temp files left)", got, want)
			}
			_, err = h.ReadFile(t.Context(), dir+"/missing")
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("ReadFile(missing): got %v, want fs.ErrNotExist", err)
			}
			_, err = h.Sha256(t.Context(), dir+"/missing")
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Sha256(missing): got %v, want fs.ErrNotExist", err)
			}
		})
	}
}

func TestLargeWrite(t *testing.T) {
	tb := testBed(t)
	h := dial(t, config(tb, tb.Hosts[0], "root", ""))
	data := make([]byte, 24<<20+12345)
	_, _ = rand.Read(data)
	if err := h.WriteFile(t.Context(), "/root/big.bin", 0o755, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	sum, err := h.Sha256(t.Context(), "/root/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(data); sum != hex.EncodeToString(want[:]) {
		t.Errorf("sha256 after upload: got %s, want %x", sum, want)
	}
}

// cutReader yields n bytes of content, then calls cut (which kills the
// connection) and keeps yielding.
type cutReader struct {
	n    int
	cut  func()
	done bool
}

func (r *cutReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		if !r.done {
			r.done = true
			r.cut()
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range p {
		p[i] = 'x'
	}
	r.n -= len(p)
	return len(p), nil
}

func TestWriteInterruptedKeepsOldFile(t *testing.T) {
	tb := testBed(t)
	host := tb.Hosts[0]
	for _, c := range []struct{ user, become string }{{"root", ""}, {"user", "sudo"}} {
		t.Run(c.user, func(t *testing.T) {
			h := dial(t, config(tb, host, c.user, c.become))
			p := "/etc/phonefarm-interrupted-" + c.user
			if err := h.WriteFile(t.Context(), p, 0o644, strings.NewReader("old content\n")); err != nil {
				t.Fatal(err)
			}
			kill := func() {
				// Kill this connection's sshd processes on the phone, as a
				// phone dropping off the network would end it.
				if _, err := tb.Exec(context.Background(), host, "pkill -9 -f 'sshd: "+c.user+"'"); err != nil {
					t.Logf("kill sshd: %v", err)
				}
			}
			err := h.WriteFile(t.Context(), p, 0o644, &cutReader{n: 4 << 20, cut: kill})
			if err == nil {
				t.Fatal("WriteFile succeeded although the connection was killed")
			}
			t.Logf("interrupted write: %v", err)
			h2 := dial(t, config(tb, host, "root", ""))
			got, err := h2.ReadFile(t.Context(), p)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "old content\n" {
				t.Errorf("after an interrupted write: got %d bytes %.20q, want the old content intact", len(got), got)
			}
			// A later successful write converges and clears leftovers.
			h3 := dial(t, config(tb, host, c.user, c.become))
			if err := h3.WriteFile(t.Context(), p, 0o644, strings.NewReader("new\n")); err != nil {
				t.Fatal(err)
			}
			out, _ := tb.Exec(t.Context(), host, "ls -A /etc | grep phonefarm-interrupted-"+c.user+" ; cat "+p)
			if got, want := string(out), "phonefarm-interrupted-"+c.user+"\nnew\n"; got != want {
				t.Errorf("after the re-run: got %q, want %q", got, want)
			}
		})
	}
}

func TestHostKeyPolicy(t *testing.T) {
	tb := testBed(t)
	host := tb.Hosts[1]
	dir := t.TempDir()
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewPublicKey(otherPub)
	wrong := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrong, []byte(host.Addr+" "+string(ssh.MarshalAuthorizedKey(other))), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("strict refuses unknown and records nothing", func(t *testing.T) {
		kh := filepath.Join(dir, "empty")
		cfg := config(tb, host, "root", "")
		cfg.KnownHosts = kh
		_, err := (&Dialer{}).Dial(t.Context(), cfg)
		if !errors.Is(err, ErrUnknownHostKey) {
			t.Fatalf("got %v, want ErrUnknownHostKey", err)
		}
		if !strings.Contains(err.Error(), ssh.FingerprintSHA256(host.HostKey)) {
			t.Errorf("error %q does not name the presented fingerprint %s", err, ssh.FingerprintSHA256(host.HostKey))
		}
		if _, err := os.Stat(kh); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("strict policy wrote %s: %v", kh, err)
		}
	})
	t.Run("accept-new records the key", func(t *testing.T) {
		kh := filepath.Join(dir, "sub", "known_hosts")
		cfg := config(tb, host, "root", "")
		cfg.KnownHosts, cfg.HostKeyPolicy = kh, AcceptNew
		dial(t, cfg)
		b, err := os.ReadFile(kh)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(host.HostKey)))) {
			t.Errorf("known_hosts %q does not hold the host key", b)
		}
		// The recorded key now satisfies the strict policy.
		cfg.HostKeyPolicy = Strict
		dial(t, cfg)
	})
	for _, policy := range []HostKeyPolicy{Strict, AcceptNew} {
		t.Run("mismatch refused under "+string(policy), func(t *testing.T) {
			cfg := config(tb, host, "root", "")
			cfg.KnownHosts, cfg.HostKeyPolicy = wrong, policy
			_, err := (&Dialer{}).Dial(t.Context(), cfg)
			if !errors.Is(err, ErrHostKeyMismatch) {
				t.Fatalf("got %v, want ErrHostKeyMismatch", err)
			}
			for _, want := range []string{host.Name, ssh.FingerprintSHA256(other), ssh.FingerprintSHA256(host.HostKey)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %s", err, want)
				}
			}
			if b, _ := os.ReadFile(wrong); strings.Count(string(b), "\n") != 1 {
				t.Errorf("known_hosts changed after a mismatch: %q", b)
			}
		})
	}
}

func TestPassphraseKey(t *testing.T) {
	tb := testBed(t)
	host := tb.Hosts[0]
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "test", []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "id_protected")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, _ := ssh.NewSignerFromKey(priv)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if _, err := tb.Exec(t.Context(), host, fmt.Sprintf("echo '%s' >> /root/.ssh/authorized_keys", line)); err != nil {
		t.Fatal(err)
	}
	cfg := config(tb, host, "root", "")
	cfg.IdentityFile = keyFile

	_, err = (&Dialer{}).Dial(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Errorf("without a prompt: got %v, want an error about the passphrase", err)
	}
	asked := 0
	d := &Dialer{Passphrase: func(file string) ([]byte, error) {
		asked++
		return []byte("correct horse"), nil
	}}
	for range 2 {
		h, err := d.Dial(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		h.Close()
	}
	if asked != 1 {
		t.Errorf("passphrase asked %d times for two connections, want 1", asked)
	}
}

func TestUnreachable(t *testing.T) {
	tb := testBed(t)
	cfg := config(tb, tb.Hosts[0], "root", "")
	cfg.Host = tb.Gateway // the bridge address runs no SSH server
	cfg.Port = 2
	_, err := (&Dialer{}).Dial(t.Context(), cfg)
	if !errors.Is(err, transport.ErrUnreachable) {
		t.Errorf("got %v, want transport.ErrUnreachable", err)
	}
	if err != nil && !strings.Contains(err.Error(), tb.Hosts[0].Name) {
		t.Errorf("error %q does not name the phone", err)
	}
}

var _ io.Reader = (*cutReader)(nil)

func TestPasswordLogin(t *testing.T) {
	tb := testBed(t)
	host := tb.Hosts[1]
	// A freshly installed phone: password login on, a user with a password.
	reloadSSHD(t, tb, host, "echo 'user:147147' | chpasswd && printf 'PasswordAuthentication yes\\n' > /etc/ssh/sshd_config.d/00-install.conf")
	t.Cleanup(func() { reloadSSHD(t, tb, host, "rm /etc/ssh/sshd_config.d/00-install.conf") })
	cfg := config(tb, host, "user", "")
	cfg.IdentityFile = filepath.Join(t.TempDir(), "no-key-yet")
	cfg.Password = []byte("147147")
	h := dial(t, cfg)
	if out, err := transport.Output(t.Context(), h, "id -un"); err != nil || strings.TrimSpace(out) != "user" {
		t.Errorf("logged in as %q, %v; want user", out, err)
	}
	cfg.Password = []byte("wrong")
	_, err := (&Dialer{}).Dial(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong password: got %v, want an authentication error that does not repeat the password", err)
	}
}

// reloadSSHD runs setup on host, reloads its sshd and waits until sshd
// listens again (it re-executes itself on reload).
func reloadSSHD(t *testing.T, tb *testbed.Testbed, host *testbed.Host, setup string) {
	t.Helper()
	if _, err := tb.Exec(context.Background(), host, setup+" && rc-service sshd reload"); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(host.Addr, "22"), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if i == 50 {
			t.Fatalf("sshd on %s did not come back after reload: %v", host.Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
