package provision

import (
	"context"
	"fmt"

	"github.com/phonefarm/phonefarm/transport"
)

// restartStep enables the k3s service at boot and (re)starts it.
type restartStep struct {
	init    string
	service string
	why     string
}

func (s *restartStep) Title() string { return "restart " + s.service }
func (s *restartStep) Why() string   { return s.why }

func (s *restartStep) Apply(ctx context.Context, t *Target) error {
	cmd := fmt.Sprintf("rc-update add %[1]s default >/dev/null 2>&1; rc-service %[1]s stop >/dev/null 2>&1 || rc-service %[1]s zap; rc-service %[1]s start", s.service)
	if s.init == "systemd" {
		cmd = fmt.Sprintf("systemctl daemon-reload && systemctl enable %[1]s && systemctl restart %[1]s", s.service)
	}
	if _, err := transport.Output(ctx, t.Host, cmd); err != nil {
		return fmt.Errorf("start %s: %w", s.service, err)
	}
	return nil
}
