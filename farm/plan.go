package farm

import (
	"context"
	"fmt"
	"strings"

	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/provision"
)

// PlanOptions choose what to plan.
type PlanOptions struct {
	// Phones are the phones to plan, by name; every phone with a role when
	// empty.
	Phones []string
	// SkipChecks are preflight check IDs ("all" for every check) whose
	// failure does not block a phone.
	SkipChecks []string
}

// Planned is a plan and the connections its phones were read over, which
// Apply reuses. Close it when done.
type Planned struct {
	Plan *provision.Plan
	// Warnings are what the caller should know before applying: skipped
	// checks, an API that does not answer from this machine.
	Warnings []string

	farm *Farm
	got  *provision.Gathered
}

// Plan reads the phones (facts, installed k3s, managed files, the
// cluster's nodes) and computes what would converge them. A phone that
// cannot be read is in the plan as blocked (ErrUnreachable); an error is
// returned only when the farm as a whole cannot be planned (its k3s
// binaries cannot be had, a secret cannot be read).
func (f *Farm) Plan(ctx context.Context, o PlanOptions) (*Planned, error) {
	phones, err := f.Select(o.Phones)
	if err != nil {
		return nil, err
	}
	p := &Planned{farm: f}
	g := &provision.Gatherer{Farm: f.Inventory, Open: f.Connect, Parallel: f.opts.Parallel, SkipChecks: o.SkipChecks,
		Now: f.opts.Now, CacheDir: f.opts.CacheDir, HTTP: f.opts.HTTP, Log: f.opts.Log, LookupEnv: f.opts.LookupEnv}
	got, err := g.Gather(ctx, phones)
	if err != nil {
		if got != nil {
			got.Close()
		}
		return nil, err
	}
	p.got = got
	if got.Input.ClusterErr != "" {
		p.Warnings = append(p.Warnings, got.Input.ClusterErr)
	}
	p.Plan = provision.Compute(got.Input)
	// Said when it matters: a converged farm changes nothing either way.
	if len(o.SkipChecks) > 0 && p.Plan.Changes() > 0 {
		p.Warnings = append([]string{fmt.Sprintf("preflight checks skipped (%s): k3s may fail on these phones", strings.Join(o.SkipChecks, ", "))}, p.Warnings...)
	}
	return p, nil
}

// Farm is the farm the plan is of.
func (p *Planned) Farm() *Farm { return p.farm }

// Input is what the plan was computed from (facts and state per phone).
func (p *Planned) Input() provision.Input { return p.got.Input }

// Apply runs the plan. observe (optional) receives every event, from as
// many goroutines as phones are worked on at once. A phone that fails
// does not stop the others; Summary.Err says which failed and why.
func (p *Planned) Apply(ctx context.Context, observe func(provision.Event)) provision.Summary {
	f := p.farm
	env := provision.NewEnv(f.Inventory, p.Plan, p.got.Hosts, &provision.Env{Log: f.opts.Log, LookupEnv: f.opts.LookupEnv})
	r := &provision.Runner{Env: env, Hosts: p.got.Hosts, Parallel: f.opts.Parallel, Observe: observe, Now: f.opts.Now}
	return r.Apply(ctx, p.Plan)
}

// Close closes the connections to the phones.
func (p *Planned) Close() {
	if p.got != nil {
		p.got.Close()
	}
}

// Blocked lists the phones the plan cannot converge.
func (p *Planned) Blocked() []provision.PhonePlan {
	var out []provision.PhonePlan
	for _, pp := range p.Plan.Phones {
		if pp.Blocked != nil {
			out = append(out, pp)
		}
	}
	return out
}

// phonesOf are the inventory phones of names (all with a role when empty).
func (f *Farm) phonesOf(names []string) ([]*inventory.Phone, error) {
	phones, err := f.Select(names)
	if err != nil {
		return nil, err
	}
	if len(names) > 0 {
		return phones, nil
	}
	var out []*inventory.Phone
	for _, p := range phones {
		if p.Role != "" {
			out = append(out, p)
		}
	}
	return out, nil
}
