package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
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

// bootstrapTokenRe is a kubeadm bootstrap token, which k3s takes as a
// join token.
var bootstrapTokenRe = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)

// CheckToken reports whether k3s would accept tok (without its trailing
// newline) as its join token, as k3s parses it: a bare password, a
// bootstrap token, or K10<CA hash>::<credentials>, where the hash is 64
// hex digits or empty and the credentials a bootstrap token or
// user:password. A token k3s refuses would leave the server down and
// every phone waiting for it. The error never holds the token.
func CheckToken(tok string) error {
	if tok == "" {
		return errors.New("the join token is empty")
	}
	rest, secure := strings.CutPrefix(tok, "K10")
	if !secure {
		return nil
	}
	const valid = "k3s's secure token format is K10<CA hash>::<user>:<password> (or ::<bootstrap token>); use the server's whole token or a plain password that does not start with K10"
	creds := rest
	if hash, c, ok := strings.Cut(rest, "::"); ok {
		if len(hash) != 0 && (len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "") {
			return fmt.Errorf("the join token starts with K10 but its CA hash is not 64 hex digits: %s", valid)
		}
		creds = c
	}
	if bootstrapTokenRe.MatchString(creds) {
		return nil
	}
	if _, pass, ok := strings.Cut(creds, ":"); !ok || pass == "" {
		return fmt.Errorf("the join token starts with K10 but has no user:password after it, so k3s would refuse it: %s", valid)
	}
	return nil
}
