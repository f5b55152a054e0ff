package provision

import (
	"context"
	_ "embed"
	"fmt"
	"strings"

	"github.com/phonefarm/phonefarm/transport"
)

//go:embed reset.sh
var resetScript string

// Reset stops k3s on a phone and removes it, its data and configuration,
// and phonefarm's firewall fragment. Running it twice is harmless.
func Reset(ctx context.Context, h transport.Host) error {
	out, err := transport.RunScript(ctx, h, "", resetScript)
	if err != nil {
		return fmt.Errorf("reset %s: %w", h.Name(), err)
	}
	if !strings.Contains(out, "reset") {
		return fmt.Errorf("reset %s: the script stopped early", h.Name())
	}
	return nil
}
