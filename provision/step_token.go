package provision

import (
	"bytes"
	"context"
	"fmt"
)

// tokenStep writes the cluster's join token where k3s's token-file points.
// The token itself is fetched at apply time and never appears in the plan.
type tokenStep struct{ why string }

func (s *tokenStep) Title() string { return "write join token " + TokenPath }
func (s *tokenStep) Why() string   { return s.why }

func (s *tokenStep) Apply(ctx context.Context, t *Target) error {
	tok, err := t.Env.Token(ctx)
	if err != nil {
		return fmt.Errorf("get join token: %w", err)
	}
	return t.Host.WriteFile(ctx, TokenPath, 0o600, bytes.NewReader(tok))
}
