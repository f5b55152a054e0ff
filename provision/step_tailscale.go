package provision

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/phonefarm/phonefarm/transport"
)

// Where phonefarm puts an uploaded tailscale, and where a package puts it.
const (
	TailscalePath       = "/usr/local/bin/tailscale"
	TailscaledPath      = "/usr/local/sbin/tailscaled"
	packageTailscaled   = "/usr/sbin/tailscaled"
	tailscaledStatePath = "/var/lib/tailscale/tailscaled.state"
)

// TailscaleArtifact is a static tailscale build for one architecture.
type TailscaleArtifact struct {
	Tailscale, Tailscaled Artifact
}

// tsBinaryStep uploads the static tailscale and tailscaled builds.
type tsBinaryStep struct {
	art TailscaleArtifact
	why string
}

func (s *tsBinaryStep) Title() string {
	return fmt.Sprintf("upload tailscale and tailscaled (%s)", s.art.Tailscaled.Arch)
}
func (s *tsBinaryStep) Why() string { return s.why }

func (s *tsBinaryStep) Apply(ctx context.Context, t *Target) error {
	for _, f := range []struct {
		a    Artifact
		dest string
	}{{s.art.Tailscaled, TailscaledPath}, {s.art.Tailscale, TailscalePath}} {
		r, err := os.Open(f.a.Path)
		if err != nil {
			return err
		}
		var src io.Reader = r
		if t.Progress != nil {
			src = &countingReader{r: r, total: f.a.Size, report: t.Progress}
		}
		err = t.Host.WriteFile(ctx, f.dest, 0o755, src)
		r.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// tsPackageStep installs tailscale with the phone's package manager.
type tsPackageStep struct {
	cmd string
}

func (s *tsPackageStep) Title() string { return "install tailscale: " + s.cmd }
func (s *tsPackageStep) Why() string   { return "tailscale is not installed" }

func (s *tsPackageStep) Apply(ctx context.Context, t *Target) error {
	if _, err := transport.Output(ctx, t.Host, s.cmd); err != nil {
		return fmt.Errorf("install tailscale (or set tailscale.binaries in the inventory for phones without a package source): %w", err)
	}
	return nil
}

// packageInstall is the command that installs tailscale on an OS, or "".
func packageInstall(osID string) string {
	switch osID {
	case "postmarketos", "alpine":
		return "apk add tailscale"
	case "debian", "ubuntu", "raspbian":
		return "DEBIAN_FRONTEND=noninteractive apt-get install -y tailscale"
	case "fedora":
		return "dnf install -y tailscale"
	case "arch", "archarm":
		return "pacman -S --noconfirm tailscale"
	}
	return ""
}

// tsStartStep enables tailscaled at boot and (re)starts it.
type tsStartStep struct {
	init string
	why  string
}

func (s *tsStartStep) Title() string { return "restart tailscaled" }
func (s *tsStartStep) Why() string   { return s.why }

func (s *tsStartStep) Apply(ctx context.Context, t *Target) error {
	cmd := "rc-update add tailscaled default >/dev/null 2>&1; rc-service tailscaled stop >/dev/null 2>&1 || rc-service tailscaled zap; rc-service tailscaled start"
	if s.init == "systemd" {
		cmd = "systemctl daemon-reload && systemctl enable tailscaled && systemctl restart tailscaled"
	}
	// Wait for the local API, which tailscale up needs; status --json
	// answers once tailscaled listens, logged in or not.
	cmd += "; for i in $(seq 1 100); do timeout 2 tailscale status --json >/dev/null 2>&1 && exit 0; sleep 0.2; done; tailscale status --json >/dev/null"
	if _, err := transport.Output(ctx, t.Host, cmd); err != nil {
		return fmt.Errorf("start tailscaled: %w", err)
	}
	return nil
}

// tsUpStep logs the phone in to the tailnet under its inventory name with
// a key minted for it (or the inventory's key). If that fails, tailscaled's
// previous state is put back, so the phone stays as it was.
type tsUpStep struct {
	phone        string
	loginServer  string
	acceptRoutes bool
	tags         []string
	init         string
	why          string
}

func (s *tsUpStep) Title() string {
	server := s.loginServer
	if server == "" {
		server = "Tailscale"
	}
	return "join the tailnet at " + server + " as " + s.phone
}
func (s *tsUpStep) Why() string { return s.why }

func (s *tsUpStep) Apply(ctx context.Context, t *Target) error {
	key, err := t.Env.AuthKey(ctx, s.phone)
	if err != nil {
		return err
	}
	keyFile := "/run/phonefarm-tailscale-authkey"
	if err := t.Host.WriteFile(ctx, keyFile, 0o600, bytes.NewReader(append(key, '\n'))); err != nil {
		return err
	}
	args := []string{"tailscale", "up", "--reset", "--timeout=60s", "--hostname=" + s.phone, "--auth-key=file:" + keyFile,
		fmt.Sprintf("--accept-routes=%t", s.acceptRoutes)}
	if s.loginServer != "" {
		args = append(args, "--login-server="+s.loginServer)
	}
	if len(s.tags) > 0 {
		args = append(args, "--advertise-tags="+strings.Join(s.tags, ","))
	}
	restart := "rc-service tailscaled restart"
	if s.init == "systemd" {
		restart = "systemctl restart tailscaled"
	}
	for i, a := range args {
		args[i] = transport.Quote(a)
	}
	script := fmt.Sprintf(`st=%[1]s
[ -f "$st" ] && cp -p "$st" "$st.phonefarm-before"
# tailscale up can exit 0 although the control server refused the key:
# logged in means having a tailnet address.
if %[2]s; then
	for i in $(seq 1 30); do
		if tailscale ip -4 >/dev/null 2>&1; then rm -f %[3]s "$st.phonefarm-before"; exit 0; fi
		sleep 0.5
	done
	echo "tailscale up returned, but the control server did not log the phone in (is the auth key valid and unexpired?)" >&2
	rc=1
else
	rc=$?
fi
rm -f %[3]s
# Put the phone back as it was: the old state, tailscaled restarted on it.
if [ -f "$st.phonefarm-before" ]; then
	mv -f "$st.phonefarm-before" "$st" && %[4]s >/dev/null 2>&1
fi
exit $rc`, tailscaledStatePath, strings.Join(args, " "), keyFile, restart)
	if _, err := transport.Output(ctx, t.Host, script); err != nil {
		return fmt.Errorf("tailscale up on %s (its previous tailnet state is restored): %w", s.phone, err)
	}
	return nil
}

// renderTailscaledOpenRC is the OpenRC service for tailscaled.
func renderTailscaledOpenRC(bin string, env map[string]string) []byte {
	var exports strings.Builder
	for _, k := range sortedKeys(env) {
		fmt.Fprintf(&exports, "export %s=%s\n", k, transport.Quote(env[k]))
	}
	return []byte(fmt.Sprintf(`#!/sbin/openrc-run
%sdescription="Tailscale node agent"
supervisor=supervise-daemon
command=%s
command_args="--state=%s --socket=/run/tailscale/tailscaled.sock --port=41641 --no-logs-no-support"
output_log=/var/log/tailscaled.log
error_log=/var/log/tailscaled.log
pidfile=/run/tailscaled.pid
respawn_delay=2
respawn_max=0
%s
depend() {
	use net
	after firewall
}

start_pre() {
	mkdir -p /var/lib/tailscale /run/tailscale
	modprobe tun 2>/dev/null || true
}
`, managedHeader, bin, tailscaledStatePath, exports.String()))
}

// renderTailscaledSystemd is the systemd unit for tailscaled.
func renderTailscaledSystemd(bin string, env map[string]string) []byte {
	var envs strings.Builder
	for _, k := range sortedKeys(env) {
		fmt.Fprintf(&envs, "Environment=\"%s=%s\"\n", k, strings.ReplaceAll(env[k], `"`, `\"`))
	}
	return []byte(fmt.Sprintf(`%s[Unit]
Description=Tailscale node agent
Wants=network-pre.target
After=network-pre.target

[Service]
%sExecStart=%s --state=%s --socket=/run/tailscale/tailscaled.sock --port=41641 --no-logs-no-support
RuntimeDirectory=tailscale
StateDirectory=tailscale
Restart=on-failure

[Install]
WantedBy=multi-user.target
`, managedHeader, envs.String(), bin, tailscaledStatePath))
}
