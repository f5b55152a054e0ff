package provision

import (
	"bytes"
	"context"
	"fmt"

	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport"
)

// tailnetConfigStep writes the k3s config of a phone whose tailnet address
// (or whose first server's) is known only once it has joined the tailnet:
// it reads them during apply, after tailscale up.
type tailnetConfigStep struct {
	farm      *inventory.Farm
	phone     *inventory.Phone
	role      nodeRole
	tokenFile bool
	// ip and iface, when set, are the node's own (k3s-integrated keeps
	// the LAN address in the config): only the server's is read.
	ip, iface string
}

func (s *tailnetConfigStep) Title() string { return "write k3s config " + ConfigPath }
func (s *tailnetConfigStep) Why() string {
	if s.ip != "" {
		return "the first server's tailnet address is known once it has joined the tailnet"
	}
	return "the node's tailnet address is known once it has joined the tailnet"
}
func (*tailnetConfigStep) joinsCluster() {}

func (s *tailnetConfigStep) Apply(ctx context.Context, t *Target) error {
	ip, iface, dns := s.ip, s.iface, ""
	if ip == "" {
		var err error
		if ip, dns, err = tailnetSelf(ctx, t.Host); err != nil {
			return err
		}
		iface = "tailscale0"
	}
	url := ""
	if s.role != firstServer {
		var err error
		if url, err = t.Env.ServerURL(ctx); err != nil {
			return err
		}
	}
	cfg := renderConfig(s.farm, s.phone, s.role, ip, iface, url, s.tokenFile, dns)
	return t.Host.WriteFile(ctx, ConfigPath, 0o600, bytes.NewReader(cfg))
}

// tailnetSelf reads a phone's tailnet IPv4 address and MagicDNS name.
func tailnetSelf(ctx context.Context, h transport.Host) (ip, dnsName string, err error) {
	out, err := transport.Output(ctx, h, "tailscale status --json")
	if err != nil {
		return "", "", fmt.Errorf("read the tailnet address: %w", err)
	}
	ts := parseTailscale(out, "")
	switch {
	case ts.BackendState == "":
		return "", "", fmt.Errorf("read the tailnet address of %s: unexpected tailscale status output", h.Name())
	case ts.IPv4() == "":
		return "", "", fmt.Errorf("%s has no tailnet IPv4 address yet", h.Name())
	}
	return ts.IPv4(), ts.DNSName, nil
}
