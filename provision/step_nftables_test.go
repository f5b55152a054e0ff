package provision

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/phonefarm/phonefarm/transport/transporttest"
)

// A fragment nft rejects never stays where the next boot would load it:
// the phone's previous fragment comes back, or none when it had none. A
// real nft cannot be made to reject phonefarm's own fragment on demand,
// so the in-memory phone plays it.
func TestNftStepRollsBack(t *testing.T) {
	rejected := transporttest.Reply{Stderr: "/etc/nftables.d/70_phonefarm-k3s.nft:3:1-4: Error: syntax error\n", Status: 1}
	tests := []struct {
		name     string
		previous []byte // nil: no fragment before
	}{
		{name: "a previous fragment is put back", previous: []byte("# the fragment of an earlier apply\n")},
		{name: "no previous fragment: the new one is removed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := transporttest.New("fajita")
			if tt.previous != nil {
				h.SetFile(NftFragmentPath, 0o644, tt.previous)
			}
			h.On(`^nft -c -f /etc/nftables.nft$`, rejected)
			h.On(`^rm -f `+NftFragmentPath+`$`, transporttest.Reply{Do: func(h *transporttest.Host) { h.RemoveFile(NftFragmentPath) }})
			s := &nftStep{content: []byte("table inet filter { broken"), init: openRC{}}
			err := s.Apply(context.Background(), &Target{Phone: "fajita", Host: h})
			if err == nil || !strings.Contains(err.Error(), "previous state restored") || !strings.Contains(err.Error(), "syntax error") {
				t.Fatalf("got %v, want nft's rejection and the restore said", err)
			}
			got, ok := h.File(NftFragmentPath)
			switch {
			case tt.previous == nil && ok:
				t.Errorf("the rejected fragment stayed: %q", got)
			case tt.previous != nil && string(got) != string(tt.previous):
				t.Errorf("fragment after the rollback: got %q, want the previous %q", got, tt.previous)
			}
			for _, c := range h.Commands() {
				if strings.Contains(c, "reload") {
					t.Errorf("nftables reloaded after the check failed: %q", c)
				}
			}
		})
	}
}

// A phone that drops off while the fragment is written keeps what it had.
func TestNftStepWriteFails(t *testing.T) {
	h := transporttest.New("fajita")
	h.SetFile(NftFragmentPath, 0o644, []byte("old\n"))
	h.FailWrites(func(string) error { return errors.New("connection lost") })
	s := &nftStep{content: []byte("new\n"), init: openRC{}}
	if err := s.Apply(context.Background(), &Target{Phone: "fajita", Host: h}); err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Fatalf("got %v, want the write's failure", err)
	}
	if got, _ := h.File(NftFragmentPath); string(got) != "old\n" {
		t.Errorf("fragment: got %q, want the old one", got)
	}
	if len(h.Commands()) != 0 {
		t.Errorf("commands after the failed write: %q, want none", h.Commands())
	}
}
