// Package provider is phonefarm's Pulumi provider: a phone farm as a
// Pulumi resource. It is no second engine: preview is phonefarm's plan
// (package farm), up applies it, refresh reads the phones and reports what
// drifted, destroy resets them.
//
// One resource, phonefarm:index:Farm, holds the inventory (the same YAML
// as farm.yaml, inline or as a file) and the values of its env:
// references, which Pulumi keeps as secrets; its state has each phone's
// role, labels and whether it matches the inventory, and the cluster's
// kubeconfig, a secret.
package provider

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"

	"github.com/phonefarm/phonefarm/farm"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/provision"
)

// Name is the provider's package name; the plugin binary is
// pulumi-resource-phonefarm.
const Name = "phonefarm"

// New builds the provider.
func New() (p.Provider, error) {
	return infer.NewProviderBuilder().
		WithResources(infer.Resource(&Farm{})).
		WithDisplayName("phonefarm").
		WithDescription("Phone farms: old phones as a k3s cluster, from an inventory.").
		WithNamespace("phonefarm").
		WithModuleMap(map[tokens.ModuleName]tokens.ModuleName{"provider": "index"}).
		WithGoImportPath("github.com/phonefarm/phonefarm/pulumi/sdk/go/phonefarm").
		Build()
}

// Run serves the provider to the Pulumi engine that started it.
func Run(ctx context.Context, version string) error {
	prov, err := New()
	if err != nil {
		return err
	}
	return p.RunProvider(ctx, Name, version, prov)
}

// Farm is a phone farm.
type Farm struct{}

// FarmArgs are a farm's inputs.
type FarmArgs struct {
	// Inventory is the farm's inventory as YAML, what farm.yaml holds.
	Inventory *string `pulumi:"inventory,optional"`
	// InventoryFile is the path of an inventory file instead.
	InventoryFile *string `pulumi:"inventoryFile,optional"`
	// Secrets are the values of the inventory's env: references (the
	// join token, tailnet keys, registry passwords), by variable name.
	Secrets map[string]string `pulumi:"secrets,optional" provider:"secret"`
	// SkipChecks are preflight check IDs whose failure does not block a
	// phone, as --skip-checks.
	SkipChecks []string `pulumi:"skipChecks,optional"`
	// Phones is what the inventory asks of each phone, filled in by Check
	// from the inventory: set beside the phones' state, it is what a
	// preview's diff shows a phone changing to.
	Phones map[string]Phone `pulumi:"phones,optional"`
}

const (
	inventoryDoc     = "The farm's inventory as YAML, the same as farm.yaml holds. Give this or inventoryFile."
	inventoryFileDoc = "The path of an inventory file (farm.yaml), instead of inventory."
	secretsDoc       = "Values of the inventory's env: references by variable name (join token, tailnet keys, registry credentials); kept as Pulumi secrets."
	skipChecksDoc    = "Preflight check IDs whose failure does not block a phone, as phonefarm apply --skip-checks."
)

func (a *FarmArgs) Annotate(an infer.Annotator) {
	an.Describe(&a.Inventory, inventoryDoc)
	an.Describe(&a.InventoryFile, inventoryFileDoc)
	an.Describe(&a.Secrets, secretsDoc)
	an.Describe(&a.SkipChecks, skipChecksDoc)
	an.Describe(&a.Phones, "Filled in by the provider from the inventory: what each phone should be (role, OS, labels, converged). Leave it unset; the inventory says it.")
}

// Phone is one phone's state.
type Phone struct {
	Role string `pulumi:"role"`
	OS   string `pulumi:"os"`
	// Converged: the phone matched the inventory when last read.
	Converged bool `pulumi:"converged"`
	// Labels are the node labels phonefarm manages.
	Labels map[string]string `pulumi:"labels,optional"`
	// Pending are the steps phonefarm's plan had for it, with why.
	Pending []string `pulumi:"pending,optional"`
	// Blocked says why the phone cannot be converged now.
	Blocked string `pulumi:"blocked,optional"`
}

func (ph *Phone) Annotate(an infer.Annotator) {
	an.Describe(&ph.Role, "server or agent.")
	an.Describe(&ph.OS, "postmarketos, linux or android.")
	an.Describe(&ph.Converged, "The phone matched the inventory when last read.")
	an.Describe(&ph.Labels, "The node labels phonefarm manages, as the cluster has them.")
	an.Describe(&ph.Pending, "The steps phonefarm's plan had for the phone when last read, each with why.")
	an.Describe(&ph.Blocked, "Why the phone cannot be converged now, when it cannot.")
}

// FarmState is a farm's state.
type FarmState struct {
	Inventory     *string           `pulumi:"inventory,optional"`
	InventoryFile *string           `pulumi:"inventoryFile,optional"`
	Secrets       map[string]string `pulumi:"secrets,optional" provider:"secret"`
	SkipChecks    []string          `pulumi:"skipChecks,optional"`
	// Name is the farm's (the cluster's) name.
	Name string `pulumi:"name"`
	// Phones by name.
	Phones map[string]Phone `pulumi:"phones"`
	// Kubeconfig is the cluster's admin kubeconfig.
	Kubeconfig string `pulumi:"kubeconfig" provider:"secret"`
}

// args are the inputs the state was made from, without the desired
// phones.
func (s FarmState) args() FarmArgs {
	return FarmArgs{Inventory: s.Inventory, InventoryFile: s.InventoryFile, Secrets: s.Secrets, SkipChecks: s.SkipChecks}
}

func (s *FarmState) Annotate(an infer.Annotator) {
	an.Describe(&s.Inventory, inventoryDoc)
	an.Describe(&s.InventoryFile, inventoryFileDoc)
	an.Describe(&s.Secrets, secretsDoc)
	an.Describe(&s.SkipChecks, skipChecksDoc)
	an.Describe(&s.Name, "The farm's name, as the inventory gives it; also the resource's ID.")
	an.Describe(&s.Phones, "Each phone: its role, OS, labels, and whether it matched the inventory when last read (the steps it lacked, or why it is blocked).")
	an.Describe(&s.Kubeconfig, "An admin kubeconfig for the cluster, pointing at the first server.")
}

func (f *Farm) Annotate(an infer.Annotator) {
	an.Describe(f, "A phone farm: the phones of an inventory converged to it by phonefarm (k3s on postmarketOS and Linux phones, the rootless agent on stock Android). Preview shows phonefarm's plan per phone with its reasons; destroy resets the phones.")
}

// open reads the inventory of args into a farm whose env: references
// resolve from args' secrets first.
func open(ctx context.Context, args FarmArgs) (*farm.Farm, error) {
	inv, err := load(args)
	if err != nil {
		return nil, err
	}
	secrets := args.Secrets
	lookup := func(k string) (string, bool) {
		if v, ok := secrets[k]; ok {
			return v, true
		}
		return os.LookupEnv(k)
	}
	f := farm.New(inv, farm.Options{LookupEnv: lookup})
	for _, w := range f.Warnings() {
		p.GetLogger(ctx).Warning(w.String())
	}
	return f, nil
}

// load reads the inventory of args, inline or from its file.
func load(args FarmArgs) (*inventory.Farm, error) {
	var inv *inventory.Farm
	var err error
	text, file := deref(args.Inventory), deref(args.InventoryFile)
	switch {
	case text != "" && file != "":
		return nil, errors.New("give inventory or inventoryFile, not both")
	case text != "":
		// Relative paths in it are relative to the program's directory.
		dir, _ := os.Getwd()
		inv, err = inventory.Parse(filepath.Join(dir, "<inventory>"), []byte(text))
	case file != "":
		inv, err = inventory.Load(file)
	default:
		return nil, errors.New("give inventory (the farm.yaml YAML) or inventoryFile")
	}
	return inv, err
}

// state describes the farm from a plan: each phone converged when it has
// no steps.
func state(args FarmArgs, f *farm.Farm, plan *provision.Plan, in provision.Input) FarmState {
	s := FarmState{Inventory: args.Inventory, InventoryFile: args.InventoryFile, Secrets: args.Secrets, SkipChecks: args.SkipChecks,
		Name: f.Name(), Phones: desired(f.Inventory)}
	for _, pp := range plan.Phones {
		ph := s.Phones[pp.Phone]
		if pp.Blocked != nil {
			ph.Converged, ph.Blocked = false, pp.Blocked.Error()
		}
		for _, st := range pp.Steps {
			ph.Converged = false
			ph.Pending = append(ph.Pending, st.Title()+" ("+st.Why()+")")
		}
		// What the cluster says the managed labels are.
		if in.Cluster != nil {
			if n, ok := in.Cluster.Nodes[pp.Phone]; ok {
				labels := map[string]string{}
				for _, k := range n.ManagedLabels {
					if v, ok := n.Labels[k]; ok {
						labels[k] = v
					}
				}
				if len(labels) > 0 || len(ph.Labels) > 0 {
					ph.Labels = labels
				}
			}
		}
		s.Phones[pp.Phone] = ph
	}
	return s
}

// desired is what the inventory asks of each phone: converged, with its
// role, OS and labels.
func desired(inv *inventory.Farm) map[string]Phone {
	out := map[string]Phone{}
	for _, ph := range inv.Phones {
		if ph.Role == "" {
			continue
		}
		out[ph.Name] = Phone{Role: ph.Role, OS: ph.OS, Converged: true, Labels: ph.Labels}
	}
	return out
}

// Check validates the inputs and fills in the phones the inventory
// describes. An inventory that does not load is a check failure, located
// as phonefarm's validation locates it.
func (*Farm) Check(ctx context.Context, req infer.CheckRequest) (infer.CheckResponse[FarmArgs], error) {
	args, failures, err := infer.DefaultCheck[FarmArgs](ctx, req.NewInputs)
	if err != nil || len(failures) > 0 {
		return infer.CheckResponse[FarmArgs]{Inputs: args, Failures: failures}, err
	}
	if args.Phones != nil {
		failures = append(failures, p.CheckFailure{Property: "phones", Reason: "phones is filled in from the inventory; describe the phones in inventory or inventoryFile"})
	}
	args.Phones = nil
	if args.Inventory == nil && args.InventoryFile == nil {
		// Not known yet (an output of another resource), or missing:
		// Create says which.
		return infer.CheckResponse[FarmArgs]{Inputs: args, Failures: failures}, nil
	}
	inv, err := load(args)
	if err != nil {
		prop := "inventory"
		if args.InventoryFile != nil {
			prop = "inventoryFile"
		}
		failures = append(failures, p.CheckFailure{Property: prop, Reason: err.Error()})
		return infer.CheckResponse[FarmArgs]{Inputs: args, Failures: failures}, nil
	}
	args.Phones = desired(inv)
	return infer.CheckResponse[FarmArgs]{Inputs: args, Failures: failures}, nil
}

// logPlan shows phonefarm's plan in Pulumi's output, per phone with its
// reasons.
func logPlan(ctx context.Context, plan *provision.Plan, warnings []string) {
	log := p.GetLogger(ctx)
	for _, w := range warnings {
		log.Warning(w)
	}
	for _, pp := range plan.Phones {
		switch {
		case pp.Blocked != nil:
			log.Warningf("%s: blocked: %v", pp.Phone, pp.Blocked)
		case len(pp.Steps) == 0:
			log.Infof("%s: no changes", pp.Phone)
		default:
			var lines []string
			for _, s := range pp.Steps {
				lines = append(lines, "  + "+s.Title()+"  ("+s.Why()+")")
			}
			log.Infof("%s: %d changes\n%s", pp.Phone, len(pp.Steps), strings.Join(lines, "\n"))
		}
	}
}

// converge plans the farm and, unless dryRun, applies the plan; the state
// says what the phones are (after applying: converged where it worked).
func converge(ctx context.Context, args FarmArgs, dryRun bool) (FarmState, error) {
	f, err := open(ctx, args)
	if err != nil {
		return FarmState{}, err
	}
	planned, err := f.Plan(ctx, farm.PlanOptions{SkipChecks: args.SkipChecks})
	if err != nil {
		return FarmState{}, err
	}
	defer planned.Close()
	logPlan(ctx, planned.Plan, planned.Warnings)
	s := state(args, f, planned.Plan, planned.Input())
	if dryRun {
		return s, nil
	}
	release, err := f.Lock(ctx, nil)
	if err != nil {
		return s, err
	}
	defer release()
	log := p.GetLogger(ctx)
	sum := planned.Apply(ctx, func(e provision.Event) {
		switch e := e.(type) {
		case provision.StepStarted:
			log.InfoStatusf("%s: (%d/%d) %s", e.Phone, e.Index+1, e.Total, e.Step.Title())
		case provision.StepNote:
			log.InfoStatusf("%s: %s", e.Phone, e.Message)
		}
	})
	for _, r := range sum.Phones {
		ph := s.Phones[r.Phone]
		if r.Outcome == provision.Changed || r.Outcome == provision.Unchanged {
			ph.Converged, ph.Pending, ph.Blocked = true, nil, ""
			ph.Labels = f.Inventory.Phones[phoneIndex(f, r.Phone)].Labels
		}
		s.Phones[r.Phone] = ph
	}
	if err := sum.Err(); err != nil {
		return s, fmt.Errorf("phonefarm apply: %w", err)
	}
	c, err := f.Cluster(ctx)
	if err != nil {
		return s, fmt.Errorf("read the kubeconfig: %w", err)
	}
	s.Kubeconfig = string(c.Kubeconfig)
	return s, nil
}

func phoneIndex(f *farm.Farm, name string) int {
	for i, ph := range f.Inventory.Phones {
		if ph.Name == name {
			return i
		}
	}
	return 0
}

// WireDependencies makes the kubeconfig secret in every output, whatever
// the inputs it came from; the rest flows as infer's defaults do (the
// secrets input stays secret in the state).
func (*Farm) WireDependencies(f infer.FieldSelector, _ *FarmArgs, state *FarmState) {
	f.OutputField(&state.Kubeconfig).AlwaysSecret()
}

// initFailed marks err as a partial apply: Pulumi keeps the state
// returned with it, and the error still says what failed.
func initFailed(err error) error {
	return fmt.Errorf("%w: %w", infer.ResourceInitFailedError{Reasons: []string{err.Error()}}, err)
}

func (*Farm) Create(ctx context.Context, req infer.CreateRequest[FarmArgs]) (infer.CreateResponse[FarmState], error) {
	s, err := converge(ctx, req.Inputs, req.DryRun)
	id := s.Name
	if id == "" {
		id = req.Name
	}
	if err != nil && !req.DryRun && s.Name != "" {
		// The phones keep what was applied; the state says what it is,
		// and the next up converges the rest.
		return infer.CreateResponse[FarmState]{ID: id, Output: s}, initFailed(err)
	}
	return infer.CreateResponse[FarmState]{ID: id, Output: s}, err
}

func (*Farm) Update(ctx context.Context, req infer.UpdateRequest[FarmArgs, FarmState]) (infer.UpdateResponse[FarmState], error) {
	s, err := converge(ctx, req.Inputs, req.DryRun)
	if s.Kubeconfig == "" {
		s.Kubeconfig = req.State.Kubeconfig
	}
	if err != nil && !req.DryRun && s.Name != "" {
		// As for Create: the state records what the phones are now.
		return infer.UpdateResponse[FarmState]{Output: s}, initFailed(err)
	}
	return infer.UpdateResponse[FarmState]{Output: s}, err
}

// Diff is phonefarm's plan for the new inputs: which phone would change
// and in what (from the steps' changes), and the inputs that changed.
func (*Farm) Diff(ctx context.Context, req infer.DiffRequest[FarmArgs, FarmState]) (infer.DiffResponse, error) {
	diff := map[string]p.PropertyDiff{}
	old, in := req.State.args(), req.Inputs
	if deref(old.Inventory) != deref(in.Inventory) {
		diff["inventory"] = p.PropertyDiff{Kind: p.Update, InputDiff: true}
	}
	if deref(old.InventoryFile) != deref(in.InventoryFile) {
		diff["inventoryFile"] = p.PropertyDiff{Kind: p.Update, InputDiff: true}
	}
	if !sameStrings(old.SkipChecks, in.SkipChecks) {
		diff["skipChecks"] = p.PropertyDiff{Kind: p.Update, InputDiff: true}
	}
	if !sameMap(old.Secrets, in.Secrets) {
		diff["secrets"] = p.PropertyDiff{Kind: p.Update, InputDiff: true}
	}
	f, err := open(ctx, in)
	if err != nil {
		return infer.DiffResponse{}, err
	}
	planned, err := f.Plan(ctx, farm.PlanOptions{SkipChecks: in.SkipChecks})
	if err != nil {
		return infer.DiffResponse{}, err
	}
	defer planned.Close()
	planDiff := phoneDiffs(planned.Plan, req.State)
	for k, v := range planDiff {
		diff[k] = v
	}
	return infer.DiffResponse{HasChanges: len(diff) > 0, DetailedDiff: diff}, nil
}

// phoneDiffs says, per phone with steps, what would change: a label by
// its key, anything else as the phone's convergence.
func phoneDiffs(plan *provision.Plan, old FarmState) map[string]p.PropertyDiff {
	out := map[string]p.PropertyDiff{}
	for _, pp := range plan.Phones {
		base := fmt.Sprintf("phones[%q]", pp.Phone)
		if _, known := old.Phones[pp.Phone]; !known && (pp.Blocked != nil || len(pp.Steps) > 0) {
			out[base] = p.PropertyDiff{Kind: p.Add}
			continue
		}
		for _, s := range pp.Steps {
			for _, c := range provision.Changes(s) {
				if _, key, ok := strings.Cut(c.Resource, " label "); ok && strings.HasPrefix(c.Resource, "node ") {
					kind := p.Update
					switch {
					case c.Old == "":
						kind = p.Add
					case c.New == "":
						kind = p.Delete
					}
					out[fmt.Sprintf("%s.labels[%q]", base, key)] = p.PropertyDiff{Kind: kind}
					continue
				}
				out[base+".converged"] = p.PropertyDiff{Kind: p.Update}
			}
		}
	}
	for name := range old.Phones {
		found := false
		for _, pp := range plan.Phones {
			found = found || pp.Phone == name
		}
		if !found {
			out[fmt.Sprintf("phones[%q]", name)] = p.PropertyDiff{Kind: p.Delete}
		}
	}
	return out
}

// Read reads the phones as they are: a phone that lost what the inventory
// gives it (k3s stopped, a label removed by hand) is not converged, with
// the steps that would repair it, which the next up applies.
func (*Farm) Read(ctx context.Context, req infer.ReadRequest[FarmArgs, FarmState]) (infer.ReadResponse[FarmArgs, FarmState], error) {
	// The inputs come with a refresh; without them, the state has them.
	args := req.Inputs
	if args.Inventory == nil && args.InventoryFile == nil {
		args = req.State.args()
	}
	f, err := open(ctx, args)
	if err != nil {
		return infer.ReadResponse[FarmArgs, FarmState]{}, err
	}
	planned, err := f.Plan(ctx, farm.PlanOptions{SkipChecks: args.SkipChecks})
	if err != nil {
		return infer.ReadResponse[FarmArgs, FarmState]{}, err
	}
	defer planned.Close()
	s := state(args, f, planned.Plan, planned.Input())
	s.Kubeconfig = req.State.Kubeconfig
	args.Phones = desired(f.Inventory)
	return infer.ReadResponse[FarmArgs, FarmState]{ID: req.ID, Inputs: args, State: s}, nil
}

// Delete resets the farm's phones: k3s, its data and phonefarm's files go;
// Android phones lose the agent.
func (*Farm) Delete(ctx context.Context, req infer.DeleteRequest[FarmState]) (infer.DeleteResponse, error) {
	f, err := open(ctx, req.State.args())
	if err != nil {
		return infer.DeleteResponse{}, err
	}
	release, err := f.Lock(ctx, nil)
	if err != nil {
		return infer.DeleteResponse{}, err
	}
	defer release()
	results, err := f.Reset(ctx, farm.ResetOptions{})
	if err != nil {
		return infer.DeleteResponse{}, err
	}
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.Phone, r.Err))
		} else {
			p.GetLogger(ctx).Infof("%s: reset", r.Phone)
		}
	}
	return infer.DeleteResponse{}, errors.Join(errs...)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func sameStrings(a, b []string) bool {
	a, b = append([]string{}, a...), append([]string{}, b...)
	sort.Strings(a)
	sort.Strings(b)
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
