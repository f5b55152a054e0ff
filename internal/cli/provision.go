package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/phonefarm/phonefarm/farm"
	"github.com/phonefarm/phonefarm/provision"
)

// provisionFlags are shared by plan and apply.
type provisionFlags struct {
	farm       farmFlag
	out        outputFlag
	parallel   int
	skipChecks []string
}

func (f *provisionFlags) register(cmd *cobra.Command) {
	f.farm.register(cmd)
	f.out.register(cmd, "text", "json")
	cmd.Flags().IntVar(&f.parallel, "parallel", 10, "phones to work on at once")
	cmd.Flags().StringSliceVar(&f.skipChecks, "skip-checks", nil, "install even where these preflight checks fail (check IDs, or all)")
	cmd.Flags().Lookup("skip-checks").NoOptDefVal = "all"
}

// open opens the farm for plan and apply, prints its warnings and checks
// the phones named exist.
func (f *provisionFlags) open(e *env, names []string) (*farm.Farm, error) {
	fm, _, err := f.farm.openPhones(e, names, f.parallel)
	return fm, err
}

// plan plans the farm; the caller closes the result. Warnings go to
// stderr.
func (e *env) plan(ctx context.Context, fm *farm.Farm, f *provisionFlags, names []string) (*farm.Planned, error) {
	p, err := fm.Plan(ctx, farm.PlanOptions{Phones: names, SkipChecks: f.skipChecks})
	if err != nil {
		return nil, err
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	return p, nil
}

type planJSON struct {
	Phone   string     `json:"phone"`
	Role    string     `json:"role"`
	Stage   string     `json:"stage"`
	NodeIP  string     `json:"nodeIP,omitempty"`
	Blocked string     `json:"blocked,omitempty"`
	Notes   []string   `json:"notes,omitempty"`
	Steps   []stepJSON `json:"steps"`
}

type stepJSON struct {
	Title   string             `json:"title"`
	Why     string             `json:"why"`
	Changes []provision.Change `json:"changes"`
}

func planToJSON(p *provision.Plan) []planJSON {
	out := []planJSON{}
	for _, pp := range p.Phones {
		j := planJSON{Phone: pp.Phone, Role: pp.Role, Stage: pp.Stage.String(), NodeIP: pp.NodeIP, Blocked: errText(pp.Blocked), Notes: pp.Notes, Steps: []stepJSON{}}
		for _, s := range pp.Steps {
			j.Steps = append(j.Steps, stepJSON{Title: s.Title(), Why: s.Why(), Changes: provision.Changes(s)})
		}
		out = append(out, j)
	}
	return out
}

func writePlan(w io.Writer, p *provision.Plan) {
	blocked := 0
	for _, pp := range p.Phones {
		head := fmt.Sprintf("%s (%s", pp.Phone, pp.Stage)
		if pp.NodeIP != "" {
			head += ", " + pp.NodeIP
		}
		head += ")"
		switch {
		case pp.Blocked != nil:
			blocked++
			fmt.Fprintf(w, "%s: blocked: %s\n", head, pp.Blocked)
		case len(pp.Steps) == 0:
			fmt.Fprintf(w, "%s: no changes\n", head)
		default:
			fmt.Fprintf(w, "%s: %d changes\n", head, len(pp.Steps))
			for _, s := range pp.Steps {
				fmt.Fprintf(w, "  + %s  (%s)\n", s.Title(), s.Why())
			}
		}
		for _, n := range pp.Notes {
			fmt.Fprintf(w, "  ! %s\n", n)
		}
	}
	switch {
	case p.Changes() == 0 && blocked == 0:
		fmt.Fprintln(w, "No changes: the farm matches the inventory.")
	default:
		fmt.Fprintf(w, "Plan: %d changes on %d phones", p.Changes(), len(p.Phones)-blocked)
		if blocked > 0 {
			fmt.Fprintf(w, ", %d blocked", blocked)
		}
		fmt.Fprintln(w, ".")
	}
}

func newPlanCmd(e *env) *cobra.Command {
	var f provisionFlags
	cmd := &cobra.Command{
		Use:   "plan [PHONE...]",
		Short: "Show what apply would change on each phone, and why",
		Long: `Plan reads each phone (facts, installed k3s, managed files, the cluster's
nodes) and prints, per phone, the steps that would converge it to the
inventory and why each is needed. "No changes" means the farm matches.
The exit status is 1 when a phone is blocked (apply could not converge
it), so scripts can tell a plan that can be applied whole.`,
		Example:           "  phonefarm plan -f farm.yaml\n  phonefarm plan -f farm.yaml -o json",
		ValidArgsFunction: phoneNames(&f.farm),
		RunE: func(cmd *cobra.Command, args []string) error {
			fm, err := f.open(e, args)
			if err != nil {
				return err
			}
			p, err := e.plan(cmd.Context(), fm, &f, args)
			if err != nil {
				return err
			}
			defer p.Close()
			return printPlan(e, f.out.format, p.Plan)
		},
	}
	f.register(cmd)
	return cmd
}

// printPlan writes the plan; a plan with a blocked phone is exit status 1.
func printPlan(e *env, format string, plan *provision.Plan) error {
	if format == "json" {
		if err := writeJSON(e.stdout, planToJSON(plan)); err != nil {
			return err
		}
	} else {
		writePlan(e.stdout, plan)
	}
	for _, pp := range plan.Phones {
		if pp.Blocked != nil {
			return exitError{code: 1}
		}
	}
	return nil
}

func newApplyCmd(e *env) *cobra.Command {
	var f provisionFlags
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply [PHONE...]",
		Short: "Converge the phones to the inventory: firewall, k3s binary, config, service",
		Long: `Apply computes the plan and runs it: the first server initialises the
cluster, other servers join one at a time, then agents join in parallel.
Each phone is checked first (--skip-checks to override). A phone that fails
or cannot be reached is reported and the others still converge; the exit
status is then 1. Running apply again on a converged farm changes nothing.`,
		Example:           "  phonefarm apply -f farm.yaml\n  phonefarm apply -f farm.yaml --dry-run\n  phonefarm apply -f farm.yaml --skip-checks=kernel-config",
		ValidArgsFunction: phoneNames(&f.farm),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			fm, err := f.open(e, args)
			if err != nil {
				return err
			}
			if !dryRun {
				release, err := fm.Lock(ctx, args)
				if err != nil {
					return err
				}
				defer release()
			}
			p, err := e.plan(ctx, fm, &f, args)
			if err != nil {
				return err
			}
			defer p.Close()
			if dryRun {
				return printPlan(e, f.out.format, p.Plan)
			}
			summary := e.runPlan(ctx, p)
			if f.out.format == "json" {
				if err := writeJSON(e.stdout, summary.Phones); err != nil {
					return err
				}
			} else {
				writeSummary(e.stdout, summary)
			}
			if ctx.Err() != nil {
				fmt.Fprintln(e.stderr, "interrupted: phones keep what was applied so far; run apply again to converge")
				return exitError{code: 130}
			}
			if summary.Err() != nil {
				return exitError{code: 1}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	return cmd
}

// runPlan applies a plan, showing its progress on stderr: a line per
// event, or a live view on a terminal.
func (e *env) runPlan(ctx context.Context, p *farm.Planned) provision.Summary {
	lines := &lineProgress{w: e.stderr, now: e.now}
	observe := lines.observe
	var live *liveProgress
	if isTTY(e.stderr) {
		live = newLiveProgress(e.stderr, p.Plan)
		observe = live.observe
	}
	s := p.Apply(ctx, observe)
	if live != nil {
		live.stop()
	}
	return s
}

func writeSummary(w io.Writer, s provision.Summary) {
	tw := newTable(w)
	fmt.Fprintln(tw, "PHONE\tRESULT\tSTEPS\tTIME\tREASON")
	for _, r := range s.Phones {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", r.Phone, r.Outcome, r.Applied, r.Elapsed.Round(100*time.Millisecond), r.Reason)
	}
	tw.Flush()
}

// lineProgress prints one log line per event, for logs and CI.
type lineProgress struct {
	mu   sync.Mutex
	w    io.Writer
	now  func() time.Time
	last map[string]int64
}

func (p *lineProgress) observe(ev provision.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at := p.now().Format("15:04:05")
	switch ev := ev.(type) {
	case provision.StepStarted:
		fmt.Fprintf(p.w, "%s [%s] (%d/%d) %s\n", at, ev.Phone, ev.Index+1, ev.Total, ev.Step.Title())
		delete(p.last, ev.Phone)
	case provision.Uploaded:
		if p.last == nil {
			p.last = map[string]int64{}
		}
		// A line per quarter of the upload.
		if q := ev.Done * 4 / max(ev.Total, 1); q > p.last[ev.Phone] {
			p.last[ev.Phone] = q
			fmt.Fprintf(p.w, "%s [%s]   uploaded %d/%d MB\n", at, ev.Phone, ev.Done>>20, ev.Total>>20)
		}
	case provision.StepNote:
		fmt.Fprintf(p.w, "%s [%s]   %s\n", at, ev.Phone, ev.Message)
	case provision.PhoneDone:
		r := ev.Result
		msg := string(r.Outcome)
		if r.Reason != "" {
			msg += ": " + r.Reason
		}
		fmt.Fprintf(p.w, "%s [%s] %s\n", at, r.Phone, msg)
	}
}

// liveProgress keeps one line per phone on a terminal, redrawn in place,
// with a bar for uploads.
type liveProgress struct {
	mu     sync.Mutex
	w      io.Writer
	phones []string
	lines  map[string]string
	drawn  int
	done   chan struct{}
}

func newLiveProgress(w io.Writer, plan *provision.Plan) *liveProgress {
	lp := &liveProgress{w: w, lines: map[string]string{}, done: make(chan struct{})}
	for _, pp := range plan.Phones {
		lp.phones = append(lp.phones, pp.Phone)
		lp.lines[pp.Phone] = "waiting"
	}
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-lp.done:
				return
			case <-t.C:
				lp.draw()
			}
		}
	}()
	return lp
}

func (lp *liveProgress) set(phone, line string) {
	lp.mu.Lock()
	lp.lines[phone] = line
	lp.mu.Unlock()
}

func (lp *liveProgress) observe(ev provision.Event) {
	switch ev := ev.(type) {
	case provision.StepStarted:
		lp.set(ev.Phone, fmt.Sprintf("(%d/%d) %s", ev.Index+1, ev.Total, ev.Step.Title()))
	case provision.Uploaded:
		const width = 30
		fill := int(ev.Done * width / max(ev.Total, 1))
		lp.set(ev.Phone, fmt.Sprintf("uploading [%s%s] %d/%d MB", strings.Repeat("#", fill), strings.Repeat(".", width-fill), ev.Done>>20, ev.Total>>20))
	case provision.StepNote:
		lp.set(ev.Phone, ev.Message)
	case provision.PhoneDone:
		line := string(ev.Result.Outcome)
		if ev.Result.Reason != "" {
			line += ": " + ev.Result.Reason
		}
		lp.set(ev.Result.Phone, line)
	}
}

func (lp *liveProgress) draw() {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.drawn > 0 {
		fmt.Fprintf(lp.w, "\x1b[%dA", lp.drawn)
	}
	for _, p := range lp.phones {
		fmt.Fprintf(lp.w, "\x1b[2K%-12s %s\n", p, lp.lines[p])
	}
	lp.drawn = len(lp.phones)
}

func (lp *liveProgress) stop() {
	close(lp.done)
	lp.draw()
}

func newKubeconfigCmd(e *env) *cobra.Command {
	var farmF farmFlag
	var out string
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Write a kubeconfig for the farm's cluster",
		Long: `Kubeconfig fetches k3s's admin kubeconfig from the first server and points
it at the server's reachable address. It holds admin credentials, so it is
written to a file (mode 0600), never to the terminal.`,
		Example: "  phonefarm kubeconfig -f farm.yaml\n  phonefarm kubeconfig -f farm.yaml --out ./kubeconfig && kubectl --kubeconfig ./kubeconfig get nodes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fm, err := farmF.open(e)
			if err != nil {
				return err
			}
			path, err := fm.WriteKubeconfig(cmd.Context(), out)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s\nexport KUBECONFIG=%s\n", path, path)
			return nil
		},
	}
	farmF.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "file to write (default ~/.kube/phonefarm-NAME.yaml)")
	return cmd
}

func newResetCmd(e *env) *cobra.Command {
	var farmF farmFlag
	var yes, tailnet bool
	var par int
	cmd := &cobra.Command{
		Use:   "reset [PHONE...]",
		Short: "Stop k3s and remove it, its data and configuration from the phones",
		Long: `Reset stops k3s on the phones (all with a role, or the ones named) and
removes the binary, its data (/var/lib/rancher/k3s), its configuration and
phonefarm's firewall fragment. On Android phones it stops phonefarm's
agent, removes its directory and deletes its node. With --tailnet (asked
when the farm has a tailnet) it also logs the phones out of the tailnet,
stops tailscaled and removes the tailscale phonefarm installed; a tailscale
package from the phone's package manager stays. It asks for confirmation
unless --yes.`,
		Example:           "  phonefarm reset -f farm.yaml\n  phonefarm reset -f farm.yaml fajita --yes",
		ValidArgsFunction: phoneNames(&farmF),
		RunE: func(cmd *cobra.Command, args []string) error {
			fm, phones, err := farmF.openPhones(e, args, par)
			if err != nil {
				return err
			}
			var names []string
			for _, p := range phones {
				if p.Role != "" || len(args) > 0 {
					names = append(names, p.Name)
				}
			}
			release, err := fm.Lock(cmd.Context(), names)
			if err != nil {
				return err
			}
			defer release()
			in := bufio.NewReader(e.stdin)
			ask := func(q string) bool {
				fmt.Fprint(e.stderr, q)
				answer, _ := in.ReadString('\n')
				return strings.TrimSpace(answer) == "yes"
			}
			if !yes && !ask(fmt.Sprintf("This stops k3s and deletes its data on %d phone(s): %s.\nType yes to continue: ", len(names), strings.Join(names, ", "))) {
				fmt.Fprintln(e.stderr, "nothing was changed")
				return exitError{code: 1}
			}
			// The tailnet too: --tailnet, or asked when the farm has one.
			if fm.Inventory.Tailscale != nil && !tailnet && !yes {
				tailnet = ask("Also log them out of the tailnet and remove the tailscale phonefarm installed? Type yes to do so: ")
			}
			results, err := fm.Reset(cmd.Context(), farm.ResetOptions{Phones: names, Tailnet: tailnet})
			if err != nil {
				return err
			}
			failed := false
			for _, r := range results {
				switch {
				case r.Err != nil:
					failed = true
					fmt.Fprintf(e.stdout, "%s: failed: %v\n", r.Phone, r.Err)
				case r.Node != "":
					fmt.Fprintf(e.stdout, "%s: reset, %s\n", r.Phone, r.Node)
				case r.Tailnet != "":
					fmt.Fprintf(e.stdout, "%s: reset, %s\n", r.Phone, r.Tailnet)
				default:
					fmt.Fprintf(e.stdout, "%s: reset\n", r.Phone)
				}
			}
			if failed {
				return exitError{code: 1}
			}
			return nil
		},
	}
	farmF.register(cmd)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&tailnet, "tailnet", false, "also log the phones out of the tailnet and remove the tailscale phonefarm installed (asked when the farm has a tailnet)")
	cmd.Flags().IntVar(&par, "parallel", 10, "phones to reset at once")
	return cmd
}

// errText is err's message, "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
