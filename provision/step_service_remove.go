package provision

import (
	"context"
	"fmt"

	"github.com/phonefarm/phonefarm/transport"
)

// serviceRemoveStep stops, disables and removes a k3s service phonefarm
// installed for a role the phone no longer has (k3s-agent on a phone
// that became a server, or k3s on one that became an agent), so that the
// two never run side by side.
type serviceRemoveStep struct {
	init    initSystem
	service string
	why     string
}

func (s *serviceRemoveStep) Title() string { return "remove service " + s.service }
func (s *serviceRemoveStep) Why() string   { return s.why }

func (s *serviceRemoveStep) Changes() []Change {
	return []Change{{Resource: "service " + s.service, Old: "installed"}}
}

func (s *serviceRemoveStep) Apply(ctx context.Context, t *Target) error {
	// Stopping a service that is not running is no failure here.
	cmd := "{ " + s.init.Command(s.service, "stop") + "; } 2>/dev/null; " + s.init.Command(s.service, "disable") + "; rm -f " + transport.Quote(s.init.ServicePath(s.service))
	if _, err := transport.Output(ctx, t.Host, cmd); err != nil {
		return fmt.Errorf("remove service %s: %w", s.service, err)
	}
	return nil
}
