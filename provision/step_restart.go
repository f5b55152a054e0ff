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
	init    string
	service string
	why     string
}

func (s *restartStep) Title() string { return "restart " + s.service }
func (s *restartStep) Why() string   { return s.why }

func (s *restartStep) Apply(ctx context.Context, t *Target) error {
	cmd := serviceCmd(s.init, s.service, "restart")
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

// serviceCmd is the shell command for action on an init service:
// "restart" enables it at boot and (re)starts it, "stop" and "start" do
// only that. OpenRC services that died uncleanly are zapped to stop them.
func serviceCmd(init, name, action string) string {
	if init == "systemd" {
		if action == "restart" {
			return fmt.Sprintf("systemctl daemon-reload && systemctl enable %[1]s && systemctl restart %[1]s", name)
		}
		return "systemctl " + action + " " + name
	}
	switch action {
	case "restart":
		return fmt.Sprintf("rc-update add %[1]s default >/dev/null 2>&1; rc-service %[1]s stop >/dev/null 2>&1 || rc-service %[1]s zap; rc-service %[1]s start", name)
	case "stop":
		return fmt.Sprintf("rc-service %[1]s stop >/dev/null 2>&1 || rc-service %[1]s zap >/dev/null 2>&1", name)
	}
	return fmt.Sprintf("rc-service %s %s >/dev/null", name, action)
}
