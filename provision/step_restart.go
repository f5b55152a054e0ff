package provision

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/phonefarm/phonefarm/transport"
)

// restartStep enables the k3s service at boot and (re)starts it.
type restartStep struct {
	init    initSystem
	service string
	why     string
}

func (s *restartStep) Title() string { return "restart " + s.service }
func (s *restartStep) Why() string   { return s.why }

func (s *restartStep) Apply(ctx context.Context, t *Target) error {
	cmd := s.init.Command(s.service, "restart")
	// The phone's clock, read just before the restart, is what its kubelet
	// stamps heartbeats with: Ready counts only after it.
	out, err := transport.Output(ctx, t.Host, "date +%s; "+cmd)
	if err != nil {
		return fmt.Errorf("start %s: %w", s.service, err)
	}
	first, _, _ := strings.Cut(out, "\n")
	if sec, err := strconv.ParseInt(strings.TrimSpace(first), 10, 64); err == nil {
		t.Restarted = time.Unix(sec, 0)
	}
	return nil
}
