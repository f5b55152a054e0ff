package provision

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/phonefarm/phonefarm/internal/parallel"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport"
)

// Progress receives what Apply does, for live display.
type Progress interface {
	StepStarted(phone string, i, n int, s Step)
	Uploaded(phone string, done, total int64)
	PhoneDone(r PhoneResult)
}

// Outcome of one phone.
type Outcome string

const (
	Unchanged Outcome = "unchanged"
	Changed   Outcome = "changed"
	Failed    Outcome = "failed"
	Blocked   Outcome = "blocked"
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

// Err joins the failures, one per failed or blocked phone.
func (s Summary) Err() error {
	var errs []error
	for _, r := range s.Phones {
		if r.Outcome == Failed || r.Outcome == Blocked {
			errs = append(errs, fmt.Errorf("%s: %s", r.Phone, r.Reason))
		}
	}
	return errors.Join(errs...)
}

// Runner applies plans.
type Runner struct {
	Env      *Env
	Hosts    map[string]transport.Host // open connections, by phone
	Parallel int
	Progress Progress
}

// joinsCluster marks steps that depend on the cluster (the join token, the
// service start, registration, labels); they run in stage order. The other
// steps (firewall, binary, config, service files) only touch their own
// phone, so every phone does them at once first.
type joinsCluster interface{ joinsCluster() }

func (*tokenStep) joinsCluster()   {}
func (*restartStep) joinsCluster() {}
func (*readyStep) joinsCluster()   {}
func (*labelStep) joinsCluster()   {}

// split returns how many leading steps of pp are local to the phone.
func split(pp PhonePlan) int {
	for i, s := range pp.Steps {
		if _, ok := s.(joinsCluster); ok {
			return i
		}
	}
	return len(pp.Steps)
}

// Apply runs the plan: first every phone's local steps in parallel, then
// the cluster steps stage by stage. A phone that fails does not stop
// independent phones; when the first server fails, nothing can join.
func (r *Runner) Apply(ctx context.Context, plan *Plan) Summary {
	results := make([]PhoneResult, len(plan.Phones))
	starts := make([]time.Time, len(plan.Phones))
	for i, pp := range plan.Phones {
		results[i] = PhoneResult{Phone: pp.Phone, Outcome: Unchanged}
		starts[i] = time.Now()
		if pp.Blocked != "" {
			results[i].Outcome, results[i].Reason = Blocked, pp.Blocked
		}
	}
	// Local steps, every phone at once.
	_ = parallel.Each(ctx, len(plan.Phones), r.Parallel, func(ctx context.Context, i int) error {
		if results[i].Outcome != Blocked {
			r.run(ctx, plan.Phones[i], 0, split(plan.Phones[i]), &results[i])
		}
		return nil
	})
	firstFailed := ""
	for stage := StageFirstServer; stage <= StageAgents; stage++ {
		var idx []int
		for i, pp := range plan.Phones {
			if pp.Stage == stage {
				idx = append(idx, i)
			}
		}
		limit := r.Parallel
		if stage != StageAgents || plan.Rolling {
			limit = 1 // servers join etcd one at a time; upgrades roll
		}
		_ = parallel.Each(ctx, len(idx), limit, func(ctx context.Context, k int) error {
			i := idx[k]
			res := &results[i]
			switch {
			case res.Outcome == Blocked || res.Outcome == Failed:
			case firstFailed != "" && stage != StageFirstServer:
				res.Outcome, res.Reason = Blocked, "the first server "+firstFailed+" did not converge"
			default:
				pp := plan.Phones[i]
				r.run(ctx, pp, split(pp), len(pp.Steps), res)
			}
			res.Elapsed = time.Since(starts[i])
			if r.Progress != nil {
				r.Progress.PhoneDone(*res)
			}
			return nil
		})
		if stage == StageFirstServer {
			for _, i := range idx {
				if o := results[i].Outcome; o == Failed || o == Blocked {
					firstFailed = plan.Phones[i].Phone
				}
			}
		}
	}
	return Summary{Phones: results}
}

// run applies steps [from, to) of one phone, recording into res.
func (r *Runner) run(ctx context.Context, pp PhonePlan, from, to int, res *PhoneResult) {
	t := &Target{Phone: pp.Phone, Host: r.Hosts[pp.Phone], Env: r.Env}
	if r.Progress != nil {
		t.Progress = func(done, total int64) { r.Progress.Uploaded(pp.Phone, done, total) }
	}
	for i := from; i < to; i++ {
		s := pp.Steps[i]
		if r.Progress != nil {
			r.Progress.StepStarted(pp.Phone, i, len(pp.Steps), s)
		}
		if err := s.Apply(ctx, t); err != nil {
			res.Outcome, res.Err = Failed, err
			res.Reason = fmt.Sprintf("%s: %v", s.Title(), err)
			return
		}
		res.Applied++
		res.Outcome = Changed
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
			t, err := farm.K3s.Token.Resolve(ctx, nil)
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
	e.Cluster = func(ctx context.Context) (*Cluster, error) {
		mu.Lock()
		defer mu.Unlock()
		if cluster != nil {
			return cluster, nil
		}
		if first == nil || plan.ServerURL == "" {
			return nil, errors.New("no reachable first server")
		}
		kc, err := waitRead(ctx, first, KubeconfigPath, 3*time.Minute)
		if err != nil {
			return nil, err
		}
		c, err := NewCluster(kc, plan.ServerURL, farm.Name)
		if err != nil {
			return nil, err
		}
		cluster = c
		return c, nil
	}
	return e
}

// waitRead reads a file k3s writes once it has started.
func waitRead(ctx context.Context, h transport.Host, path string, limit time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		b, err := h.ReadFile(ctx, path)
		if err == nil && len(b) > 0 {
			return b, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s did not appear on %s within %s: %v", path, h.Name(), limit, err)
		case <-time.After(time.Second):
		}
	}
}
