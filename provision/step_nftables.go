package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/phonefarm/phonefarm/transport"
)

// nftStep installs phonefarm's nftables fragment, reloads the firewall and
// checks the loaded ruleset accepts k3s's traffic before the final drop.
type nftStep struct {
	content []byte
	init    initSystem
	why     string
}

func (s *nftStep) Title() string { return "open the firewall for k3s " + NftFragmentPath }
func (s *nftStep) Why() string   { return s.why }

func (s *nftStep) Apply(ctx context.Context, t *Target) error {
	old, err := t.Host.ReadFile(ctx, NftFragmentPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := t.Host.WriteFile(ctx, NftFragmentPath, 0o644, bytes.NewReader(s.content)); err != nil {
		return err
	}
	// Check the whole ruleset before loading it; a fragment nft rejects
	// must not stay where the next boot would load it.
	if _, err := transport.Output(ctx, t.Host, "nft -c -f /etc/nftables.nft"); err != nil {
		restore := context.WithoutCancel(ctx)
		if old != nil {
			_ = t.Host.WriteFile(restore, NftFragmentPath, 0o644, bytes.NewReader(old))
		} else {
			_, _ = transport.Output(restore, t.Host, "rm -f "+NftFragmentPath)
		}
		return fmt.Errorf("nftables rejects the ruleset with phonefarm's fragment (previous state restored): %w", err)
	}
	if _, err := transport.Output(ctx, t.Host, s.init.Command("nftables", "reload")); err != nil {
		return fmt.Errorf("reload nftables: %w", err)
	}
	out, err := transport.Output(ctx, t.Host, "nft -j list chain inet filter input")
	if err != nil {
		return fmt.Errorf("verify nftables: %w", err)
	}
	return verifyInputChain([]byte(out))
}

// verifyInputChain checks that phonefarm's accept rules are loaded and come
// before the chain's first unconditional drop (postmarketOS's final
// logging drop); conditional drops (invalid state, wwan) do not matter.
func verifyInputChain(js []byte) error {
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Comment string                       `json:"comment"`
				Expr    []map[string]json.RawMessage `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return fmt.Errorf("verify nftables: parse nft -j output: %w", err)
	}
	ours, drop, i := -1, -1, 0
	for _, obj := range doc.Nftables {
		r := obj.Rule
		if r == nil {
			continue
		}
		if strings.HasPrefix(r.Comment, "phonefarm: k3s") && ours < 0 {
			ours = i
		}
		conditional, drops := false, false
		for _, e := range r.Expr {
			if _, ok := e["match"]; ok {
				conditional = true
			}
			if _, ok := e["drop"]; ok {
				drops = true
			}
		}
		if drops && !conditional && drop < 0 {
			drop = i
		}
		i++
	}
	switch {
	case ours < 0:
		return fmt.Errorf("verify nftables: phonefarm's rules are not in the loaded input chain")
	case drop >= 0 && drop < ours:
		return fmt.Errorf("verify nftables: the input chain drops everything at rule %d, before phonefarm's accepts at rule %d; a fragment sorting before %s ends the chain", drop, ours, NftFragmentPath)
	}
	return nil
}
