package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/phonefarm/phonefarm/internal/parallel"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/provision"
	"github.com/phonefarm/phonefarm/transport"
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

// cacheDir is where downloads and hashes are kept.
func cacheDir() string {
	if d := os.Getenv("PHONEFARM_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "phonefarm")
	}
	return filepath.Join(os.TempDir(), "phonefarm-cache")
}

// planFarm reads the phones and computes the plan. The caller closes the
// returned connections.
func (e *env) planFarm(ctx context.Context, f *provisionFlags, names []string) (*inventory.Farm, *provision.Gathered, *provision.Plan, error) {
	farm, phones, err := f.farm.loadPhones(e, names)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(f.skipChecks) > 0 {
		fmt.Fprintf(e.stderr, "warning: preflight checks skipped (%s): k3s may fail on these phones\n", strings.Join(f.skipChecks, ", "))
	}
	conn := e.connector(farm)
	g := &provision.Gatherer{Farm: farm, Open: conn.Open, Parallel: f.parallel, SkipChecks: f.skipChecks, Now: e.now, CacheDir: cacheDir(), Log: e.log}
	got, err := g.Gather(ctx, phones)
	if err != nil {
		if got != nil {
			got.Close()
		}
		return nil, nil, nil, err
	}
	if got.Input.ClusterErr != "" {
		fmt.Fprintf(e.stderr, "warning: %s\n", got.Input.ClusterErr)
	}
	return farm, got, provision.Compute(got.Input), nil
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
			_, got, plan, err := e.planFarm(cmd.Context(), &f, args)
			if err != nil {
				return err
			}
			defer got.Close()
			return printPlan(e, f.out.format, plan)
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
			if !dryRun {
				unlock, err := lockFarm(f.farm.path)
				if err != nil {
					return err
				}
				defer unlock()
			}
			farm, got, plan, err := e.planFarm(ctx, &f, args)
			if err != nil {
				return err
			}
			defer got.Close()
			if dryRun {
				return printPlan(e, f.out.format, plan)
			}
			summary := e.runPlan(ctx, farm, got, plan, f.parallel)
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

func (e *env) runPlan(ctx context.Context, farm *inventory.Farm, got *provision.Gathered, plan *provision.Plan, par int) provision.Summary {
	env := provision.NewEnv(farm, plan, got.Hosts, &provision.Env{Log: e.log})
	lines := &lineProgress{w: e.stderr, now: e.now}
	observe := lines.observe
	var live *liveProgress
	if isTTY(e.stderr) {
		live = newLiveProgress(e.stderr, plan)
		observe = live.observe
	}
	r := &provision.Runner{Env: env, Hosts: got.Hosts, Parallel: par, Observe: observe, Now: e.now}
	s := r.Apply(ctx, plan)
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
			farm, err := farmF.load()
			if err != nil {
				return err
			}
			path, err := e.writeKubeconfig(cmd.Context(), farm, out)
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

// cluster is a client of the farm's API through the first server, and
// the farm's name.
func (e *env) cluster(ctx context.Context, farm *inventory.Farm) (*provision.Cluster, string, error) {
	var first *inventory.Phone
	for i := range farm.Phones {
		if farm.Phones[i].Role == inventory.RoleServer {
			first = &farm.Phones[i]
			break
		}
	}
	if first == nil {
		return nil, "", fmt.Errorf("%s has no phone with role server", farm.File())
	}
	h, err := e.connector(farm).Open(ctx, first)
	if err != nil {
		return nil, "", err
	}
	defer h.Close()
	st, err := provision.Observe(ctx, h)
	if err != nil {
		return nil, "", err
	}
	kc, err := h.ReadFile(ctx, provision.KubeconfigPath)
	if err != nil {
		return nil, "", fmt.Errorf("read k3s kubeconfig on %s (is k3s installed? run phonefarm apply): %w", first.Name, err)
	}
	ip := provision.NodeIP(provision.PhoneInput{Phone: first, State: st}, farm.Tailscale != nil)
	if ip == "" {
		return nil, "", fmt.Errorf("%s has not joined the tailnet yet (tailscale: %q, backend %q); run phonefarm apply", first.Name, st.Tailscale.Installed, st.Tailscale.BackendState)
	}
	name := farm.Name
	if name == "" {
		name = "phonefarm"
	}
	c, err := provision.NewCluster(kc, "https://"+ip+":6443", name)
	if err != nil {
		return nil, "", err
	}
	return c, name, nil
}

// writeKubeconfig fetches and rewrites the first server's kubeconfig.
func (e *env) writeKubeconfig(ctx context.Context, farm *inventory.Farm, out string) (string, error) {
	c, name, err := e.cluster(ctx, farm)
	if err != nil {
		return "", err
	}
	if out == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		out = filepath.Join(home, ".kube", "phonefarm-"+name+".yaml")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return "", err
	}
	abs, _ := filepath.Abs(out)
	return abs, writeFileAtomic(abs, c.Kubeconfig, 0o600)
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// deleteNode deletes an agent's node and waits (30 s at most) for k3s's
// finalizers to let it go; it returns what to say of it.
func deleteNode(ctx context.Context, c *provision.Cluster, name string) string {
	nodes := c.Client.CoreV1().Nodes()
	if err := nodes.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return ", no node to delete"
		}
		return fmt.Sprintf(" (node %s left in the API: %v)", name, err)
	}
	for range 60 {
		if _, err := nodes.Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return ", node deleted"
		}
		select {
		case <-ctx.Done():
			return ", node deletion requested"
		case <-time.After(500 * time.Millisecond):
		}
	}
	return ", node deletion requested (k3s has not released it yet)"
}

func newResetCmd(e *env) *cobra.Command {
	var farmF farmFlag
	var yes bool
	var par int
	cmd := &cobra.Command{
		Use:   "reset [PHONE...]",
		Short: "Stop k3s and remove it, its data and configuration from the phones",
		Long: `Reset stops k3s on the phones (all with a role, or the ones named) and
removes the binary, its data (/var/lib/rancher/k3s), its configuration and
phonefarm's firewall fragment. On Android phones it stops phonefarm's
agent, removes its directory and deletes its node. It asks for
confirmation unless --yes.`,
		Example:           "  phonefarm reset -f farm.yaml\n  phonefarm reset -f farm.yaml fajita --yes",
		ValidArgsFunction: phoneNames(&farmF),
		RunE: func(cmd *cobra.Command, args []string) error {
			farm, phones, err := farmF.loadPhones(e, args)
			if err != nil {
				return err
			}
			var names []string
			var targets []*inventory.Phone
			for _, p := range phones {
				if p.Role != "" || len(args) > 0 {
					targets = append(targets, p)
					names = append(names, p.Name)
				}
			}
			unlock, err := lockFarm(farmF.path)
			if err != nil {
				return err
			}
			defer unlock()
			if !yes {
				fmt.Fprintf(e.stderr, "This stops k3s and deletes its data on %d phone(s): %s.\nType yes to continue: ", len(names), strings.Join(names, ", "))
				var answer string
				if _, err := fmt.Fscanln(e.stdin, &answer); err != nil || answer != "yes" {
					fmt.Fprintln(e.stderr, "nothing was changed")
					return exitError{code: 1}
				}
			}
			conn := e.connector(farm)
			errs := make([]error, len(targets))
			_ = parallel.Each(cmd.Context(), len(targets), par, func(ctx context.Context, i int) error {
				var h transport.Host
				h, errs[i] = conn.Open(ctx, targets[i])
				if errs[i] != nil {
					return nil
				}
				defer h.Close()
				if targets[i].OS == inventory.OSAndroid {
					errs[i] = provision.ResetAgent(ctx, h, farm)
				} else {
					errs[i] = provision.Reset(ctx, h)
				}
				return nil
			})
			// An Android phone's node is the agent's alone: it goes with
			// the agent (k3s nodes stay until the cluster forgets them).
			var android []string
			for i, p := range targets {
				if errs[i] == nil && p.OS == inventory.OSAndroid {
					android = append(android, p.Name)
				}
			}
			nodeNote := map[string]string{}
			if len(android) > 0 {
				c, _, err := e.cluster(cmd.Context(), farm)
				for _, n := range android {
					switch {
					case err != nil:
						nodeNote[n] = fmt.Sprintf(" (node %s left in the API: %v; kubectl delete node %s)", n, err, n)
					default:
						nodeNote[n] = deleteNode(cmd.Context(), c, n)
					}
				}
			}
			failed := false
			for i, p := range targets {
				if errs[i] != nil {
					failed = true
					fmt.Fprintf(e.stdout, "%s: failed: %v\n", p.Name, errs[i])
				} else {
					fmt.Fprintf(e.stdout, "%s: reset%s\n", p.Name, nodeNote[p.Name])
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
