package provision

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phonefarm/phonefarm/transport/transporttest"
)

// restorePhone is an in-memory phone on another tailnet whose tailscale up
// with phonefarm's key fails, and whose restored tailscaled comes back
// only after startsNeeded starts (0: never). A real tailscaled cannot be
// made to lose its first control connection on demand; the test bed shows
// it under load only.
type restorePhone struct {
	*transporttest.Host
	mu       sync.Mutex
	phase    string // "before", "up", "restored"
	starts   int    // tailscaled starts after the restore
	needed   int
	restarts int
	notes    []string
}

func newRestorePhone(startsNeeded int) *restorePhone {
	p := &restorePhone{Host: transporttest.New("spare"), phase: "before", needed: startsNeeded}
	p.SetFile(tailscaledStatePath, 0o600, []byte(`{"old":"state"}`))
	status := func(state, host string) string {
		return fmt.Sprintf(`{"BackendState": %q, "Self": {"HostName": %q, "TailscaleIPs": ["100.64.0.5"]}}`, state, host)
	}
	p.OnFunc(`tailscale status --json; echo; echo phonefarm-prefs`, func(string) transporttest.Reply {
		p.mu.Lock()
		defer p.mu.Unlock()
		st, url := status("Running", "old-spare"), "http://oldnet.example:8081"
		switch {
		case p.phase == "up":
			st, url = status("NeedsLogin", "spare"), "http://10.0.0.1:8081"
		case p.phase == "restored" && (p.needed == 0 || p.starts < p.needed):
			st = `{"BackendState": "NoState", "Self": {"HostName": "spare"}}`
		}
		return transporttest.Reply{Stdout: st + "\nphonefarm-prefs\n" + fmt.Sprintf(`{"ControlURL": %q}`, url)}
	})
	p.OnFunc(`tailscale up --reset`, func(string) transporttest.Reply {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.phase = "up"
		return transporttest.Reply{Stderr: "backend error: invalid pre auth key\n", Status: 1}
	})
	p.OnFunc(`mv -f `+tsBackup, func(string) transporttest.Reply {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.phase, p.starts = "restored", 1
		return transporttest.Reply{Stdout: "phonefarm-restored\n"}
	})
	p.OnFunc(`^`+regexp.QuoteMeta(openRC{}.Command("tailscale", "restart"))+`$`, func(string) transporttest.Reply {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.starts++
		p.restarts++
		return transporttest.Reply{}
	})
	return p
}

func (p *restorePhone) apply(t *testing.T) error {
	t.Helper()
	wait, every := tsRestoreWait, tsPollEvery
	tsRestoreWait, tsPollEvery = 50*time.Millisecond, time.Millisecond
	t.Cleanup(func() { tsRestoreWait, tsPollEvery = wait, every })
	s := &tsUpStep{phone: "spare", loginServer: "http://10.0.0.1:8081", init: openRC{}, forceReauth: true}
	env := &Env{AuthKey: func(context.Context, string) ([]byte, error) { return []byte("tskey-auth-wrong"), nil }}
	target := &Target{Phone: "spare", Host: p.Host, Env: env, Note: func(msg string) { p.notes = append(p.notes, msg) }}
	return s.Apply(context.Background(), target)
}

// A restored tailscaled that does not reconnect is started once more, and
// the phone ends where it was.
func TestTailscaleRestoreStartsTailscaledAgain(t *testing.T) {
	p := newRestorePhone(2)
	err := p.apply(t)
	if err == nil || !strings.Contains(err.Error(), "tailscale up on spare (its previous tailnet state is restored)") || !strings.Contains(err.Error(), "invalid pre auth key") {
		t.Fatalf("got %v, want tailscale's refusal and the restore said", err)
	}
	if p.restarts != 1 {
		t.Errorf("tailscaled started again %d times, want 1", p.restarts)
	}
	if len(p.notes) != 1 || !strings.Contains(p.notes[0], "tailscale on spare: restored, but NoState as spare") || !strings.Contains(p.notes[0], "not Running as old-spare at http://oldnet.example:8081; starting tailscaled again") {
		t.Errorf("notes: %q, want one saying what tailscale was and that it is started again", p.notes)
	}
}

// A tailscaled that comes straight back is not started again.
func TestTailscaleRestoreWaitsOnlyAsNeeded(t *testing.T) {
	p := newRestorePhone(1)
	if err := p.apply(t); err == nil || !strings.Contains(err.Error(), "(its previous tailnet state is restored)") {
		t.Fatalf("got %v, want the restore said", err)
	}
	if p.restarts != 0 || len(p.notes) != 0 {
		t.Errorf("tailscaled started again %d times, notes %q; want none", p.restarts, p.notes)
	}
}

// One that never comes back is reported as such, not as restored.
func TestTailscaleRestoreSaysWhenTailscaleStaysDown(t *testing.T) {
	p := newRestorePhone(0)
	err := p.apply(t)
	if err == nil || strings.Contains(err.Error(), "(its previous tailnet state is restored)") ||
		!strings.Contains(err.Error(), "restoring its previous tailnet state failed too: its state file is back, but tailscale is NoState as spare at http://oldnet.example:8081, not Running as old-spare at http://oldnet.example:8081, after starting tailscaled twice") {
		t.Fatalf("got %v, want the restore's failure said", err)
	}
	if p.restarts != 1 {
		t.Errorf("tailscaled started again %d times, want 1", p.restarts)
	}
}
