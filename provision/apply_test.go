package provision

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// recorder logs when steps start and end.
type recorder struct {
	mu  sync.Mutex
	log []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.log = append(r.log, s)
	r.mu.Unlock()
}

func (r *recorder) index(s string) int {
	for i, l := range r.log {
		if l == s {
			return i
		}
	}
	return -1
}

// localStep stands for a step that touches only its phone.
type localStep struct {
	rec  *recorder
	name string
	err  error
}

func (s *localStep) Title() string { return s.name }
func (s *localStep) Why() string   { return "test" }
func (s *localStep) Apply(context.Context, *Target) error {
	s.rec.add("start " + s.name)
	time.Sleep(20 * time.Millisecond)
	s.rec.add("end " + s.name)
	return s.err
}

// clusterStep stands for a step that needs the cluster.
type clusterStep struct{ localStep }

func (*clusterStep) joinsCluster() {}

func TestApplyOrder(t *testing.T) {
	rec := &recorder{}
	local := func(n string) Step { return &localStep{rec: rec, name: n} }
	join := func(n string) Step { return &clusterStep{localStep{rec: rec, name: n}} }
	settle := func(n string) Step { return &settleStep{clusterStep{localStep{rec: rec, name: n}}} }
	plan := &Plan{Phones: []PhonePlan{
		{Phone: "s1", Stage: StageFirstServer, Steps: []Step{local("s1 upload"), join("s1 start"), settle("s1 ready")}},
		{Phone: "s2", Stage: StageServers, Steps: []Step{local("s2 upload"), join("s2 start"), settle("s2 ready")}},
		{Phone: "s3", Stage: StageServers, Steps: []Step{join("s3 start"), settle("s3 ready")}},
		{Phone: "a1", Stage: StageAgents, Steps: []Step{local("a1 upload"), join("a1 start"), settle("a1 ready")}},
		{Phone: "a2", Stage: StageAgents, Steps: []Step{&slowStep{localStep{rec: rec, name: "a2 upload"}}, join("a2 start"), settle("a2 ready")}},
	}}
	sum := (&Runner{Env: &Env{}, Parallel: 10}).Apply(context.Background(), plan)
	if err := sum.Err(); err != nil {
		t.Fatal(err)
	}
	before := func(a, b string) {
		t.Helper()
		if ia, ib := rec.index(a), rec.index(b); ia < 0 || ib < 0 || ia > ib {
			t.Errorf("%q at %d, %q at %d; want the first before the second\n%s", a, ia, b, ib, strings.Join(rec.log, "\n"))
		}
	}
	// Uploads overlap: every phone's local steps start before any ends.
	for _, p := range []string{"s1", "s2", "a1", "a2"} {
		before("start "+p+" upload", "end s1 upload")
	}
	// Cluster steps go in stage order; joining servers wait for a Ready
	// first server and join one at a time, each until Ready.
	before("end s1 ready", "start s2 start")
	before("end s1 ready", "start s3 start")
	before("end s2 ready", "start s3 start")
	if (rec.index("start s3 start") < rec.index("end s2 start")) == (rec.index("start s2 start") < rec.index("end s3 start")) {
		t.Errorf("servers s2 and s3 joined at the same time:\n%s", strings.Join(rec.log, "\n"))
	}
	if rec.index("start s3 start") < rec.index("end s2 ready") {
		t.Errorf("s3 joined before s2 was Ready:\n%s", strings.Join(rec.log, "\n"))
	}
	// The first server starts as soon as its own files are in place,
	// while a2's (slow) upload goes on; agents join the moment it runs,
	// without waiting for the other servers.
	before("start s1 start", "end a2 upload")
	before("end s1 start", "start a1 start")
	before("start a1 start", "end s2 ready")
	before("end a2 upload", "start a2 start")
	// Agents' waits for Ready run together.
	before("start a1 ready", "end a2 ready")
	before("start a2 ready", "end a1 ready")
}

// slowStep is a local step that takes longer, as a big upload does.
type slowStep struct{ localStep }

func (s *slowStep) Apply(ctx context.Context, t *Target) error {
	s.rec.add("start " + s.name)
	time.Sleep(200 * time.Millisecond)
	s.rec.add("end " + s.name)
	return s.err
}

// settleStep stands for a wait for Ready.
type settleStep struct{ clusterStep }

func (*settleStep) settles() {}

func TestApplyAgentsDoNotWaitForFirstServerReady(t *testing.T) {
	rec := &recorder{}
	plan := &Plan{Phones: []PhonePlan{
		{Phone: "s1", Stage: StageFirstServer, Steps: []Step{&clusterStep{localStep{rec: rec, name: "s1 start"}}, &settleStep{clusterStep{localStep{rec: rec, name: "s1 ready"}}}}},
		{Phone: "a1", Stage: StageAgents, Steps: []Step{&clusterStep{localStep{rec: rec, name: "a1 start"}}}},
	}}
	if err := (&Runner{Env: &Env{}, Parallel: 10}).Apply(context.Background(), plan).Err(); err != nil {
		t.Fatal(err)
	}
	if rec.index("start a1 start") > rec.index("start s1 ready") {
		t.Errorf("a1 waited for the first server to be Ready; it only needs the cluster started:\n%s", strings.Join(rec.log, "\n"))
	}
	// Rolling upgrades keep the strict order.
	rec = &recorder{}
	plan.Rolling = true
	for i := range plan.Phones {
		for _, s := range plan.Phones[i].Steps {
			switch s := s.(type) {
			case *clusterStep:
				s.rec = rec
			case *settleStep:
				s.rec = rec
			}
		}
	}
	if err := (&Runner{Env: &Env{}, Parallel: 10}).Apply(context.Background(), plan).Err(); err != nil {
		t.Fatal(err)
	}
	if rec.index("start a1 start") < rec.index("end s1 ready") {
		t.Errorf("rolling upgrade: a1 restarted before s1 was Ready again:\n%s", strings.Join(rec.log, "\n"))
	}
}

func TestApplyFailures(t *testing.T) {
	rec := &recorder{}
	boom := errors.New("boom")
	plan := &Plan{Phones: []PhonePlan{
		{Phone: "s1", Stage: StageFirstServer, Steps: []Step{&clusterStep{localStep{rec: rec, name: "s1 start"}}}},
		{Phone: "a1", Stage: StageAgents, Steps: []Step{&localStep{rec: rec, name: "a1 upload", err: boom}}},
		{Phone: "a2", Stage: StageAgents, Steps: []Step{&localStep{rec: rec, name: "a2 upload"}}},
		{Phone: "a3", Stage: StageAgents, Blocked: &BlockedError{Kind: ErrUnreachable, Reason: "unreachable: timeout"}},
	}}
	sum := (&Runner{Env: &Env{}, Parallel: 10}).Apply(context.Background(), plan)
	got := map[string]Outcome{}
	for _, r := range sum.Phones {
		got[r.Phone] = r.Outcome
	}
	want := map[string]Outcome{"s1": Changed, "a1": Failed, "a2": Changed, "a3": Blocked}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	err := sum.Err()
	for _, target := range []error{boom, ErrStepFailed, ErrBlocked, ErrUnreachable} {
		if !errors.Is(err, target) {
			t.Errorf("summary error %v: errors.Is(%v) is false", err, target)
		}
	}
	if errors.Is(err, ErrPreflight) || errors.Is(err, ErrInterrupted) {
		t.Errorf("summary error %v claims a preflight failure or an interruption", err)
	}
	var se *StepError
	if !errors.As(err, &se) || se.Phone != "a1" || se.Step != "a1 upload" {
		t.Errorf("summary error %v: want a1's failed step as a *StepError, got %+v", err, se)
	}
	if !strings.Contains(err.Error(), "a1: a1 upload: boom") || !strings.Contains(err.Error(), "a3: unreachable: timeout") {
		t.Errorf("summary error %q does not name each phone and why", err)
	}

	// When the first server fails, nobody can join.
	plan = &Plan{Phones: []PhonePlan{
		{Phone: "s1", Stage: StageFirstServer, Steps: []Step{&clusterStep{localStep{rec: rec, name: "s1 start", err: boom}}}},
		{Phone: "a1", Stage: StageAgents, Steps: []Step{&localStep{rec: rec, name: "a1 upload"}, &clusterStep{localStep{rec: rec, name: "a1 join"}}}},
	}}
	sum = (&Runner{Env: &Env{}, Parallel: 10}).Apply(context.Background(), plan)
	if r := sum.Phones[1]; r.Outcome != Blocked || !strings.Contains(r.Reason, "first server s1") || rec.index("start a1 join") >= 0 {
		t.Errorf("a1 after the first server failed: got %s %q; want blocked without joining", r.Outcome, r.Reason)
	}
	if err := sum.Phones[1].Err; !errors.Is(err, ErrBlocked) || !errors.Is(err, boom) {
		t.Errorf("a1's error %v: want ErrBlocked wrapping the first server's failure", err)
	}
}

func TestApplyInterrupted(t *testing.T) {
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	plan := &Plan{Phones: []PhonePlan{
		{Phone: "s1", Stage: StageFirstServer, Steps: []Step{
			&localStep{rec: rec, name: "s1 upload"},
			&cancelStep{cancel: cancel},
			&settleStep{clusterStep{localStep{rec: rec, name: "s1 ready"}}},
		}},
	}}
	sum := (&Runner{Env: &Env{}, Parallel: 10}).Apply(ctx, plan)
	r := sum.Phones[0]
	if r.Outcome != Interrupted || r.Reason != "stopped before: s1 ready" || r.Applied != 2 {
		t.Errorf("got %s %q after %d steps, want interrupted before s1 ready after 2", r.Outcome, r.Reason, r.Applied)
	}
	if err := sum.Err(); !errors.Is(err, ErrInterrupted) {
		t.Errorf("an interrupted apply: got %v, want ErrInterrupted", err)
	}
}

// cancelStep cancels the apply, as Ctrl-C would, and succeeds.
type cancelStep struct{ cancel func() }

func (*cancelStep) Title() string                          { return "cancel" }
func (*cancelStep) Why() string                            { return "test" }
func (*cancelStep) joinsCluster()                          {}
func (s *cancelStep) Apply(context.Context, *Target) error { s.cancel(); return nil }

// Apply's events: a phase as it starts with the phones that work in it,
// every step started then done (with its error and the injected clock's
// elapsed time), and each phone's outcome once.
func TestApplyEvents(t *testing.T) {
	rec := &recorder{}
	boom := errors.New("boom")
	plan := &Plan{Phones: []PhonePlan{
		{Phone: "s1", Stage: StageFirstServer, Steps: []Step{&localStep{rec: rec, name: "s1 upload"}, &clusterStep{localStep{rec: rec, name: "s1 start"}}}},
		{Phone: "a1", Stage: StageAgents, Steps: []Step{&localStep{rec: rec, name: "a1 upload", err: boom}}},
		{Phone: "a2", Stage: StageAgents, Blocked: blocked("no binary")},
	}}
	var mu sync.Mutex
	var events []Event
	var tick time.Duration
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		tick += time.Second
		return time.Unix(0, 0).Add(tick)
	}
	r := &Runner{Env: &Env{}, Parallel: 1, Now: clock, Observe: func(e Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}}
	r.Apply(context.Background(), plan)

	// Events of one phone come in order; phones interleave.
	got := map[string][]string{}
	for _, e := range events {
		switch e := e.(type) {
		case PhaseStarted:
			got["phases"] = append(got["phases"], string(e.Phase)+" "+strings.Join(e.Phones, ","))
		case StepStarted:
			got[e.Phone] = append(got[e.Phone], "start "+e.Step.Title())
		case StepDone:
			s := "done " + e.Step.Title()
			if e.Err != nil {
				s += ": " + e.Err.Error()
			}
			if e.Elapsed <= 0 {
				s += " without elapsed time"
			}
			got[e.Phone] = append(got[e.Phone], s)
		case PhoneDone:
			got[e.Result.Phone] = append(got[e.Result.Phone], "outcome "+string(e.Result.Outcome))
		}
	}
	want := map[string][]string{
		"phases": {"prepare s1,a1", "first server s1"},
		"s1":     {"start s1 upload", "done s1 upload", "start s1 start", "done s1 start", "outcome changed"},
		"a1":     {"start a1 upload", "done a1 upload: boom", "outcome failed"},
		"a2":     {"outcome blocked"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}
