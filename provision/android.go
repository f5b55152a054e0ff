package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"

	agentconfig "github.com/phonefarm/phonefarm/agent/config"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport"
)

// A stock Android phone runs phonefarm's rootless node agent instead of
// k3s: apply uploads the agent and proot over adb into the agent's
// directory, writes its configuration and the join token, starts it as
// adb's shell user, and waits for its node to be Ready.

// Files of the agent's directory on the phone.
const (
	agentBin    = "bin/phonefarm-agent"
	agentProot  = "bin/proot"
	agentConfig = "agent.json"
	agentToken  = "token"
	agentPID    = "agent.pid"
	agentLog    = "agent.log"
	// agentHealthKC is the credential the agent keeps its node's health
	// taint with (a node may not change its own taints).
	agentHealthKC = "health.kubeconfig"
)

// AgentBinaries are the agent and proot for one architecture.
type AgentBinaries struct {
	Agent, Proot Artifact
}

// AgentState is what phonefarm reads of the agent on an Android phone.
type AgentState struct {
	// Files are the SHA-256 of the agent directory's managed files, by
	// name relative to it; absent files are missing.
	Files map[string]string
	// PID of the running agent, 0 when none runs.
	PID int
	// Started is when the running agent started, by the phone's clock.
	Started time.Time
	// NodeIP is the phone's address toward the first server.
	NodeIP string
	// DNS are the phone's name servers, when Android says.
	DNS []string
}

func agentDir(farm *inventory.Farm) string {
	if farm.Android != nil && farm.Android.Dir != "" {
		return farm.Android.Dir
	}
	return inventory.DefaultAndroidDir
}

// ObserveAgent reads the agent's files, whether it runs, and the phone's
// address toward server (an IP or host name).
func ObserveAgent(ctx context.Context, h transport.Host, dir, server string) (AgentState, error) {
	script := fmt.Sprintf(`d=%s server=%s
for f in %s %s %s %s %s; do
	[ -f "$d/$f" ] && echo "file $f $(sha256sum "$d/$f" | cut -d' ' -f1)"
done
pid=$(cat "$d/%s" 2>/dev/null)
if [ -n "$pid" ] && tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null | grep -q phonefarm-agent; then
	echo "pid $pid $(stat -c %%Y /proc/$pid 2>/dev/null)"
fi
[ -n "$server" ] && ip route get "$server" 2>/dev/null | sed -n 's/.* src \([0-9a-f.:]*\).*/src \1/p' | head -n 1
echo "dns $(getprop net.dns1 2>/dev/null)"
# Android 8 and later keep net.dns* empty: the default network's servers
# are in the connectivity service's dump.
dumpsys connectivity 2>/dev/null | grep -E 'Active default network|DnsAddresses' | sed 's/^/conn /'
true`, transport.Quote(dir), transport.Quote(server), agentBin, agentProot, agentConfig, agentToken, agentHealthKC, agentPID)
	out, err := transport.Output(ctx, h, script)
	if err != nil {
		return AgentState{}, fmt.Errorf("read the agent on %s: %w", h.Name(), err)
	}
	st := AgentState{Files: map[string]string{}}
	var conn []string
	for _, line := range strings.Split(out, "\n") {
		if c, ok := strings.CutPrefix(line, "conn "); ok {
			conn = append(conn, c)
			continue
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "file":
			st.Files[f[1]] = f[2]
		case len(f) >= 2 && f[0] == "pid":
			st.PID, _ = strconv.Atoi(f[1])
			if len(f) == 3 {
				if sec, err := strconv.ParseInt(f[2], 10, 64); err == nil {
					st.Started = time.Unix(sec, 0)
				}
			}
		case len(f) == 2 && f[0] == "src":
			st.NodeIP = f[1]
		case len(f) == 2 && f[0] == "dns":
			if _, err := netip.ParseAddr(f[1]); err == nil {
				st.DNS = []string{f[1]}
			}
		}
	}
	if len(st.DNS) == 0 {
		st.DNS = ConnectivityDNS(conn)
	}
	return st, nil
}

// ConnectivityDNS picks the default network's name servers out of the
// lines of `dumpsys connectivity` that name the default network or list
// DNS addresses:
//
//	Active default network: 100
//	  NetworkAgentInfo{network{100} ... lp{{InterfaceName: wlan0 ... DnsAddresses: [ /192.168.1.1,/fd00::1 ] ...
//
// Without a default network, the first list found; at most three (what
// a resolv.conf uses).
func ConnectivityDNS(lines []string) []string {
	def := ""
	for _, l := range lines {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Active default network:"); ok {
			def = strings.TrimSpace(v)
		}
	}
	var first []string
	for _, l := range lines {
		_, rest, ok := strings.Cut(l, "DnsAddresses: [")
		if !ok {
			continue
		}
		list, _, _ := strings.Cut(rest, "]")
		var servers []string
		for _, a := range strings.Split(list, ",") {
			a = strings.TrimPrefix(strings.TrimSpace(a), "/")
			if ip, err := netip.ParseAddr(a); err == nil && len(servers) < 3 {
				servers = append(servers, ip.String())
			}
		}
		if len(servers) == 0 {
			continue
		}
		if def != "" && (strings.Contains(l, "network{"+def+"}") || strings.Contains(l, " - "+def+"]")) {
			return servers
		}
		if first == nil {
			first = servers
		}
	}
	return first
}

// ResolveAgentBinaries hashes the inventory's agent and proot binaries
// for the architectures of the Android phones.
func ResolveAgentBinaries(farm *inventory.Farm, cacheDir string, arches []string) (map[string]AgentBinaries, error) {
	out := map[string]AgentBinaries{}
	if farm.Android == nil {
		return out, nil
	}
	for _, arch := range arches {
		if _, done := out[arch]; done {
			continue
		}
		var b AgentBinaries
		for _, f := range []struct {
			field string
			files map[string]string
			dst   *Artifact
		}{{"android.agent", farm.Android.Agent, &b.Agent}, {"android.proot", farm.Android.Proot, &b.Proot}} {
			p, ok := f.files[arch]
			if !ok {
				continue
			}
			a, err := fileArtifact(cacheDir, fmt.Sprintf("%s[%s]", f.field, arch), arch, farm.Resolve(p), "(local)")
			if err != nil {
				return nil, err
			}
			*f.dst = a
		}
		out[arch] = b
	}
	return out, nil
}

// agentBlocked says why an Android phone cannot get the agent, or "".
func agentBlocked(in Input, pi PhoneInput, serverURL string) string {
	arch := pi.Facts.Arch
	bins := in.Agents[arch]
	switch {
	case in.Farm.Tailscale != nil:
		return "the rootless agent does not join a tailnet yet; reach this phone's cluster over the LAN, or leave it out of a tailnet farm"
	case bins.Agent.SHA256 == "":
		return fmt.Sprintf("no phonefarm-agent for %s: set android.agent.%s in the inventory (build it with CGO_ENABLED=0 GOOS=linux GOARCH=%s go build ./cmd/phonefarm-agent)", arch, arch, goarch(arch))
	case bins.Proot.SHA256 == "":
		return fmt.Sprintf("no proot for %s: set android.proot.%s in the inventory to a proot that needs no library of the phone's (scripts/build-proot.sh %s builds one)", arch, arch, goarch(arch))
	case serverURL == "":
		return "the first server's address is not known yet"
	case pi.Agent.NodeIP == "":
		return "the phone has no route to the first server (ip route get found no source address)"
	}
	return ""
}

func goarch(arch string) string {
	if arch == "" {
		return "arm64"
	}
	return arch
}

// RenderAgentConfig is the agent's configuration for a phone.
func RenderAgentConfig(in Input, pi PhoneInput, serverURL string) []byte {
	dir := agentDir(in.Farm)
	p := pi.Phone
	c := agentconfig.Config{
		Server:    serverURL,
		TokenFile: path.Join(dir, agentToken),
		NodeName:  p.Name,
		NodeIP:    pi.Agent.NodeIP,
		Dir:       path.Join(dir, "state"),
		Proot:     path.Join(dir, agentProot),
		Labels:    map[string]string{},

		HealthKubeconfig: path.Join(dir, agentHealthKC),
	}
	if h := in.Farm.Health; h != nil {
		c.BatteryLowPercent, c.HotCelsius = h.BatteryLowPercent, float64(h.HotCelsius)
	}
	if a := in.Farm.Android; a != nil {
		c.ProotLink2Symlink, c.ProotKillOnExit = a.ProotLink2Symlink, a.ProotKillOnExit
	}
	if ad := pi.Facts.OS.Android; ad != nil {
		if ad.Model != "" {
			c.Labels[agentconfig.ModelLabel] = labelValue(ad.Model)
		}
		if ad.SDK > 0 {
			c.Labels[agentconfig.SDKLabel] = strconv.Itoa(ad.SDK)
		}
	}
	for k, v := range p.Labels {
		c.Labels[k] = v
	}
	// The proot taint always, so only pods that tolerate proot land
	// there; the inventory's beside it.
	c.Taints = []string{agentconfig.RuntimeLabel + "=" + agentconfig.Runtime + ":NoSchedule"}
	c.Taints = append(c.Taints, p.Taints...)
	switch {
	case in.Farm.Android != nil && len(in.Farm.Android.DNS) > 0:
		c.DNS = in.Farm.Android.DNS
	default:
		c.DNS = pi.Agent.DNS
	}
	if in.Registries != nil {
		c.Registries = in.Registries.Agent
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	return append(b, '\n')
}

// labelValue makes a model name ("Pixel 3a") a label value.
func labelValue(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	out := strings.Trim(string(b), "-_.")
	if len(out) > 63 {
		out = strings.Trim(out[:63], "-_.")
	}
	return out
}

// androidSteps converge one Android phone's agent.
func androidSteps(in Input, pi PhoneInput, serverURL string) []Step {
	dir := agentDir(in.Farm)
	st := pi.Agent
	bins := in.Agents[pi.Facts.Arch]
	var steps []Step
	changed := false
	for _, f := range []struct {
		name string
		art  Artifact
		what string
	}{{agentBin, bins.Agent, "phonefarm-agent"}, {agentProot, bins.Proot, "proot"}} {
		if cur := st.Files[f.name]; cur != f.art.SHA256 {
			why := "not installed"
			if cur != "" {
				why = "differs from the inventory's"
			}
			steps = append(steps, &agentUploadStep{art: f.art, dst: path.Join(dir, f.name), what: f.what, why: why})
			changed = true
		}
	}
	if cur := st.Files[agentToken]; in.TokenSHA256 == "" || cur != in.TokenSHA256 {
		why := "not written"
		switch {
		case in.TokenSHA256 == "":
			why = "read from the first server once it has initialised"
		case cur != "":
			why = "differs from the cluster's token"
		}
		steps = append(steps, &agentTokenStep{path: path.Join(dir, agentToken), why: why})
		changed = true
	}
	if _, ok := st.Files[agentHealthKC]; !ok {
		steps = append(steps, &healthCredsStep{node: pi.Phone.Name, path: path.Join(dir, agentHealthKC)})
		changed = true
	}
	cfg := RenderAgentConfig(in, pi, serverURL)
	if st.Files[agentConfig] != sha(cfg) {
		why := "not written"
		if st.Files[agentConfig] != "" {
			why = "content differs"
		}
		steps = append(steps, &fileStep{path: path.Join(dir, agentConfig), mode: 0o600, content: cfg, title: "write agent config", why: why, old: pi.Agent.Files[agentConfig]})
		changed = true
	}
	startWhy := ""
	switch {
	case changed && st.PID != 0:
		startWhy = "binary, token, credentials or config changed"
	case st.PID == 0:
		startWhy = "the agent is not running"
	}
	if startWhy != "" {
		steps = append(steps, &agentStartStep{dir: dir, why: startWhy})
	}
	var node *NodeFacts
	if in.Cluster != nil {
		if n, ok := in.Cluster.Nodes[pi.Phone.Name]; ok {
			node = &n
		}
	}
	if startWhy != "" || node == nil || !node.Ready {
		why := "the agent starts"
		if startWhy == "" {
			why = "node not Ready"
		}
		steps = append(steps, &readyStep{node: pi.Phone.Name, ip: st.NodeIP, why: why})
	}
	// The agent registers its node with the inventory's labels and
	// taints; later changes go through the API, as a node may not change
	// its own taints.
	if ls := labelChanges(pi.Phone, node); ls != nil {
		steps = append(steps, ls)
	}
	return steps
}

// agentUploadStep uploads the agent or proot.
type agentUploadStep struct {
	art       Artifact
	dst, what string
	why       string
}

func (s *agentUploadStep) Title() string {
	return fmt.Sprintf("upload %s (%s, %d MB) to %s", s.what, s.art.Arch, s.art.Size>>20, s.dst)
}
func (s *agentUploadStep) Why() string { return s.why }

func (s *agentUploadStep) Apply(ctx context.Context, t *Target) error {
	if _, err := transport.Output(ctx, t.Host, "mkdir -p "+transport.Quote(path.Dir(s.dst))); err != nil {
		return err
	}
	// The phone's hash cache is root's; Android phones are hashed whole.
	return upload(ctx, t, s.art, s.dst, 0o755)
}

// agentTokenStep writes the join token the agent reads, readable by the
// agent's user only. The token is fetched at apply time and never appears
// in the plan.
type agentTokenStep struct{ path, why string }

func (s *agentTokenStep) Title() string { return "write join token " + s.path }
func (s *agentTokenStep) Why() string   { return s.why }

func (s *agentTokenStep) Apply(ctx context.Context, t *Target) error {
	tok, err := t.Env.Token(ctx)
	if err != nil {
		return fmt.Errorf("get join token: %w", err)
	}
	if _, err := transport.Output(ctx, t.Host, "mkdir -p "+transport.Quote(path.Dir(s.path))); err != nil {
		return err
	}
	return t.Host.WriteFile(ctx, s.path, 0o600, bytes.NewReader(tok))
}

// agentStartStep stops the running agent (its pods stop with it) and
// starts it again, detached from adb's session so it outlives it.
type agentStartStep struct{ dir, why string }

func (s *agentStartStep) Title() string { return "(re)start phonefarm-agent" }
func (s *agentStartStep) Why() string   { return s.why }

// stopAgent is the shell that stops the agent of dir's pid file, waiting
// up to 30 s for it to stop its pods, then kills it.
func stopAgent(dir string) string {
	return fmt.Sprintf(`d=%s
pid=$(cat "$d/%s" 2>/dev/null)
if [ -n "$pid" ] && tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null | grep -q phonefarm-agent; then
	kill -TERM "$pid"
	i=0
	while [ -d /proc/$pid ] && [ $i -lt 60 ]; do sleep 0.5; i=$((i+1)); done
	[ -d /proc/$pid ] && kill -KILL -- -"$pid" "$pid" 2>/dev/null
fi
rm -f "$d/%s"`, transport.Quote(dir), agentPID, agentPID)
}

func (s *agentStartStep) Apply(ctx context.Context, t *Target) error {
	d := transport.Quote(s.dir)
	script := stopAgent(s.dir) + fmt.Sprintf(`
cd %s || exit 1
chmod 700 . && mkdir -p state
date +%%s > .started
setsid ./%s -config %s >> %s 2>&1 < /dev/null &
echo $! > %s.$$ && mv -f %s.$$ %s
sleep 1
pid=$(cat %s)
[ -d /proc/$pid ] || { echo "phonefarm-agent exited at once:" >&2; tail -n 20 %s >&2; exit 1; }
cat .started`, d, agentBin, agentConfig, agentLog, agentPID, agentPID, agentPID, agentPID, agentLog)
	out, err := transport.Output(ctx, t.Host, script)
	if err != nil {
		return fmt.Errorf("start phonefarm-agent: %w", err)
	}
	if sec, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64); err == nil {
		t.Restarted = time.Unix(sec, 0)
	}
	return nil
}

// ResetAgent stops the agent (and its pods) and removes its directory.
// Running it twice is harmless.
func ResetAgent(ctx context.Context, h transport.Host, farm *inventory.Farm) error {
	dir := agentDir(farm)
	if _, err := transport.Output(ctx, h, stopAgent(dir)+"\nrm -rf "+transport.Quote(dir)+"\necho reset"); err != nil {
		return fmt.Errorf("reset %s: %w", h.Name(), err)
	}
	return nil
}
