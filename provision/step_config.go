package provision

import (
	"bytes"
	"context"
	"encoding/json"
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
}

func (s *tailnetConfigStep) Title() string { return "write k3s config " + ConfigPath }
func (s *tailnetConfigStep) Why() string {
	return "the node's tailnet address is known once it has joined the tailnet"
}
func (*tailnetConfigStep) joinsCluster() {}

func (s *tailnetConfigStep) Apply(ctx context.Context, t *Target) error {
	ip, dns, err := tailnetSelf(ctx, t.Host)
	if err != nil {
		return err
	}
	url := ""
	if s.role != firstServer {
		if url, err = t.Env.ServerURL(ctx); err != nil {
			return err
		}
	}
	cfg := renderConfig(s.farm, s.phone, s.role, ip, "tailscale0", url, s.tokenFile, dns)
	return t.Host.WriteFile(ctx, ConfigPath, 0o600, bytes.NewReader(cfg))
}

// tailnetSelf reads a phone's tailnet IPv4 address and MagicDNS name.
func tailnetSelf(ctx context.Context, h transport.Host) (ip, dnsName string, err error) {
	out, err := transport.Output(ctx, h, "tailscale status --json")
	if err != nil {
		return "", "", fmt.Errorf("read the tailnet address: %w", err)
	}
	var st struct {
		Self *struct {
			DNSName      string
			TailscaleIPs []string
		}
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Self == nil {
		return "", "", fmt.Errorf("read the tailnet address of %s: unexpected tailscale status output", h.Name())
	}
	ts := TailscaleState{IPs: st.Self.TailscaleIPs}
	if ts.IPv4() == "" {
		return "", "", fmt.Errorf("%s has no tailnet IPv4 address yet", h.Name())
	}
	return ts.IPv4(), st.Self.DNSName, nil
}
