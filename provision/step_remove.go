package provision

import (
	"context"
	"fmt"

	"github.com/phonefarm/phonefarm/transport"
)

// removeStep deletes a file phonefarm wrote that the inventory no longer
// asks for.
type removeStep struct {
	path string
	why  string
}

func (s *removeStep) Title() string { return "remove " + s.path }
func (s *removeStep) Why() string   { return s.why }

func (s *removeStep) Apply(ctx context.Context, t *Target) error {
	if _, err := transport.Output(ctx, t.Host, "rm -f "+transport.Quote(s.path)); err != nil {
		return fmt.Errorf("remove %s: %w", s.path, err)
	}
	return nil
}
