package provision

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/phonefarm/phonefarm/inventory"
)

// vpnAuthStep writes k3s's tailscale credentials (vpn-auth-file) for
// tailscale.k3sMode k3s-integrated: k3s runs tailscale up with them each
// time it starts, then registers the node and serves the API on the
// tailnet address. The key is minted for the phone (or is the
// inventory's) and only ever written to the phone, readable by root.
// Once the phone is logged in, tailscale up keeps its node key and no
// longer needs the key, so an expired one does no harm.
type vpnAuthStep struct {
	phone       string
	loginServer string
	tags        []string
	why         string
}

func (s *vpnAuthStep) Title() string {
	return "write k3s's tailscale credentials " + VPNAuthPath
}
func (s *vpnAuthStep) Why() string { return s.why }

func (s *vpnAuthStep) Apply(ctx context.Context, t *Target) error {
	key, err := t.Env.AuthKey(ctx, s.phone)
	if err != nil {
		return err
	}
	if bytes.ContainsAny(key, ",= \n") {
		return fmt.Errorf("the tailscale key for %s contains a comma, equals sign or space, which k3s's vpn-auth format cannot carry", s.phone)
	}
	return t.Host.WriteFile(ctx, VPNAuthPath, 0o600, bytes.NewReader(renderVPNAuth(key, s.phone, s.loginServer, s.tags)))
}

// renderVPNAuth is k3s's vpn-auth value: comma-separated settings, then
// extra tailscale up flags separated by spaces.
func renderVPNAuth(key []byte, phone, loginServer string, tags []string) []byte {
	var b bytes.Buffer
	b.WriteString("name=tailscale,joinKey=")
	b.Write(key)
	if loginServer != "" {
		b.WriteString(",controlServerURL=" + loginServer)
	}
	b.WriteString(",extraArgs=--hostname=" + phone)
	if len(tags) > 0 {
		b.WriteString(" --advertise-tags=" + strings.Join(tags, ","))
	}
	b.WriteByte('\n')
	return b.Bytes()
}

func vpnAuthWhy(farm *inventory.Farm, pi PhoneInput) string {
	t := pi.State.Tailscale
	switch {
	case pi.State.Files[VPNAuthPath].SHA256 == "":
		return "not written"
	case t.BackendState == "Running":
		return joinWhy(t, pi.Phone.Name, controlURL(farm.Tailscale.LoginServer))
	}
	return "written, but the phone is not on the tailnet (tailscale is " + or(t.BackendState, "not answering") + ")"
}
