package flash_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/phonefarm/phonefarm/flash"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testenv"
	"github.com/phonefarm/phonefarm/transport"
	sshtr "github.com/phonefarm/phonefarm/transport/ssh"
)

// TestPostFlashRealSSH runs the post-flash step against a real sshd under
// OpenRC in a postmarketOS-like test-bed host, over phonefarm's SSH
// transport. The install login is the test bed's key (the transport has no
// password login yet); the user's key is a new one.
func TestPostFlashRealSSH(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mmdebstrap")
	ctx := context.Background()
	tb, err := testbed.Up(ctx, testbed.Options{Hosts: []testbed.HostSpec{{Name: "fresh", PostmarketOS: true}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Down(context.WithoutCancel(ctx)) })
	h := tb.Hosts[0]

	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "me@laptop")
	if err != nil {
		t.Fatal(err)
	}
	identity := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(identity, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " me@laptop"
	knownHosts := filepath.Join(dir, "known_hosts")

	dialer := &sshtr.Dialer{}
	dial := func(ctx context.Context, l flash.Login) (transport.Host, error) {
		id := l.Identity
		if id == "" {
			id = tb.KeyFile
		}
		return dialer.Dial(ctx, sshtr.Config{Name: l.Name, Host: l.Host, Port: l.Port, User: l.User, IdentityFile: id,
			KnownHosts: knownHosts, HostKeyPolicy: sshtr.AcceptNew, DialTimeout: 5 * time.Second})
	}
	// passwordOffered reports whether the running sshd offers password
	// authentication (the client only attempts methods the server lists).
	// want is what the caller expects: sshd re-executes on reload, and
	// until the new one listens the old one answers with its old methods,
	// so it is asked again until it says want or 10 s pass.
	passwordOffered := func(want bool) bool {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			c, err := ssh.Dial("tcp", h.Addr+":22", &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.Password("wrong")},
				HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second})
			if err == nil {
				c.Close()
				t.Fatal("password login with a wrong password succeeded")
			}
			offered := strings.Contains(err.Error(), "unable to authenticate") && strings.Contains(err.Error(), "password")
			if strings.Contains(err.Error(), "unable to authenticate") && offered == want || time.Now().After(deadline) {
				return offered
			}
		}
	}
	// A fresh install accepts passwords: turn them on in the test bed's
	// own drop-in, which sorts after phonefarm's.
	if out, err := tb.Exec(ctx, h, "sed -i 's/^PasswordAuthentication no/PasswordAuthentication yes/' /etc/ssh/sshd_config.d/phonefarm-testbed.conf && rc-service sshd reload"); err != nil {
		t.Fatalf("enable password login: %v: %s", err, out)
	}
	if !passwordOffered(true) {
		t.Fatal("sshd does not offer password login after enabling it; the check below would prove nothing")
	}

	var out bytes.Buffer
	pf := &flash.PostFlash{
		Phone: "fresh", Device: "oneplus-enchilada",
		Login:         flash.Login{Host: h.Addr, User: "root"},
		AuthorizedKey: authorized, Identity: identity, Dial: dial, Out: &out, Wait: 30 * time.Second,
	}
	res, err := pf.Run(ctx)
	if err != nil {
		t.Fatalf("post-flash: %v\n%s", err, out.String())
	}
	wantKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.HostKey)))
	if !strings.Contains(strings.Join(res.HostKeys, "\n"), wantKey) {
		t.Errorf("host keys: got %q, want %q among them", res.HostKeys, wantKey)
	}
	kh, err := os.ReadFile(knownHosts)
	if err != nil || !strings.Contains(string(kh), wantKey) {
		t.Errorf("known_hosts: got %q (%v), want the host key recorded", kh, err)
	}
	got, err := tb.Exec(ctx, h, "sshd -T | grep -i '^passwordauthentication'; grep -c 'me@laptop' /root/.ssh/authorized_keys")
	if err != nil {
		t.Fatal(err)
	}
	if want := "passwordauthentication no\n1\n"; string(got) != want {
		t.Errorf("sshd and authorized_keys on the phone: got %q, want %q", got, want)
	}
	if passwordOffered(false) {
		t.Error("running sshd offers password login after the post-flash step, want key logins only")
	}
	if !strings.Contains(res.Snippet, "host: "+h.Addr) {
		t.Errorf("snippet: got %q, want the phone's address", res.Snippet)
	}
}
