package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/phonefarm/phonefarm/internal/parallel"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport"
)

// Outcome of one phone.
type Outcome string

const (
	Unchanged Outcome = "unchanged"
	Changed   Outcome = "changed"
	Failed    Outcome = "failed"
	Blocked   Outcome = "blocked"
	// Interrupted: apply was cancelled before the phone's last step.
	Interrupted Outcome = "interrupted"
)

// PhoneResult is what happened to one phone.
type PhoneResult struct {
	Phone   string        `json:"phone"`
	Outcome Outcome       `json:"outcome"`
	Applied int           `json:"applied"`
	Reason  string        `json:"reason,omitempty"`
	Elapsed time.Duration `json:"elapsed"`
	Err     error         `json:"-"`
}

// Summary is the outcome of an apply.
type Summary struct {
	Phones []PhoneResult
}

// Err joins the failures, one per failed, blocked or interrupted phone,
// each wrapping the phone's error: errors.Is finds ErrBlocked,
// ErrUnreachable, ErrPreflight, ErrStepFailed or ErrInterrupted (and a
// step's own error) through it.
func (s Summary) Err() error {
	var errs []error
	for _, r := range s.Phones {
		if r.Outcome == Failed || r.Outcome == Blocked || r.Outcome == Interrupted {
			err := r.Err
			if err == nil {
				err = errors.New(r.Reason)
			}
			errs = append(errs, fmt.Errorf("%s: %w", r.Phone, err))
		}
	}
	return errors.Join(errs...)
}

// Runner applies plans.
type Runner struct {
	Env      *Env
	Hosts    map[string]transport.Host // open connections, by phone
	Parallel int
	// Observe receives every Event, concurrently (see Event); optional.
	Observe func(Event)
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) emit(e Event) {
	if r.Observe != nil {
		r.Observe(e)
	}
}

// phase announces a phase and its phones that still have work there.
func (r *Runner) phase(ph Phase, ps []*phoneRun) {
	var names []string
	for _, p := range ps {
		if !p.done() {
			names = append(names, p.pp.Phone)
		}
	}
	if len(names) > 0 {
		r.emit(PhaseStarted{Phase: ph, Phones: names, At: r.now()})
	}
}

// joinsCluster marks steps that depend on the cluster (the join token, the
// service start, registration, labels); they run in stage order. The other
// steps (firewall, binary, config, service files) only touch their own
// phone, so every phone does them at once first.
type joinsCluster interface{ joinsCluster() }

func (*tokenStep) joinsCluster()      {}
func (*restartStep) joinsCluster()    {}
func (*readyStep) joinsCluster()      {}
func (*agentTokenStep) joinsCluster() {}
func (*agentStartStep) joinsCluster() {}
func (*labelStep) joinsCluster()      {}

// settles marks steps that wait for or act on a registered node; once a
// phone's k3s is started they can run alongside everything else.
type settles interface{ settles() }

func (*readyStep) settles() {}
func (*labelStep) settles() {}

func isJoin(s Step) bool   { _, ok := s.(joinsCluster); return ok }
func isSettle(s Step) bool { _, ok := s.(settles); return ok }

// phoneRun is one phone's progress through its steps.
type phoneRun struct {
	pp     PhonePlan
	next   int
	res    PhoneResult
	start  time.Time
	target *Target // kept across phases: a restart's time is read by the wait for Ready
}

func (p *phoneRun) done() bool {
	return p.res.Outcome == Failed || p.res.Outcome == Blocked || p.next == len(p.pp.Steps)
}

// Apply runs the plan in phases: every phone's local steps at once; the
// first server starts; joining servers, one at a time and each until Ready
// (etcd grows one member at a time); agents start together; then every
// phone's remaining waits for Ready and label changes run at once. A
// rolling upgrade instead takes phones one at a time, servers first, each
// until Ready. A phone that fails does not stop independent phones; when
// the first server fails, nothing can join.
func (r *Runner) Apply(ctx context.Context, plan *Plan) Summary {
	runs := make([]*phoneRun, len(plan.Phones))
	byStage := map[Stage][]*phoneRun{}
	for i, pp := range plan.Phones {
		p := &phoneRun{pp: pp, res: PhoneResult{Phone: pp.Phone, Outcome: Unchanged}, start: r.now()}
		if pp.Blocked != nil {
			p.res.Outcome, p.res.Reason, p.res.Err = Blocked, pp.Blocked.Error(), pp.Blocked
		}
		runs[i] = p
		byStage[pp.Stage] = append(byStage[pp.Stage], p)
	}
	all := func(ps []*phoneRun, limit int, until func(Step) bool) {
		_ = parallel.Each(ctx, len(ps), limit, func(ctx context.Context, i int) error {
			r.run(ctx, ps[i], until)
			return nil
		})
	}
	never := func(Step) bool { return false }
	first, servers, agents := byStage[StageFirstServer], byStage[StageServers], byStage[StageAgents]

	if plan.Rolling {
		r.phase(PhasePrepare, runs)
		all(runs, r.Parallel, isJoin)
		r.phase(PhaseRolling, runs)
		all(first, 1, never)
		r.blockIfFirstFailed(first, append(servers, agents...))
		all(servers, 1, never)
		all(agents, 1, never)
	} else {
		r.converge(ctx, runs, first, servers, agents)
		r.phase(PhaseSettle, runs)
		all(runs, r.Parallel, never)
	}
	out := Summary{}
	for _, p := range runs {
		if !p.done() {
			p.res.Outcome = Interrupted
			p.res.Reason = "stopped before: " + p.pp.Steps[p.next].Title()
			p.res.Err = fmt.Errorf("%w %s", ErrInterrupted, p.res.Reason)
		}
		p.res.Elapsed = r.now().Sub(p.start)
		r.emit(PhoneDone{Result: p.res})
		out.Phones = append(out.Phones, p.res)
	}
	return out
}

// converge runs the phones' steps up to their waits for Ready, each phone
// as soon as what it depends on is there: every phone uploads at once
// (Parallel at a time); the first server starts as soon as its own files
// are in place, while the others still upload; agents join the moment the
// first server has started (the join token exists); other servers join
// one at a time once the first server is Ready (etcd grows one member at
// a time). When the first server fails, the others are blocked.
func (r *Runner) converge(ctx context.Context, runs, first, servers, agents []*phoneRun) {
	never := func(Step) bool { return false }
	started := make(chan struct{}) // the first server's k3s runs, or it failed
	ready := make(chan struct{})   // the first server is Ready, or it failed
	sem := make(chan struct{}, max(r.Parallel, 1))
	local := func(p *phoneRun) bool {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		defer func() { <-sem }()
		r.run(ctx, p, isJoin)
		return true
	}
	wait := func(c chan struct{}) bool {
		select {
		case <-c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var serversOnce, agentsOnce sync.Once
	r.phase(PhasePrepare, runs)
	var wg sync.WaitGroup
	if len(first) == 0 {
		close(started)
		close(ready)
	}
	for _, p := range first {
		wg.Add(1)
		go func() {
			defer wg.Done()
			closed := false
			defer func() {
				if !closed {
					close(started)
				}
				close(ready)
			}()
			if !local(p) {
				return
			}
			r.phase(PhaseFirstServer, first)
			r.run(ctx, p, isSettle)
			close(started)
			closed = true
			if len(servers) > 0 {
				r.run(ctx, p, never) // joiners need a Ready first server
			}
		}()
	}
	// Joining servers take turns in the plan's order: each after the one
	// before it is Ready (or gave up).
	turn := ready
	for _, p := range servers {
		mine, done := turn, make(chan struct{})
		turn = done
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done)
			if !local(p) || !wait(mine) || r.heldByFirst(first, p) {
				return
			}
			serversOnce.Do(func() { r.phase(PhaseServers, servers) })
			r.run(ctx, p, never)
		}()
	}
	for _, p := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !local(p) || !wait(started) || r.heldByFirst(first, p) {
				return
			}
			agentsOnce.Do(func() { r.phase(PhaseAgents, agents) })
			r.run(ctx, p, isSettle)
		}()
	}
	wg.Wait()
}

// heldByFirst blocks p when the first server did not get its cluster
// going, and says so.
func (r *Runner) heldByFirst(first []*phoneRun, p *phoneRun) bool {
	r.blockIfFirstFailed(first, []*phoneRun{p})
	return p.res.Outcome == Blocked
}

// blockIfFirstFailed blocks the other phones when the first server did not
// get its cluster going.
func (r *Runner) blockIfFirstFailed(first, others []*phoneRun) {
	for _, f := range first {
		if f.res.Outcome != Failed && f.res.Outcome != Blocked {
			continue
		}
		for _, o := range others {
			if o.res.Outcome != Failed && o.res.Outcome != Blocked {
				why := "the first server " + f.pp.Phone + " did not converge"
				o.res.Outcome, o.res.Reason, o.res.Err = Blocked, why, &BlockedError{Kind: ErrBlocked, Reason: why, Err: f.res.Err}
			}
		}
	}
}

// run applies a phone's next steps until one matches until (or the end).
func (r *Runner) run(ctx context.Context, p *phoneRun, until func(Step) bool) {
	if p.done() {
		return
	}
	if p.target == nil {
		p.target = &Target{Phone: p.pp.Phone, Host: r.Hosts[p.pp.Phone], Env: r.Env}
		if r.Observe != nil {
			p.target.Progress = func(done, total int64) { r.emit(Uploaded{Phone: p.pp.Phone, Done: done, Total: total}) }
			p.target.Note = func(msg string) { r.emit(StepNote{Phone: p.pp.Phone, Message: msg, At: r.now()}) }
		}
	}
	t := p.target
	for ; p.next < len(p.pp.Steps); p.next++ {
		s := p.pp.Steps[p.next]
		if until(s) {
			return
		}
		started := r.now()
		r.emit(StepStarted{Phone: p.pp.Phone, Index: p.next, Total: len(p.pp.Steps), Step: s, At: started})
		err := s.Apply(ctx, t)
		r.emit(StepDone{Phone: p.pp.Phone, Index: p.next, Total: len(p.pp.Steps), Step: s, Err: err, Elapsed: r.now().Sub(started)})
		if err != nil {
			p.res.Outcome, p.res.Err = Failed, &StepError{Phone: p.pp.Phone, Step: s.Title(), Err: err}
			if ctx.Err() != nil {
				p.res.Outcome = Interrupted
				p.res.Err = fmt.Errorf("%w during %s: %w", ErrInterrupted, s.Title(), err)
			}
			p.res.Reason = fmt.Sprintf("%s: %v", s.Title(), err)
			return
		}
		p.res.Applied++
		p.res.Outcome = Changed
	}
}

// NewEnv builds the shared apply environment: the join token (from the
// inventory's secret, or read from the first server once it has written
// it) and the API client through the first server, both fetched lazily.
func NewEnv(farm *inventory.Farm, plan *Plan, hosts map[string]transport.Host, e *Env) *Env {
	var first transport.Host
	for _, pp := range plan.Phones {
		if pp.Stage == StageFirstServer {
			first = hosts[pp.Phone]
		}
	}
	var mu sync.Mutex
	var token []byte
	var cluster *Cluster
	e.Token = func(ctx context.Context) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if token != nil {
			return token, nil
		}
		if !farm.K3s.Token.IsZero() {
			t, err := farm.K3s.Token.Resolve(ctx, e.LookupEnv)
			if err != nil {
				return nil, err
			}
			token = append(t, '\n')
			return token, nil
		}
		if first == nil {
			return nil, errors.New("no reachable first server to read the join token from")
		}
		t, err := waitRead(ctx, first, ServerTokenPath, 3*time.Minute)
		if err != nil {
			return nil, err
		}
		token = t
		return token, nil
	}
	var serverURL string
	e.ServerURL = func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		return resolveServerURL(ctx, plan, first, &serverURL)
	}
	e.Cluster = func(ctx context.Context) (*Cluster, error) {
		mu.Lock()
		defer mu.Unlock()
		if cluster != nil {
			return cluster, nil
		}
		url, err := resolveServerURL(ctx, plan, first, &serverURL)
		if err != nil {
			return nil, err
		}
		kc, err := waitRead(ctx, first, KubeconfigPath, 3*time.Minute)
		if err != nil {
			return nil, err
		}
		c, err := NewCluster(kc, url, farm.Name)
		if err != nil {
			return nil, err
		}
		cluster = c
		return c, nil
	}
	var keys minter
	e.AuthKey = func(ctx context.Context, phone string) ([]byte, error) {
		ts := farm.Tailscale
		switch {
		case ts == nil:
			return nil, errors.New("the inventory has no tailscale settings")
		case !ts.AuthKey.IsZero():
			k, err := ts.AuthKey.Resolve(ctx, e.LookupEnv)
			if err != nil {
				return nil, fmt.Errorf("tailscale.authKey for %s: %w", phone, err)
			}
			return k, nil
		case !ts.APIKey.IsZero():
			mu.Lock()
			if keys == nil {
				api, err := ts.APIKey.Resolve(ctx, e.LookupEnv)
				if err != nil {
					mu.Unlock()
					return nil, fmt.Errorf("tailscale.apiKey: %w", err)
				}
				secret := strings.TrimSpace(string(api))
				if ts.LoginServer != "" {
					keys = &headscale{base: ts.LoginServer, apiKey: secret, name: or(ts.User, "phonefarm"), tags: ts.Tags}
				} else if keys, err = newTailscaleAPI(secret, e.TailscaleAPI, ts.Tags); err != nil {
					mu.Unlock()
					return nil, err
				}
			}
			mu.Unlock()
			return keys.mint(ctx, phone)
		}
		return nil, errors.New("set tailscale.authKey or tailscale.apiKey")
	}
	return e
}

// resolveServerURL is the plan's server URL, or on a tailnet the first
// server's tailnet address read from it once (cached in *cache).
func resolveServerURL(ctx context.Context, plan *Plan, first transport.Host, cache *string) (string, error) {
	switch {
	case plan.ServerURL != "":
		return plan.ServerURL, nil
	case *cache != "":
		return *cache, nil
	case first == nil:
		return "", errors.New("no reachable first server")
	}
	// With k3s-integrated, the first server joins the tailnet as its k3s
	// starts, which may still be under way.
	limit := time.Now().Add(3 * time.Minute)
	for {
		ip, _, err := tailnetSelf(ctx, first)
		if err == nil {
			*cache = "https://" + ip + ":6443"
			return *cache, nil
		}
		if time.Now().After(limit) || ctx.Err() != nil {
			return "", fmt.Errorf("the first server's API address: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// waitRead reads a file k3s writes once it has started.
func waitRead(parent context.Context, h transport.Host, path string, limit time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(parent, limit)
	defer cancel()
	for {
		b, err := h.ReadFile(ctx, path)
		if err == nil && len(b) > 0 {
			return b, nil
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return nil, fmt.Errorf("waiting for %s on %s: %w", path, h.Name(), parent.Err())
			}
			return nil, fmt.Errorf("%s did not appear on %s within %s: %v", path, h.Name(), limit, err)
		case <-time.After(time.Second):
		}
	}
}
