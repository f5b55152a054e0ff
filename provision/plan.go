// Package provision converges phones to the farm inventory: from the spec
// and each phone's observed facts and state, Compute returns a Plan, the
// steps each phone needs and why, and Runner.Apply runs them. Compute is a
// pure function, so `phonefarm plan`, `apply --dry-run`, the TUI preview and the
// Pulumi diff all show the same thing. Steps are small and idempotent, one
// file each; a converged farm plans no steps.
//
// Order across phones is explicit: the first server initialises the
// cluster, other servers join it one at a time, then agents join together
// (one at a time when upgrading, so the cluster keeps capacity). Steps
// that touch only their own phone (firewall, binary, files) run on every
// phone at once before that.
package provision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/phonefarm/phonefarm/facts"
	"github.com/phonefarm/phonefarm/inventory"
)

// Step is one idempotent change on one phone.
type Step interface {
	// Title says what changes, e.g. "upload k3s v1.32.0+k3s1 (arm64)".
	Title() string
	// Why says what the facts show that makes the step necessary.
	Why() string
	// Apply makes the change.
	Apply(ctx context.Context, t *Target) error
}

// Stage orders phones: every phone of a stage converges before the next
// stage starts.
type Stage int

const (
	StageFirstServer Stage = iota
	StageServers
	StageAgents
)

func (s Stage) String() string {
	return [...]string{"first server", "servers", "agents"}[s]
}

// PhonePlan is what one phone needs.
type PhonePlan struct {
	Phone string
	Role  string
	Stage Stage
	Steps []Step
	// Blocked says why the phone cannot be provisioned now (unreachable,
	// failed preflight, unsupported init system); it then has no steps.
	// errors.Is finds ErrBlocked in it, and ErrUnreachable or ErrPreflight
	// for those causes. nil when the phone is not blocked.
	Blocked error
	// Notes are warnings that do not block (a firewall phonefarm does
	// not manage, skipped checks).
	Notes []string
	// NodeIP is the address the node registers with.
	NodeIP string
}

// Plan is the whole farm's plan, phones in apply order.
type Plan struct {
	Phones []PhonePlan
	// Rolling is set when an installed k3s is upgraded: agents then go
	// one at a time.
	Rolling bool
	// ServerURL is the first server's API.
	ServerURL string
}

// Changes counts the steps of the plan.
func (p *Plan) Changes() int {
	n := 0
	for _, pp := range p.Phones {
		n += len(pp.Steps)
	}
	return n
}

// PhoneInput is what is known about one phone before planning.
type PhoneInput struct {
	Phone *inventory.Phone
	// Err is set when the phone could not be reached or read.
	Err   error
	Facts facts.Facts
	State State
	// Agent is the rootless agent's state on an Android phone.
	Agent AgentState
	// Preflight is the failed checks' summary when the phone failed its
	// preflight and checks are not skipped; empty otherwise.
	Preflight string
	// Notes are warnings carried into the plan (skipped checks).
	Notes []string
}

// Input is everything Plan looks at.
type Input struct {
	Farm   *inventory.Farm
	Phones []PhoneInput
	// Artifacts are the k3s binaries by architecture.
	Artifacts map[string]Artifact
	// HealthAgents are phonefarm-agent binaries for the health reporter
	// on phones that run k3s, by architecture.
	HealthAgents map[string]Artifact
	// Agents are the rootless agent's and proot's binaries by
	// architecture, for Android phones.
	Agents map[string]AgentBinaries
	// Cluster is the API's view of the nodes; nil when the API could not
	// be reached (a new cluster, or the first server is down).
	Cluster *ClusterFacts
	// ClusterErr says why the API of a running first server could not be
	// reached; apply then cannot see nodes become Ready.
	ClusterErr string
	// TokenSHA256 is the hash of the join token when known before apply:
	// from the inventory's secret or the first server's token file.
	TokenSHA256 string
	// Tailscale are static tailscale builds by architecture, when the
	// inventory provides them.
	Tailscale map[string]TailscaleArtifact
	// Registries is the rendered registries.yaml and the files it refers
	// to; nil when the inventory configures no registries.
	Registries *Registries
	// AirgapImages are the inventory's image tarballs by architecture.
	AirgapImages map[string][]ImageArtifact
}

// ClusterFacts is what the API says about the nodes.
type ClusterFacts struct {
	Nodes map[string]NodeFacts
}

// NodeFacts is one node as the API sees it.
type NodeFacts struct {
	Ready bool
	// ManagedLabels and ManagedTaints are the labels and taints phonefarm
	// set last time (recorded in annotations), with current values.
	Labels        map[string]string
	ManagedLabels []string
	Taints        []string
	ManagedTaints []string
}

// Compute returns the steps that converge each phone of in.Farm (those in
// in.Phones) from what is known about it. It does no I/O.
func Compute(in Input) *Plan {
	plan := &Plan{}
	first := firstServerName(in)
	tailnet := in.Farm.Tailscale != nil
	firstReachable := false
	for _, pi := range in.Phones {
		if pi.Phone.Name == first && pi.Err == nil {
			firstReachable = true
			// On a tailnet the address is known only once the first
			// server has joined it; apply then reads it (Env.ServerURL).
			if ip := NodeIP(pi, tailnet); ip != "" {
				plan.ServerURL = "https://" + ip + ":6443"
			}
		}
	}
	for _, pi := range in.Phones {
		p := pi.Phone
		if p.Role == "" {
			continue // flash and check only
		}
		role := agent
		stage := StageAgents
		switch {
		case p.Name == first:
			role, stage = firstServer, StageFirstServer
		case p.Role == inventory.RoleServer:
			role, stage = joinServer, StageServers
		}
		pp := PhonePlan{Phone: p.Name, Role: p.Role, Stage: stage}
		cfgIP, ts, want := configIP(in.Farm, pi), pi.State.Tailscale, ""
		if tailnet {
			want = controlURL(in.Farm.Tailscale.LoginServer)
		}
		switch {
		case pi.Err != nil:
			pp.Blocked = &BlockedError{Kind: ErrUnreachable, Reason: "unreachable: " + pi.Err.Error(), Err: pi.Err}
		case pi.Preflight != "":
			pp.Blocked = &BlockedError{Kind: ErrPreflight, Reason: "preflight failed: " + pi.Preflight + " (--skip-checks to install anyway)"}
		case p.OS == inventory.OSAndroid && role != agent:
			pp.Blocked = blocked("an Android phone runs phonefarm's rootless agent, which cannot be a server")
		case p.OS == inventory.OSAndroid && !firstReachable:
			pp.Blocked = blockedf("the first server %s is not reachable, so there is no cluster to join", first)
		case p.OS == inventory.OSAndroid && agentBlocked(in, pi, plan.ServerURL) != "":
			pp.Blocked = blocked(agentBlocked(in, pi, plan.ServerURL))
		case p.OS == inventory.OSAndroid:
			pp.NodeIP = pi.Agent.NodeIP
			pp.Steps = androidSteps(in, pi, plan.ServerURL)
			pp.Notes = append(pp.Notes, pi.Notes...)
			if len(pi.Agent.DNS) == 0 && (in.Farm.Android == nil || len(in.Farm.Android.DNS) == 0) {
				pp.Notes = append(pp.Notes, "the phone's name servers could not be read over adb: the agent and its pods resolve no names (registries by name, Services' DNS) until android.dns is set")
			}
		case !knownInit(pi.Facts.Init):
			pp.Blocked = blockedf("init system %q is not supported; phonefarm installs k3s as an OpenRC or systemd service", pi.Facts.Init)
		case in.Artifacts[pi.Facts.Arch].SHA256 == "":
			pp.Blocked = blockedf("no k3s binary for %s: add k3s.source.files.%s to the inventory, or let phonefarm download the release", pi.Facts.Arch, pi.Facts.Arch)
		case role != firstServer && !firstReachable:
			pp.Blocked = blockedf("the first server %s is not reachable, so there is no cluster to join", first)
		case tailnet && in.Tailscale[pi.Facts.Arch].Tailscaled.SHA256 == "" && pi.State.Tailscale.Installed == "" && packageInstall(pi.Facts.OS.ID) == "":
			pp.Blocked = blockedf("no tailscale for %s on %s: set tailscale.binaries.%s in the inventory, or install tailscale", pi.Facts.Arch, pi.Facts.OS.ID, pi.Facts.Arch)
		case p.Role == inventory.RoleServer && pi.State.EtcdIP != "" && cfgIP != "" && cfgIP != pi.State.EtcdIP && serverCount(in) > 1:
			pp.Blocked = &BlockedError{Kind: ErrBlocked, Reason: errMultiServerMove(p.Name, pi.State.EtcdIP, cfgIP, serverCount(in)).Error()}
		case integrated(in.Farm) && ts.elsewhere(want):
			pp.Blocked = blockedf("logged in to the tailnet at %s, which k3s's own tailscale up cannot leave (it would need --force-reauth on every start): run tailscale logout on it first, or use tailscale.k3sMode separate", ts.ControlURL)
		case tailnet && ts.elsewhere(want) && p.SSH != nil && slices.Contains(ts.IPs, p.SSH.Host):
			// phonefarm reaches the phone through the tailnet it must leave.
			pp.Blocked = blockedf("logged in to the tailnet at %s and reached over it at %s: moving it to %s would cut phonefarm off mid-step; reach it over another address, or run tailscale logout on it first",
				ts.ControlURL, p.SSH.Host, want)
		default:
			pp.NodeIP = NodeIP(pi, tailnet)
			var notes []string
			pp.Steps, notes = phoneSteps(in, pi, role, plan.ServerURL)
			pp.Notes = append(pi.Notes, notes...)
			if slices.ContainsFunc(pp.Steps, func(s Step) bool { b, ok := s.(*binaryStep); return ok && b.upgrade }) {
				plan.Rolling = true
			}
		}
		plan.Phones = append(plan.Phones, pp)
	}
	slices.SortStableFunc(plan.Phones, func(a, b PhonePlan) int { return int(a.Stage) - int(b.Stage) })
	// Apply holds every other phone when the first server does not
	// converge; the plan says so up front for a first server it blocks.
	if len(plan.Phones) > 0 && plan.Phones[0].Stage == StageFirstServer && plan.Phones[0].Blocked != nil && firstReachable {
		for i := range plan.Phones[1:] {
			if pp := &plan.Phones[i+1]; pp.Blocked == nil {
				pp.Blocked, pp.Steps = blocked("the first server "+first+" is blocked"), nil
			}
		}
	}
	return plan
}

// firstServerName is the inventory's first phone with role server.
func firstServerName(in Input) string {
	for _, p := range in.Farm.Phones {
		if p.Role == inventory.RoleServer {
			return p.Name
		}
	}
	return ""
}

// NodeIP picks the address the node registers with: on a tailnet its
// tailnet IPv4 ("" until it has joined); else the address phonefarm reaches
// it at when that is one of its own, else its first address.
func NodeIP(pi PhoneInput, tailnet bool) string {
	if tailnet {
		return pi.State.Tailscale.IPv4()
	}
	if pi.Phone.SSH != nil {
		for _, a := range pi.State.Addrs {
			if a.IP == pi.Phone.SSH.Host {
				return a.IP
			}
		}
	}
	if len(pi.State.Addrs) > 0 {
		return pi.State.Addrs[0].IP
	}
	if pi.Phone.SSH != nil {
		return pi.Phone.SSH.Host
	}
	return ""
}

// configIP is the node-ip phonefarm writes into the phone's k3s config:
// the tailnet address when phonefarm runs the tailnet ("" until joined),
// else the LAN address (with k3s-integrated, k3s itself moves the node to
// the tailnet address and keeps this one for etcd).
func configIP(farm *inventory.Farm, pi PhoneInput) string {
	return NodeIP(pi, farm.Tailscale != nil && !integrated(farm))
}

func ifaceOf(s State, ip string) string {
	for _, a := range s.Addrs {
		if a.IP == ip {
			return a.Iface
		}
	}
	return ""
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// phoneSteps lists what one reachable phone needs, in order.
func phoneSteps(in Input, pi PhoneInput, role nodeRole, serverURL string) ([]Step, []string) {
	farm, p, st := in.Farm, pi.Phone, pi.State
	var steps []Step
	var notes []string
	tailnet := farm.Tailscale != nil
	ip := NodeIP(pi, tailnet)
	initSys, _ := initSystemFor(pi.Facts.Init)

	// Firewall.
	switch {
	case st.NftDir && pi.Facts.Firewall.NftVersion != "":
		frag := renderNftables(farm, role)
		fileChanged := st.Files[NftFragmentPath].SHA256 != sha(frag)
		if fileChanged || !st.NftLoaded {
			steps = append(steps, &nftStep{content: frag, init: initSys, why: whyFile(st, NftFragmentPath, fileChanged, "not in the loaded ruleset")})
		}
	case pi.Facts.Firewall.NftVersion == "":
		notes = append(notes, "no nftables on the phone: phonefarm does not manage its firewall; make sure ports 6443/tcp (servers), 10250/tcp and 8472/udp are open")
	}

	// The battery's charge limit: k3s does not care, so no restart.
	powerS, powerNotes := powerSteps(farm.ChargeLimitFor(p), pi.Facts.Battery, st)
	steps = append(steps, powerS...)
	notes = append(notes, powerNotes...)

	if tailnet {
		steps = append(steps, tailscaleSteps(farm, pi, in.Tailscale[pi.Facts.Arch])...)
	}

	// Binary.
	art := in.Artifacts[pi.Facts.Arch]
	changed := false
	if cur := st.Files[BinaryPath].SHA256; cur != art.SHA256 {
		why := "not installed"
		upgrade := false
		if cur != "" {
			why = "installed binary differs"
			if v := pi.Facts.K3s.Version; v != "" && v != art.Version {
				why = fmt.Sprintf("installed %s, want %s", v, art.Version)
				upgrade = true
			}
		}
		steps = append(steps, &binaryStep{art: art, why: why, upgrade: upgrade, old: cur, oldVersion: pi.Facts.K3s.Version})
		changed = true
	}

	// What containerd reads when k3s starts: registries, images to
	// import, its configuration template.
	var imagePaths []string
	fileSteps, fileChanged := containerdSteps(in, pi, art.Version, &notes)
	steps = append(steps, fileSteps...)
	changed = changed || fileChanged
	wanted := map[string]bool{}
	for _, img := range in.AirgapImages[pi.Facts.Arch] {
		wanted[img.Name] = true
	}
	for _, name := range st.AirgapOwned {
		if !wanted[name] {
			// k3s imports at start: removing needs no restart.
			steps = append(steps, &imageRemoveStep{name: name})
		}
	}
	for _, img := range in.AirgapImages[pi.Facts.Arch] {
		imagePaths = append(imagePaths, img.PhonePath())
		if cur, ok := st.Files[img.PhonePath()]; !ok || cur.SHA256 != img.SHA256 {
			why := "missing"
			if ok {
				why = "content differs"
			}
			steps = append(steps, &imageStep{img: img, why: why})
			changed = true
		}
	}

	// Config.
	useTokenFile := role != firstServer || !farm.K3s.Token.IsZero()
	iface := ifaceOf(st, ip)
	if tailnet {
		iface = "tailscale0"
	}
	cfgIP := configIP(farm, pi)
	if integrated(farm) {
		iface = ifaceOf(st, cfgIP)
		if !joined(st.Tailscale, p.Name, controlURL(farm.Tailscale.LoginServer)) {
			steps = append(steps, &vpnAuthStep{phone: p.Name, loginServer: farm.Tailscale.LoginServer, tags: farm.Tailscale.Tags, why: vpnAuthWhy(farm, pi)})
			changed = true
		}
	}
	// A server's etcd member follows its address; before the config, so
	// that a move phonefarm cannot make leaves the phone as it was.
	if role != agent && st.EtcdIP != "" && cfgIP != st.EtcdIP {
		steps = append(steps, &etcdMoveStep{from: st.EtcdIP, to: cfgIP, servers: serverCount(in), phone: p.Name, init: initSys, service: role.service(), args: extraArgs(farm, p)})
		changed = true
	}
	switch {
	case cfgIP == "" || role != firstServer && serverURL == "":
		// On a tailnet not yet joined, the addresses are known only
		// during apply.
		steps = append(steps, &tailnetConfigStep{farm: farm, phone: p, role: role, tokenFile: useTokenFile, ip: cfgIP, iface: iface})
		changed = true
	default:
		cfg := renderConfig(farm, p, role, cfgIP, iface, serverURL, useTokenFile, st.Tailscale.DNSName)
		if st.Files[ConfigPath].SHA256 != sha(cfg) {
			steps = append(steps, &fileStep{path: ConfigPath, mode: 0o600, content: cfg, title: "write k3s config", why: whyFile(st, ConfigPath, true, ""), old: st.Files[ConfigPath].SHA256})
			changed = true
		}
	}

	// A role the phone no longer has: its service goes before this one's
	// starts (k3s and k3s-agent on one phone fight over its ports).
	other := agent
	if role == agent {
		other = firstServer
	}
	if _, ok := st.Files[initSys.ServicePath(other.service())]; ok {
		steps = append(steps, &serviceRemoveStep{init: initSys, service: other.service(), why: "the phone's role is " + p.Role + " now"})
		changed = true
	}

	// Service.
	svcPath := initSys.ServicePath(role.service())
	svc := initSys.K3sService(role, extraArgs(farm, p), tailnet)
	svcChanged := st.Files[svcPath].SHA256 != sha(svc)
	if svcChanged {
		steps = append(steps, &fileStep{path: svcPath, mode: 0o755, content: svc, title: "write " + initSys.Name() + " service " + role.service(), why: whyFile(st, svcPath, true, ""), old: st.Files[svcPath].SHA256})
		changed = true
	}

	// Join token.
	if useTokenFile {
		cur := st.Files[TokenPath].SHA256
		if in.TokenSHA256 == "" || cur != in.TokenSHA256 {
			why := "not written"
			switch {
			case in.TokenSHA256 == "":
				why = "read from the first server once it has initialised"
			case cur != "":
				why = "differs from the cluster's token"
			}
			steps = append(steps, &tokenStep{why: why})
			changed = true
		}
	}

	// (Re)start: when something changed, nothing runs, or a managed file
	// is newer than the running process (a previous apply was cut off
	// between writing and restarting).
	restartWhy := ""
	switch {
	case changed:
		restartWhy = "binary, token, config or service changed"
	case st.K3sStarted == 0:
		restartWhy = "k3s is not running"
	case newerThan(st, st.K3sStarted, append([]string{BinaryPath, ConfigPath, TokenPath, svcPath, RegistriesPath, ContainerdTemplatePath}, imagePaths...)...):
		restartWhy = "running k3s predates its files"
	case !st.Enabled[role.service()]:
		restartWhy = "service not enabled at boot"
	}
	if restartWhy != "" {
		steps = append(steps, &restartStep{init: initSys, service: role.service(), why: restartWhy})
	}

	// Node registration and labels, through the API.
	var node *NodeFacts
	if in.Cluster != nil {
		if n, ok := in.Cluster.Nodes[p.Name]; ok {
			node = &n
		}
	}
	if restartWhy != "" || node == nil || !node.Ready {
		why := "k3s restarts"
		if restartWhy == "" {
			why = "node not Ready"
		}
		steps = append(steps, &readyStep{node: p.Name, ip: ip, tailnet: tailnet, why: why})
	}
	if ls := labelChanges(p, node); ls != nil {
		steps = append(steps, ls)
	}
	// The phone-health reporter, once the node is there to report on.
	healthS, healthNotes := healthSteps(in, pi, initSys)
	steps = append(steps, healthS...)
	notes = append(notes, healthNotes...)
	return steps, notes
}

// containerdSteps write or remove registries.yaml, the files it refers to
// and containerd's configuration template, as the inventory and the phone
// need. changed is set when k3s must restart to read them.
func containerdSteps(in Input, pi PhoneInput, k3sVersion string, notes *[]string) (steps []Step, changed bool) {
	st := pi.State
	write := func(path string, mode fs.FileMode, content []byte, title string) {
		if st.Files[path].SHA256 != sha(content) {
			steps = append(steps, &fileStep{path: path, mode: mode, content: content, title: title, why: whyFile(st, path, true, ""), old: st.Files[path].SHA256})
			changed = true
		}
	}
	switch {
	case in.Registries != nil:
		for _, f := range in.Registries.Files {
			write(f.Path, f.Mode, f.Content, "write registry certificate")
		}
		write(RegistriesPath, 0o600, in.Registries.Config, "write registries")
	case st.Managed[RegistriesPath]:
		steps = append(steps, &removeStep{path: RegistriesPath, why: "the inventory sets no k3s.registries"})
		changed = true
	}
	// Certificates and keys phonefarm wrote (its own directory) that the
	// inventory no longer names: a client key must not outlive its use.
	// registries.yaml no longer refers to them, so k3s need not restart.
	wanted := map[string]bool{}
	if in.Registries != nil {
		for _, f := range in.Registries.Files {
			wanted[f.Path] = true
		}
	}
	var stale []string
	for p := range st.Files {
		if strings.HasPrefix(p, RegistryFilesDir+"/") && !wanted[p] {
			stale = append(stale, p)
		}
	}
	slices.Sort(stale)
	for _, p := range stale {
		steps = append(steps, &removeStep{path: p, why: "the inventory no longer names it in k3s.registries"})
	}
	_, own := st.Files[ContainerdTemplatePath]
	own = own && !st.Managed[ContainerdTemplatePath]
	switch tmpl := containerdTemplateFor(k3sVersion); {
	case !st.OOMRestricted && st.Managed[ContainerdTemplatePath]:
		steps = append(steps, &removeStep{path: ContainerdTemplatePath, why: "root can lower oom_score_adj now; k3s's own containerd configuration does"})
		changed = true
	case !st.OOMRestricted:
	case own:
		*notes = append(*notes, "root cannot lower oom_score_adj here, and "+ContainerdTemplatePath+" is not phonefarm's: make sure it sets restrict_oom_score_adj = true, or every pod sandbox fails")
	case tmpl == nil:
		*notes = append(*notes, fmt.Sprintf("root cannot lower oom_score_adj here (no CAP_SYS_RESOURCE), so runc fails every pod sandbox; phonefarm's containerd template that restricts it is for k3s v1.32, not %s: write %s with restrict_oom_score_adj = true", k3sVersion, ContainerdTemplatePath))
	default:
		if st.Files[ContainerdTemplatePath].SHA256 != sha(tmpl) {
			why := "root cannot lower oom_score_adj here (no CAP_SYS_RESOURCE); containerd must not ask runc to"
			steps = append(steps, &fileStep{path: ContainerdTemplatePath, mode: 0o644, content: tmpl, title: "write containerd template", why: why, old: st.Files[ContainerdTemplatePath].SHA256})
			changed = true
		}
	}
	return steps, changed
}

func whyFile(st State, path string, changed bool, otherwise string) string {
	if !changed {
		return otherwise
	}
	if _, ok := st.Files[path]; ok {
		return "content differs"
	}
	return "missing"
}

// startSlack absorbs the rounding in a process's start time (whole seconds
// from the boot time plus clock ticks) against a file's modification time:
// a k3s started right after its files were written must not look older.
const startSlack = 2

func newerThan(st State, started int64, paths ...string) bool {
	for _, p := range paths {
		if f, ok := st.Files[p]; ok && f.Mtime > started+startSlack {
			return true
		}
	}
	return false
}

// tailscaleSteps install tailscale, run tailscaled as a service and join the
// tailnet, each only when the phone is not already so.
func tailscaleSteps(farm *inventory.Farm, pi PhoneInput, art TailscaleArtifact) []Step {
	ts, st := farm.Tailscale, pi.State
	initSys, _ := initSystemFor(pi.Facts.Init)
	var steps []Step
	changed := false
	bin := packageTailscaled
	switch {
	case art.Tailscaled.SHA256 != "":
		bin = TailscaledPath
		if st.Files[TailscaledPath].SHA256 != art.Tailscaled.SHA256 || st.Files[TailscalePath].SHA256 != art.Tailscale.SHA256 {
			why := "not installed"
			if _, ok := st.Files[TailscaledPath]; ok {
				why = "installed build differs"
			}
			steps = append(steps, &tsBinaryStep{art: art, why: why})
			changed = true
		}
	case st.Tailscale.Installed == "":
		steps = append(steps, &tsPackageStep{cmd: packageInstall(pi.Facts.OS.ID)})
		changed = true
	case st.Files[TailscaledPath].SHA256 != "":
		bin = TailscaledPath
	}
	path := initSys.ServicePath(initSys.TailscaledName())
	svc := initSys.TailscaledService(bin, ts.Env)
	if st.Files[path].SHA256 != sha(svc) {
		steps = append(steps, &fileStep{path: path, mode: 0o755, content: svc, title: "write " + initSys.Name() + " service " + initSys.TailscaledName(), why: whyFile(st, path, true, ""), old: st.Files[path].SHA256})
		changed = true
	}
	switch {
	case changed:
		steps = append(steps, &tsStartStep{init: initSys, why: "tailscale or its service changed"})
	case !st.Tailscale.Running:
		steps = append(steps, &tsStartStep{init: initSys, why: "tailscaled is not running"})
	case !st.Enabled[initSys.TailscaledName()]:
		steps = append(steps, &tsStartStep{init: initSys, why: "tailscaled not enabled at boot"})
	}
	if integrated(farm) {
		return steps // k3s logs the phone in (vpnAuthStep)
	}
	want := controlURL(ts.LoginServer)
	t := st.Tailscale
	if !joined(t, pi.Phone.Name, want) {
		steps = append(steps, &tsUpStep{phone: pi.Phone.Name, loginServer: ts.LoginServer, acceptRoutes: ts.AcceptRoutes, tags: ts.Tags, init: initSys,
			forceReauth: t.elsewhere(want), why: joinWhy(t, pi.Phone.Name, want)})
	}
	return steps
}

// knownInit: phonefarm manages services under the init system facts name.
func knownInit(name string) bool {
	_, ok := initSystemFor(name)
	return ok
}
