package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

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
	init initSystem
	why  string
}

func (s *tsStartStep) Title() string { return "restart tailscaled" }
func (s *tsStartStep) Why() string   { return s.why }

func (s *tsStartStep) Apply(ctx context.Context, t *Target) error {
	cmd := s.init.Command(s.init.TailscaledName(), "restart")
	// Wait for the local API, which tailscale up needs; status --json
	// answers once tailscaled listens, logged in or not.
	cmd += "; for i in $(seq 1 100); do timeout 2 tailscale status --json >/dev/null 2>&1 && exit 0; sleep 0.2; done; tailscale status --json >/dev/null"
	if _, err := transport.Output(ctx, t.Host, cmd); err != nil {
		return fmt.Errorf("start tailscaled: %w", err)
	}
	return nil
}

// tsUpStep logs the phone in to the tailnet under its inventory name with
// a key minted for it (or the inventory's key). If that does not end with
// the phone on the tailnet under its name, tailscaled's previous state is
// put back, so the phone stays as it was.
type tsUpStep struct {
	phone        string
	loginServer  string
	acceptRoutes bool
	tags         []string
	init         initSystem
	// forceReauth: the phone is logged in to another control server, which
	// tailscale leaves only with --force-reauth.
	forceReauth bool
	why         string
}

func (s *tsUpStep) Title() string {
	server := s.loginServer
	if server == "" {
		server = "Tailscale"
	}
	return "join the tailnet at " + server + " as " + s.phone
}
func (s *tsUpStep) Why() string { return s.why }

const (
	tsKeyFile = "/run/phonefarm-tailscale-authkey"
	tsBackup  = tailscaledStatePath + ".phonefarm-before"
)

func (s *tsUpStep) Apply(ctx context.Context, t *Target) error {
	key, err := t.Env.AuthKey(ctx, s.phone)
	if err != nil {
		return err
	}
	if err := t.Host.WriteFile(ctx, tsKeyFile, 0o600, bytes.NewReader(append(key, '\n'))); err != nil {
		return err
	}
	args := []string{"tailscale", "up", "--reset", "--timeout=60s", "--hostname=" + s.phone, "--auth-key=file:" + tsKeyFile,
		fmt.Sprintf("--accept-routes=%t", s.acceptRoutes)}
	if s.loginServer != "" {
		args = append(args, "--login-server="+s.loginServer)
	}
	if len(s.tags) > 0 {
		args = append(args, "--advertise-tags="+strings.Join(s.tags, ","))
	}
	if s.forceReauth {
		args = append(args, "--force-reauth")
	}
	// Where tailscale is now: what a restore must bring the phone back to.
	prev, _ := readTailscale(ctx, t.Host)
	// The key file goes whatever happens; the old state is kept aside
	// until the phone is seen on the tailnet. A backup left by an earlier
	// cut-off attempt is kept unless the phone now runs on a tailnet,
	// which is then the state to come back to.
	script := fmt.Sprintf(`st=%[1]s
if [ -f "$st" ]; then
	if [ ! -f %[2]s ] || timeout 5 tailscale status --json 2>/dev/null | grep -q '"BackendState": *"Running"'; then
		cp -p "$st" %[2]s
	fi
fi
%[3]s
rc=$?
rm -f %[4]s
exit $rc`, tailscaledStatePath, tsBackup, transport.QuoteArgs(args...), tsKeyFile)
	_, upErr := transport.Output(ctx, t.Host, script)
	if ee := (*transport.ExitError)(nil); errors.As(upErr, &ee) && strings.TrimSpace(ee.Stderr) != "" {
		// What tailscale said is the error; the script's text is noise.
		upErr = fmt.Errorf("tailscale up exited with status %d: %s", ee.Status, strings.TrimSpace(ee.Stderr))
	}
	// tailscale up can exit 0 although the control server refused the key:
	// joined means Running under the phone's name at the right server,
	// with a tailnet address.
	var ts TailscaleState
	if upErr == nil {
		want := controlURL(s.loginServer)
		var ok bool
		if ts, ok = awaitTailscale(ctx, t.Host, 30, func(ts TailscaleState) bool { return joined(ts, s.phone, want) }); ok {
			_, err := transport.Output(ctx, t.Host, "rm -f "+tsBackup)
			return err
		}
		upErr = fmt.Errorf("tailscale up returned, but the control server did not log the phone in (is the auth key valid and unexpired?); tailscale is %s", or(ts.BackendState, "not answering"))
	}
	// Put the phone back as it was, even when apply is being interrupted.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := s.restore(rctx, t, prev); err != nil {
		return fmt.Errorf("tailscale up on %s: %w; restoring its previous tailnet state failed too: %v", s.phone, upErr, err)
	}
	return fmt.Errorf("tailscale up on %s (its previous tailnet state is restored): %w", s.phone, upErr)
}

// tsRestoreWait is how long a restored tailscaled is given to be back
// where it was before it is started once more; tsPollEvery how often
// tailscale is asked while a step waits for it.
var (
	tsRestoreWait = 20 * time.Second
	tsPollEvery   = 500 * time.Millisecond
)

// restore puts tailscaled's state from before tailscale up back, with
// tailscaled stopped while the file is swapped so it cannot write over it,
// and waits for tailscale to be back where it was (prev) when it was on a
// tailnet then.
//
// A restored tailscaled whose first connection to its control server
// fails (a dial cut by its own network set-up as it starts, which a loaded
// phone shows) retries over HTTPS on port 443 from then on, for as long as
// it keeps retrying, unless the control URL is https or a private IP
// address. A control server that speaks plain HTTP under a host name is
// then never reached again; a freshly started tailscaled dials as it
// should. So a tailscaled that is not back in tsRestoreWait is started
// once more.
func (s *tsUpStep) restore(ctx context.Context, t *Target, prev TailscaleState) error {
	h := t.Host
	name := s.init.TailscaledName()
	stop, start := s.init.Command(name, "stop"), s.init.Command(name, "start")
	out, err := transport.Output(ctx, h, fmt.Sprintf(`rm -f %[1]s
[ -f %[2]s ] || exit 0
%[3]s
i=0
while pgrep -x tailscaled >/dev/null 2>&1; do
	if [ $i -ge 100 ]; then
		echo "tailscaled did not stop in 20 s; its state file was left as tailscale up made it" >&2
		exit 1
	fi
	sleep 0.2
	i=$((i+1))
done
mv -f %[2]s %[4]s
%[5]s
echo phonefarm-restored`, tsKeyFile, tsBackup, stop, tailscaledStatePath, start))
	if ee := (*transport.ExitError)(nil); errors.As(err, &ee) && strings.TrimSpace(ee.Stderr) != "" {
		return errors.New(strings.TrimSpace(ee.Stderr))
	}
	if err != nil || !strings.Contains(string(out), "phonefarm-restored") || prev.BackendState != "Running" {
		return err
	}
	want := fmt.Sprintf("Running as %s at %s", prev.HostName, prev.ControlURL)
	back := func(ts TailscaleState) bool {
		return ts.BackendState == "Running" && ts.HostName == prev.HostName && ts.ControlURL == prev.ControlURL
	}
	var now TailscaleState
	for attempt := 1; ; attempt++ {
		var ok bool
		if now, ok = awaitTailscale(ctx, h, int(tsRestoreWait/tsPollEvery), back); ok {
			return nil
		}
		if attempt == 2 || ctx.Err() != nil {
			break
		}
		if t.Note != nil {
			t.Note(fmt.Sprintf("tailscale on %s: restored, but %s after %s, not %s; starting tailscaled again", s.phone, describeTailscale(now), tsRestoreWait, want))
		}
		if _, err := transport.Output(ctx, h, s.init.Command(name, "restart")); err != nil {
			return fmt.Errorf("start tailscaled again: %w", err)
		}
	}
	return fmt.Errorf("its state file is back, but tailscale is %s, not %s, after starting tailscaled twice", describeTailscale(now), want)
}

// awaitTailscale asks the phone's tailscale up to tries times, tsPollEvery
// apart, until ok holds for what it says; it returns what it last said.
func awaitTailscale(ctx context.Context, h transport.Host, tries int, ok func(TailscaleState) bool) (TailscaleState, bool) {
	var ts TailscaleState
	for i := 0; i < tries; i++ {
		var err error
		if ts, err = readTailscale(ctx, h); err == nil && ok(ts) {
			return ts, true
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(tsPollEvery)
	}
	return ts, false
}

// describeTailscale says what tailscale reports, in a few words.
func describeTailscale(t TailscaleState) string {
	if t.BackendState == "" {
		return "not answering"
	}
	return fmt.Sprintf("%s as %s at %s", t.BackendState, or(t.HostName, "(no name)"), or(t.ControlURL, "(no control server)"))
}

// readTailscale asks the phone's tailscale about itself.
func readTailscale(ctx context.Context, h transport.Host) (TailscaleState, error) {
	out, err := transport.Output(ctx, h, "timeout 5 tailscale status --json; echo; echo phonefarm-prefs; timeout 5 tailscale debug prefs")
	status, prefs, _ := strings.Cut(string(out), "\nphonefarm-prefs\n")
	if err != nil && status == "" {
		return TailscaleState{}, err
	}
	return parseTailscale(status, prefs), nil
}

// controlURL is the control server URL tailscale reports for loginServer.
func controlURL(loginServer string) string {
	return strings.TrimSuffix(or(loginServer, "https://controlplane.tailscale.com"), "/")
}

// elsewhere: tailscale runs logged in to a control server other than want.
func (t TailscaleState) elsewhere(want string) bool {
	return t.BackendState == "Running" && strings.TrimSuffix(t.ControlURL, "/") != want
}

// joinWhy says why a phone is not on the tailnet at want as phone.
func joinWhy(t TailscaleState, phone, want string) string {
	switch {
	case t.elsewhere(want):
		return "logged in to " + t.ControlURL
	case t.BackendState == "Running" && t.HostName != phone:
		return "logged in as " + t.HostName
	case t.BackendState != "" && t.BackendState != "Running":
		return "tailscale is " + t.BackendState
	}
	return "not logged in"
}

// joined: the phone is on the tailnet at want under its own name.
func joined(t TailscaleState, phone, want string) bool {
	return t.BackendState == "Running" && t.HostName == phone && strings.TrimSuffix(t.ControlURL, "/") == want && t.IPv4() != ""
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
