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

//go:embed reset_tailnet.sh
var resetTailnetScript string

// ResetTailnet logs a phone out of its tailnet, stops tailscaled and
// removes the tailscale phonefarm installed; a tailscale package from the
// phone's package manager stays, and kept names it. Running it twice is
// harmless.
func ResetTailnet(ctx context.Context, h transport.Host) (kept string, err error) {
	out, err := transport.RunScript(ctx, h, "", resetTailnetScript)
	if err != nil {
		return "", fmt.Errorf("leave the tailnet on %s: %w", h.Name(), err)
	}
	if !strings.Contains(out, "tailnet reset") {
		return "", fmt.Errorf("leave the tailnet on %s: the script stopped early", h.Name())
	}
	for _, l := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(l, "package kept "); ok {
			kept = p
		}
	}
	return kept, nil
}
