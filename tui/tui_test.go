package tui

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/bubbles/spinner"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/google/go-cmp/cmp"
	"github.com/muesli/termenv"

	"github.com/phonefarm/phonefarm/devicedb"
	"github.com/phonefarm/phonefarm/facts"
	"github.com/phonefarm/phonefarm/flash"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/provision"
)

// updating: go test -update (teatest's flag) rewrites the golden files.
func updating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func init() {
	// Golden frames are plain text: no colour, whatever the terminal.
	lipgloss.SetColorProfile(termenv.Ascii)
}

// fakeEngine answers as a world the test scripts: the golden frames are
// about what the wizard shows, not about reaching phones (the tmux test in
// internal/cli drives the real ones).
type fakeEngine struct {
	found      []Found
	plan       *provision.Plan
	warnings   []string
	planErr    error
	events     []provision.Event
	summary    provision.Summary
	applyErr   error
	kubeconfig string
	nodes      []Node
	finishErr  error
}

func (f *fakeEngine) Discover(context.Context, DiscoverOptions) []Found { return f.found }
func (f *fakeEngine) Plan(context.Context, string) (*provision.Plan, []string, error) {
	return f.plan, f.warnings, f.planErr
}
func (f *fakeEngine) Apply(_ context.Context, send func(provision.Event)) (provision.Summary, error) {
	for _, e := range f.events {
		send(e)
	}
	return f.summary, f.applyErr
}
func (f *fakeEngine) Finish(context.Context, string) (string, []Node, error) {
	return f.kubeconfig, f.nodes, f.finishErr
}
func (f *fakeEngine) Close() {}

type step struct{ title, why string }

func (s step) Title() string                                  { return s.title }
func (s step) Why() string                                    { return s.why }
func (s step) Apply(context.Context, *provision.Target) error { return nil }

func pmosPhone(host string) Found {
	return Found{Via: "ssh", Address: host, Model: "postmarketOS v25.06",
		Facts:  &facts.Facts{Hostname: "enchilada", Arch: "arm64", Init: "openrc", CPUs: 8, Memory: facts.Memory{Total: 6 << 30}, OS: facts.OS{ID: "postmarketos", Name: "postmarketOS v25.06"}},
		Kernel: "fail", Checks: []string{"kernel-config: /proc/config.gz lacks 1 option(s) k3s requires: CONFIG_NETFILTER_XT_MATCH_IPVS"}}
}

func androidPhone() Found {
	d, _ := devicedb.Lookup("google-sargo")
	u := flash.UnlockGuide(d)
	return Found{Via: "adb", Address: "8ARX0XYZ", Model: "Pixel 3a", Device: &d, Unlock: &u,
		Facts: &facts.Facts{Arch: "arm64", Init: "android", CPUs: 8, Memory: facts.Memory{Total: 4 << 30},
			OS: facts.OS{ID: "android", Name: "Android 14", Android: &facts.Android{Release: "14", SDK: 34, ABI: "arm64-v8a", Model: "Pixel 3a", Device: "sargo"}}}}
}

func fastbootPhone() Found {
	d, _ := devicedb.Lookup("oneplus-enchilada")
	u := flash.UnlockGuide(d)
	return Found{Via: "fastboot", Address: "tcp:127.0.0.1:5554", Model: "enchilada", Device: &d, Unlock: &u}
}

func testPlan() *provision.Plan {
	return &provision.Plan{Phones: []provision.PhonePlan{
		{Phone: "enchilada", Role: "server", Stage: provision.StageFirstServer, Steps: []provision.Step{
			step{"upload k3s v1.32.0+k3s1 (arm64, 70 MB)", "not installed"}, step{"restart k3s", "binary, token, config or service changed"},
			step{"wait for node enchilada to be Ready", "k3s restarts"}}},
		{Phone: "fajita", Role: "agent", Stage: provision.StageAgents, Blocked: &provision.BlockedError{Kind: provision.ErrUnreachable, Reason: "unreachable: dial tcp 10.0.0.12:22: connect: no route to host"}},
	}}
}

// press sends keys to a model, running the commands they return that the
// test can run synchronously (the fake engine answers at once).
func press(t *testing.T, m Model, keys ...string) Model {
	t.Helper()
	for _, k := range keys {
		var msg tea.KeyMsg
		switch k {
		case "enter":
			msg = tea.KeyMsg{Type: tea.KeyEnter}
		case "esc":
			msg = tea.KeyMsg{Type: tea.KeyEsc}
		case "down":
			msg = tea.KeyMsg{Type: tea.KeyDown}
		case "space":
			msg = tea.KeyMsg{Type: tea.KeySpace, Runes: []rune{' '}}
		default:
			msg = tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
		}
		m = run(t, m, msg)
	}
	return m
}

// run updates m with msg and then with the messages its commands return,
// except ticks and quit.
func run(t *testing.T, m Model, msg tea.Msg) Model {
	t.Helper()
	queue := []tea.Msg{msg}
	for len(queue) > 0 && len(queue) < 100 {
		next, cmd := m.Update(queue[0])
		m = next.(Model)
		queue = queue[1:]
		queue = append(queue, drain(cmd)...)
	}
	return m
}

func drain(cmd tea.Cmd) []tea.Msg {
	if cmd == nil {
		return nil
	}
	done := make(chan tea.Msg, 1)
	go func() { done <- cmd() }()
	var msg tea.Msg
	select {
	case msg = <-done:
	case <-time.After(200 * time.Millisecond):
		return nil // a tick, or a wait with nothing to wait for
	}
	switch msg := msg.(type) {
	case nil:
		return nil
	case tea.BatchMsg:
		var out []tea.Msg
		for _, c := range msg {
			out = append(out, drain(c)...)
		}
		return out
	case tea.QuitMsg, spinner.TickMsg:
		return nil
	}
	return []tea.Msg{msg}
}

func golden(t *testing.T, got string) {
	t.Helper()
	path := filepath.Join("testdata", strings.ReplaceAll(t.Name(), "/", "_")+".golden")
	if updating() {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("frame (-want +got):\n%s", diff)
	}
}

func newModel(t *testing.T, eng Engine) Model {
	t.Helper()
	// A directory whose name is as long in every run, so that frames wrap
	// the same.
	sum := sha256.Sum256([]byte(t.Name()))
	dir := filepath.Join(os.TempDir(), "pftui-"+hex.EncodeToString(sum[:4]))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	m := New(eng, Options{Path: filepath.Join(dir, "farm.yaml"), Settings: Settings{Farm: "drawer", User: "user", Identity: "~/.ssh/id_ed25519", Become: "doas", K3sVersion: "v1.32.0+k3s1"}})
	m = run(t, m, tea.WindowSizeMsg{Width: 80, Height: 24})
	return m
}

// frame is m's view with the temporary inventory path made stable.
func frame(m Model) string {
	return strings.ReplaceAll(m.View(), filepath.Dir(m.opts.Path), "/farm")
}

// Every screen at 80x24, errors included.
func TestScreens(t *testing.T) {
	found := []Found{pmosPhone("10.0.0.11"), pmosPhone("10.0.0.12"), androidPhone(), fastbootPhone(),
		{Via: "ssh", Address: "10.0.0.13", Err: errors.New("dial tcp 10.0.0.13:22: connect: connection refused")}}
	ok := func() *fakeEngine {
		return &fakeEngine{found: found, plan: testPlan(), warnings: []string{"preflight checks skipped (kernel-config): k3s may fail on these phones"},
			events: []provision.Event{
				provision.PhaseStarted{Phase: provision.PhasePrepare, Phones: []string{"enchilada"}},
				provision.StepStarted{Phone: "enchilada", Index: 0, Total: 3, Step: step{"upload k3s v1.32.0+k3s1 (arm64, 70 MB)", ""}},
				provision.Uploaded{Phone: "enchilada", Done: 35 << 20, Total: 70 << 20},
			},
			summary:    provision.Summary{Phones: []provision.PhoneResult{{Phone: "enchilada", Outcome: provision.Changed, Applied: 3}}},
			kubeconfig: "/home/user/.kube/phonefarm-drawer.yaml",
			nodes:      []Node{{Name: "enchilada", Status: "Ready", Roles: "control-plane,etcd,master", Address: "10.0.0.11"}}}
	}
	tests := []struct {
		name  string
		eng   *fakeEngine
		steps func(t *testing.T, m Model) Model
	}{
		{"scanning", ok(), func(t *testing.T, m Model) Model { m.screen = screenScan; return m }},
		{"phones", ok(), func(t *testing.T, m Model) Model { return m }},
		{"phones android", ok(), func(t *testing.T, m Model) Model { return press(t, m, "down", "down") }},
		{"phones flash", ok(), func(t *testing.T, m Model) Model { return press(t, m, "down", "down", "down") }},
		{"phones unreachable", ok(), func(t *testing.T, m Model) Model { return press(t, m, "down", "down", "down", "down") }},
		{"no phones", &fakeEngine{}, func(t *testing.T, m Model) Model { return m }},
		{"add host", ok(), func(t *testing.T, m Model) Model { return press(t, m, "a", "u", "s", "e", "r", "@", "h") }},
		{"inventory", ok(), func(t *testing.T, m Model) Model { return press(t, m, "enter", "space") }},
		{"plan", ok(), func(t *testing.T, m Model) Model { return press(t, m, "enter", "enter") }},
		{"plan error", func() *fakeEngine {
			e := ok()
			e.plan, e.planErr = nil, errors.New("k3s binary for arm64: set k3s.version in the inventory (or k3s.source.files.arm64)")
			return e
		}(), func(t *testing.T, m Model) Model { return press(t, m, "enter", "enter") }},
		{"apply failed", func() *fakeEngine {
			e := ok()
			e.summary = provision.Summary{Phones: []provision.PhoneResult{{Phone: "enchilada", Outcome: provision.Failed, Reason: "restart k3s: exit status 1", Err: errors.New("restart k3s: exit status 1")}}}
			return e
		}(), func(t *testing.T, m Model) Model { return press(t, m, "enter", "enter", "enter") }},
		{"done", ok(), func(t *testing.T, m Model) Model { return press(t, m, "enter", "enter", "enter") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newModel(t, tt.eng)
			m = run(t, m, discoveredMsg(tt.eng.found))
			m = tt.steps(t, m)
			f := frame(m)
			for i, l := range strings.Split(f, "\n") {
				if w := lipgloss.Width(l); w > 80 {
					t.Errorf("line %d is %d wide, more than the terminal's 80: %q", i+1, w, l)
				}
			}
			if n := strings.Count(f, "\n") + 1; n > 24 {
				t.Errorf("%d lines, more than the terminal's 24", n)
			}
			golden(t, f)
		})
	}
}

// The inventory the wizard writes validates, names what was chosen, and
// is added to an inventory that is there without losing what it had.
func TestWrittenInventory(t *testing.T) {
	eng := &fakeEngine{found: []Found{pmosPhone("10.0.0.11"), pmosPhone("user2@10.0.0.12:2222"), androidPhone(), fastbootPhone()}}
	m := newModel(t, eng)
	m.opts.Settings.Agent = map[string]string{"arm64": "/opt/phonefarm-agent-arm64"}
	m.settings.Agent = m.opts.Settings.Agent
	m = run(t, m, discoveredMsg(eng.found))
	// The fastboot phone is flashed; the Android phone runs the agent.
	m = press(t, m, "down", "down", "down", "enter", "space")
	b, err := os.ReadFile(m.opts.Path)
	if err == nil {
		t.Fatalf("the inventory was written before enter: %s", b)
	}
	m = press(t, m, "enter")
	b, err = os.ReadFile(m.opts.Path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := inventory.Parse(m.opts.Path, b)
	if err != nil {
		t.Fatalf("the wizard's inventory does not validate: %v\n%s", err, b)
	}
	var got []string
	for _, p := range f.Phones {
		s := p.Name + " " + p.OS + " " + p.Role
		if p.SSH != nil {
			s += " ssh " + p.SSH.Host
		}
		if p.ADB != nil {
			s += " adb " + p.ADB.Serial
		}
		got = append(got, s)
	}
	want := []string{"enchilada postmarketos server ssh 10.0.0.11", "enchilada-2 postmarketos agent ssh 10.0.0.12", "sargo android agent adb 8ARX0XYZ", "enchilada-3 postmarketos  ssh 172.16.42.1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("phones (-want +got):\n%s\n%s", diff, b)
	}
	if f.SSHFor(&f.Phones[1]).Port != 2222 || f.SSHFor(&f.Phones[1]).User != "user2" {
		t.Errorf("enchilada-2: got %+v, want user2 on port 2222", f.SSHFor(&f.Phones[1]))
	}
	if len(f.Checks.Skip) != 1 || f.Checks.Skip[0].ID != "kernel-config" || f.Android == nil || f.Android.Agent["arm64"] == "" {
		t.Errorf("checks %+v android %+v: want kernel-config skipped and the agent named\n%s", f.Checks, f.Android, b)
	}

	// Another run adds a phone to the file, keeping what it had.
	edited := append([]byte("# my farm, by hand\n"), b...)
	if err := os.WriteFile(m.opts.Path, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	eng2 := &fakeEngine{found: []Found{pmosPhone("10.0.0.14")}}
	m2 := New(eng2, m.opts)
	m2 = run(t, m2, discoveredMsg(eng2.found))
	m2 = press(t, m2, "enter", "enter")
	if m2.err != nil {
		t.Fatalf("adding a phone: %v", m2.err)
	}
	b, _ = os.ReadFile(m.opts.Path)
	f, err = inventory.Parse(m.opts.Path, b)
	if err != nil {
		t.Fatalf("the added-to inventory does not validate: %v\n%s", err, b)
	}
	if len(f.Phones) != 5 || f.Phones[4].Name != "enchilada-4" || !bytes.Contains(b, []byte("# my farm, by hand")) {
		t.Errorf("after adding: %d phones (last %q), comment kept %v, want 5 with enchilada-4 and the comment:\n%s", len(f.Phones), f.Phones[len(f.Phones)-1].Name, bytes.Contains(b, []byte("# my farm")), b)
	}
}

// The wizard as a program (teatest): from the phones to the done screen,
// and Ctrl-C during apply stops it as the CLI does.
func TestProgram(t *testing.T) {
	eng := &fakeEngine{found: []Found{pmosPhone("10.0.0.11")}, plan: testPlan(),
		summary:    provision.Summary{Phones: []provision.PhoneResult{{Phone: "enchilada", Outcome: provision.Changed}}},
		kubeconfig: "/home/user/.kube/phonefarm-drawer.yaml", nodes: []Node{{Name: "enchilada", Status: "Ready", Address: "10.0.0.11"}}}
	m := New(eng, Options{Path: filepath.Join(t.TempDir(), "farm.yaml"), Settings: Settings{K3sVersion: "v1.32.0+k3s1"}})
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(80, 24))
	wait := func(s string) {
		t.Helper()
		teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(s)) }, teatest.WithDuration(10*time.Second))
	}
	wait("1/5 phones")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	wait("2/5 inventory")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	wait("3/5 plan")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	wait("Your farm runs.")
	tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")})
	final := tm.FinalModel(t, teatest.WithFinalTimeout(10*time.Second)).(Model)
	if final.Failed() || !strings.Contains(final.Summary(), "export KUBECONFIG=/home/user/.kube/phonefarm-drawer.yaml") {
		t.Errorf("final: failed %v, summary:\n%s", final.Failed(), final.Summary())
	}
}
