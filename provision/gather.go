package provision

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/phonefarm/phonefarm/checks"
	"github.com/phonefarm/phonefarm/facts"
	"github.com/phonefarm/phonefarm/internal/parallel"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/kernelcfg"
	"github.com/phonefarm/phonefarm/transport"
)

// Gatherer collects what Plan needs. It is the only part of provisioning
// that reads the phones before planning.
type Gatherer struct {
	Farm *inventory.Farm
	Open func(ctx context.Context, p *inventory.Phone) (transport.Host, error)
	// Parallel bounds how many phones are read at once.
	Parallel int
	// SkipChecks lists preflight check IDs whose failure does not block
	// a phone; "all" skips every check.
	SkipChecks []string
	Now        func() time.Time
	CacheDir   string
	HTTP       *http.Client
	Log        *slog.Logger
	// LookupEnv reads env: secrets (os.LookupEnv when nil).
	LookupEnv func(string) (string, bool)
}

// Gathered is the input of a plan and the connections it was read over,
// which Apply reuses. Close them when done.
type Gathered struct {
	Input Input
	Hosts map[string]transport.Host
}

// Close closes every connection.
func (g *Gathered) Close() {
	for _, h := range g.Hosts {
		h.Close()
	}
}

// Gather reads the phones (all with a role when names is empty).
func (g *Gatherer) Gather(ctx context.Context, phones []*inventory.Phone) (*Gathered, error) {
	out := &Gathered{Input: Input{Farm: g.Farm}, Hosts: map[string]transport.Host{}}
	var mu sync.Mutex
	profiles, err := kernelcfg.LookupProfiles(g.profiles())
	if err != nil {
		return nil, err
	}
	log := g.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	inputs := make([]PhoneInput, len(phones))
	_ = parallel.Each(ctx, len(phones), g.Parallel, func(ctx context.Context, i int) error {
		p := phones[i]
		in := PhoneInput{Phone: p}
		defer func() { inputs[i] = in }()
		if p.Role == "" {
			return nil
		}
		h, err := g.Open(ctx, p)
		if err != nil {
			in.Err = err
			return nil
		}
		mu.Lock()
		out.Hosts[p.Name] = h
		mu.Unlock()
		if in.Facts, err = facts.Gather(ctx, h); err != nil {
			in.Err = err
			return nil
		}
		if p.OS == inventory.OSAndroid {
			in.Agent, in.Err = ObserveAgent(ctx, h, agentDir(g.Farm), g.firstServerHost())
			return nil
		}
		if in.State, err = Observe(ctx, h); err != nil {
			in.Err = err
			return nil
		}
		in.Preflight, in.Notes, in.Err = g.preflight(ctx, h, p, in.Facts, profiles)
		return nil
	})
	out.Input.Phones = inputs
	log.Debug("read phones", "phones", len(phones), "elapsed", time.Since(start))

	// Binaries for the architectures that will get k3s.
	var arches []string
	for _, in := range inputs {
		if in.Err == nil && in.Phone.Role != "" && in.Phone.OS != inventory.OSAndroid && in.Facts.Arch != "" {
			arches = append(arches, in.Facts.Arch)
		}
	}
	k := g.Farm.K3s
	arts, err := Resolve(ctx, Source{Version: k.Version, ReleaseURL: k.Source.ReleaseURL, Files: g.files(), CacheDir: g.CacheDir, HTTP: g.HTTP}, arches)
	out.Input.Artifacts = arts
	if err != nil {
		return out, err
	}
	if out.Input.Tailscale, err = g.tailscaleBuilds(arches); err != nil {
		return out, err
	}
	if out.Input.HealthAgents, err = ResolveHealthAgents(g.Farm, g.CacheDir, arches); err != nil {
		return out, err
	}
	var androidArches []string
	for _, in := range inputs {
		if in.Err == nil && in.Phone.Role != "" && in.Phone.OS == inventory.OSAndroid && in.Facts.Arch != "" {
			androidArches = append(androidArches, in.Facts.Arch)
		}
	}
	if out.Input.Agents, err = ResolveAgentBinaries(g.Farm, g.CacheDir, androidArches); err != nil {
		return out, err
	}
	if out.Input.AirgapImages, err = ResolveAirgapImages(g.Farm, g.CacheDir, arches); err != nil {
		return out, err
	}
	if out.Input.Registries, err = RenderRegistries(ctx, g.Farm, g.LookupEnv); err != nil {
		return out, err
	}
	log.Debug("resolved k3s binaries", "arches", arches, "elapsed", time.Since(start))

	// The join token's hash and the API's view, through the first server.
	first := firstServerName(out.Input)
	if !k.Token.IsZero() {
		tok, err := k.Token.Resolve(ctx, g.LookupEnv)
		if err != nil {
			return out, fmt.Errorf("k3s.token: %w", err)
		}
		if err := CheckToken(string(tok)); err != nil {
			return out, fmt.Errorf("k3s.token (%s): %w", k.Token, err)
		}
		out.Input.TokenSHA256 = sha(append(tok, '\n'))
	}
	for _, in := range inputs {
		if in.Phone.Name != first || in.Err != nil {
			continue
		}
		if out.Input.TokenSHA256 == "" {
			out.Input.TokenSHA256 = in.State.Files[ServerTokenPath].SHA256
		}
		if in.State.K3sStarted != 0 {
			out.Input.Cluster, out.Input.ClusterErr = g.clusterFacts(ctx, out.Hosts[first], in)
		}
	}
	log.Debug("read cluster", "nodes", out.Input.Cluster != nil, "elapsed", time.Since(start))
	return out, nil
}

func (g *Gatherer) profiles() string {
	if g.Farm.Tailscale != nil {
		return "k3s,tailscale"
	}
	return "k3s"
}

// files resolves the inventory's local binaries relative to the inventory.
func (g *Gatherer) files() map[string]string {
	files := map[string]string{}
	for arch, p := range g.Farm.K3s.Source.Files {
		files[arch] = g.Farm.Resolve(p)
	}
	return files
}

// preflight runs the checks; failures block the phone unless skipped.
func (g *Gatherer) preflight(ctx context.Context, h transport.Host, p *inventory.Phone, f facts.Facts, profiles []kernelcfg.Profile) (string, []string, error) {
	if slices.Contains(g.SkipChecks, "all") {
		return "", []string{"preflight checks skipped"}, nil
	}
	o, err := checks.Observe(ctx, h, p.KernelConfig)
	if err != nil {
		return "", nil, err
	}
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	rep := checks.Evaluate(checks.Spec{Phone: p.Name, OS: p.OS, Role: p.Role, ClusterCIDR: g.Farm.K3s.ClusterCIDR, ServiceCIDR: g.Farm.K3s.ServiceCIDR, Profiles: profiles,
		Tailnet: g.Farm.Tailscale != nil, Peers: g.Farm.OthersWithRole(p.Name)}, f, o, now())
	var fails, notes []string
	for _, r := range rep.Results {
		if r.Status != checks.Fail {
			continue
		}
		if slices.Contains(g.SkipChecks, r.ID) {
			notes = append(notes, fmt.Sprintf("check %s failed (skipped): %s", r.ID, r.Message))
			continue
		}
		if why, ok := g.inventorySkips(r.ID); ok {
			notes = append(notes, fmt.Sprintf("check %s failed (skipped by the inventory: %s): %s", r.ID, why, r.Message))
			continue
		}
		if slices.Contains(checks.Advisory, r.ID) {
			notes = append(notes, fmt.Sprintf("check %s failed: %s", r.ID, r.Message))
			continue
		}
		fails = append(fails, r.ID+": "+r.Message)
	}
	return strings.Join(fails, "; "), notes, nil
}

// clusterFacts reads the nodes through the first server's API. When k3s
// runs there but its API does not answer from here, the reason is returned.
func (g *Gatherer) clusterFacts(ctx context.Context, h transport.Host, first PhoneInput) (*ClusterFacts, string) {
	kc, err := h.ReadFile(ctx, KubeconfigPath)
	if err != nil {
		return nil, fmt.Sprintf("k3s runs on %s but its kubeconfig cannot be read (%v): the nodes' state in the API is unknown", first.Phone.Name, err)
	}
	ip := NodeIP(first, g.Farm.Tailscale != nil)
	if ip == "" {
		return nil, "" // on a tailnet not yet joined: apply finds the address
	}
	url := "https://" + ip + ":6443"
	c, err := NewCluster(kc, url, g.Farm.Name)
	if err != nil {
		return nil, fmt.Sprintf("the kubeconfig k3s wrote on %s is not usable (%v): the nodes' state in the API is unknown", first.Phone.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cf, err := c.Facts(ctx)
	if err != nil {
		if g.Log != nil {
			g.Log.Debug("cluster API not reachable", "host", first.Phone.Name, "err", err)
		}
		why := fmt.Sprintf("the k3s API at %s does not answer from this machine (%v)", url, err)
		if g.Farm.Tailscale != nil {
			why += "; that is a tailnet address, so this machine must be on the tailnet too (or reach it through tailscaled's proxy with HTTPS_PROXY)"
		}
		return nil, why
	}
	return cf, ""
}

// tailscaleBuilds resolves the inventory's static tailscale builds.
func (g *Gatherer) tailscaleBuilds(arches []string) (map[string]TailscaleArtifact, error) {
	out := map[string]TailscaleArtifact{}
	if g.Farm.Tailscale == nil {
		return out, nil
	}
	for _, arch := range arches {
		dir, ok := g.Farm.Tailscale.Binaries[arch]
		if !ok {
			continue
		}
		dir = g.Farm.Resolve(dir)
		src := Source{Version: "(local)", CacheDir: g.CacheDir}
		ts, err := localArtifact(src, arch, filepath.Join(dir, "tailscale"))
		if err != nil {
			return nil, fmt.Errorf("tailscale.binaries.%s: %w", arch, err)
		}
		tsd, err := localArtifact(src, arch, filepath.Join(dir, "tailscaled"))
		if err != nil {
			return nil, fmt.Errorf("tailscale.binaries.%s: %w", arch, err)
		}
		out[arch] = TailscaleArtifact{Tailscale: ts, Tailscaled: tsd}
	}
	return out, nil
}

// firstServerHost is the address of the inventory's first server, toward
// which an Android phone's address is read.
func (g *Gatherer) firstServerHost() string {
	for _, p := range g.Farm.Phones {
		if p.Role == inventory.RoleServer && p.SSH != nil {
			return p.SSH.Host
		}
	}
	return ""
}

// inventorySkips says whether the inventory skips check id, and why.
func (g *Gatherer) inventorySkips(id string) (string, bool) {
	for _, c := range g.Farm.Checks.Skip {
		if c.ID == id {
			return c.Reason, true
		}
	}
	return "", false
}
