// Package tui is phonefarm's wizard, phonefarm init: it finds the phones
// on USB and on the network, says what each can become, writes the
// inventory, previews the plan and applies it with live progress. It
// drives the same engine (package farm) as the command line and shows its
// plan and reasons, never a copy of its own; everything it does can be
// done without a terminal, by applying the inventory it writes.
//
// The model is a value; all I/O runs in tea.Cmds through an Engine and
// comes back as typed messages.
package tui

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/spinner"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/provision"
)

// Options start the wizard.
type Options struct {
	// Path is the inventory to write (and to add to, when it exists).
	Path     string
	Discover DiscoverOptions
	Settings Settings
}

type screen int

const (
	screenScan screen = iota
	screenPhones
	screenInventory
	screenPlan
	screenApply
	screenDone
)

// input is what the text input is for, when it is shown.
type input int

const (
	inputNone input = iota
	inputHost
	inputName
	inputFarm
)

// Model is the wizard's state. It is a value: Update returns a new one.
type Model struct {
	eng  Engine
	opts Options
	keys keyMap

	width, height int
	screen        screen
	spin          spinner.Model
	help          help.Model
	text          textinput.Model
	editing       input

	decisions []Decision
	cursor    int
	settings  Settings
	failed    []failedCheck // checks that failed on some phone, to skip or not
	skipAt    int
	scroll    int

	inventory []byte // the inventory as written
	plan      *provision.Plan
	warnings  []string
	events    chan provision.Event
	cancel    context.CancelFunc
	rows      map[string]*row
	logLines  []string
	summary   *provision.Summary
	stopping  bool

	kubeconfig string
	nodes      []Node
	err        error
}

// failedCheck is a check that failed on some phones.
type failedCheck struct {
	id     string
	phones []string
	skip   bool
}

// row is one phone's line while applying.
type row struct {
	step        string
	done, total int64
	outcome     string
}

// New returns the wizard's first state.
func New(eng Engine, o Options) Model {
	sp := spinner.New(spinner.WithSpinner(spinner.Line))
	ti := textinput.New()
	ti.CharLimit = 120
	s := o.Settings
	if s.Farm == "" {
		s.Farm = "drawer"
	}
	if s.Skip == nil {
		s.Skip = map[string]string{}
	}
	return Model{eng: eng, opts: o, keys: defaultKeys(), spin: sp, help: help.New(), text: ti, settings: s, width: 80, height: 24}
}

// Messages of the wizard's commands.
type (
	discoveredMsg []Found
	writtenMsg    struct{ err error }
	plannedMsg    struct {
		plan     *provision.Plan
		warnings []string
		err      error
	}
	eventMsg   struct{ e provision.Event }
	appliedMsg struct {
		summary provision.Summary
		err     error
	}
	finishedMsg struct {
		kubeconfig string
		nodes      []Node
		err        error
	}
)

func (m Model) Init() tea.Cmd {
	return tea.Batch(m.spin.Tick, m.discover())
}

func (m Model) discover() tea.Cmd {
	eng, o := m.eng, m.opts.Discover
	return func() tea.Msg { return discoveredMsg(eng.Discover(context.Background(), o)) }
}

func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.help.Width = msg.Width
		return m, nil
	case spinner.TickMsg:
		var cmd tea.Cmd
		m.spin, cmd = m.spin.Update(msg)
		return m, cmd
	case discoveredMsg:
		m.found(msg)
		m.screen = screenPhones
		return m, nil
	case writtenMsg:
		if msg.err != nil {
			m.err = msg.err
			return m, nil
		}
		m.screen, m.err = screenPlan, nil
		return m, m.planCmd()
	case plannedMsg:
		m.plan, m.warnings, m.err = msg.plan, msg.warnings, msg.err
		m.scroll = 0
		return m, nil
	case eventMsg:
		m.observe(msg.e)
		return m, m.next()
	case appliedMsg:
		m.summary, m.cancel = &msg.summary, nil
		for _, r := range msg.summary.Phones {
			m.observe(provision.PhoneDone{Result: r})
		}
		if msg.err != nil {
			m.err = msg.err
			return m, nil
		}
		if err := msg.summary.Err(); err != nil || m.stopping {
			m.err = err
			return m, nil
		}
		return m, m.finishCmd()
	case finishedMsg:
		m.kubeconfig, m.nodes, m.err = msg.kubeconfig, msg.nodes, msg.err
		m.screen = screenDone
		return m, nil
	case tea.KeyMsg:
		if m.editing != inputNone {
			return m.updateInput(msg)
		}
		return m.updateKey(msg)
	}
	return m, nil
}

// found takes discovery's result: a decision per phone, the likeliest
// use, the first usable phone the server.
func (m *Model) found(fs []Found) {
	taken := existingNames(m.opts.Path)
	for _, d := range m.decisions {
		taken[d.Name] = true
	}
	known := map[string]bool{}
	for _, d := range m.decisions {
		known[d.Found.Via+" "+d.Found.Address] = true
	}
	for _, f := range fs {
		if known[f.Via+" "+f.Address] {
			continue
		}
		d := Decision{Found: f, Use: f.Uses()[0], Role: inventory.RoleAgent, Name: suggestName(f, taken)}
		m.decisions = append(m.decisions, d)
	}
	m.chooseServer()
	m.collectFailedChecks()
}

// chooseServer makes the first phone running k3s over SSH the server when
// none is.
func (m *Model) chooseServer() {
	if existingServer(m.opts.Path) {
		return
	}
	for _, d := range m.decisions {
		if d.Use == UseLinux && d.Role == inventory.RoleServer {
			return
		}
	}
	for i, d := range m.decisions {
		if d.Use == UseLinux {
			m.decisions[i].Role = inventory.RoleServer
			return
		}
	}
}

func (m *Model) collectFailedChecks() {
	byID := map[string][]string{}
	for _, d := range m.decisions {
		if d.Use != UseLinux {
			continue
		}
		for _, c := range d.Found.Checks {
			id, _, _ := strings.Cut(c, ":")
			byID[id] = append(byID[id], d.Name)
		}
	}
	var out []failedCheck
	for id, phones := range byID {
		_, skip := m.settings.Skip[id]
		out = append(out, failedCheck{id: id, phones: phones, skip: skip})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	m.failed = out
}

func (m Model) updateKey(msg tea.KeyMsg) (tea.Model, tea.Cmd) {
	k := m.keys
	if m.screen == screenApply {
		if key.Matches(msg, k.Stop) && m.cancel != nil && !m.stopping {
			// As the CLI: the phones keep what was applied so far.
			m.stopping = true
			m.cancel()
			return m, nil
		}
		if m.cancel == nil && key.Matches(msg, k.Quit) {
			return m, tea.Quit
		}
		return m, nil
	}
	if key.Matches(msg, k.Quit) {
		m.eng.Close()
		return m, tea.Quit
	}
	switch m.screen {
	case screenPhones:
		return m.updatePhones(msg)
	case screenInventory:
		return m.updateInventory(msg)
	case screenPlan:
		switch {
		case key.Matches(msg, k.Back):
			m.eng.Close()
			m.plan = nil
			m.screen, m.err = screenInventory, nil
		case key.Matches(msg, k.Up), key.Matches(msg, k.PageUp):
			m.scroll = max(0, m.scroll-1)
		case key.Matches(msg, k.Down), key.Matches(msg, k.PageDown):
			m.scroll++
		case key.Matches(msg, k.Next) && m.plan != nil && m.err == nil:
			return m.startApply()
		}
	}
	return m, nil
}

func (m Model) updatePhones(msg tea.KeyMsg) (tea.Model, tea.Cmd) {
	k := m.keys
	n := len(m.decisions)
	switch {
	case key.Matches(msg, k.Up):
		m.cursor = max(0, m.cursor-1)
	case key.Matches(msg, k.Down):
		m.cursor = min(max(n-1, 0), m.cursor+1)
	case key.Matches(msg, k.Use) && n > 0:
		d := &m.decisions[m.cursor]
		uses := d.Found.Uses()
		for i, u := range uses {
			if u == d.Use {
				d.Use = uses[(i+1)%len(uses)]
				break
			}
		}
		m.chooseServer()
		m.collectFailedChecks()
	case key.Matches(msg, k.Role) && n > 0:
		d := &m.decisions[m.cursor]
		if d.Use == UseLinux {
			if d.Role == inventory.RoleServer {
				d.Role = inventory.RoleAgent
			} else {
				d.Role = inventory.RoleServer
			}
		}
	case key.Matches(msg, k.Rename) && n > 0:
		m.editing = inputName
		m.text.SetValue(m.decisions[m.cursor].Name)
		m.text.Placeholder = "phone name"
		m.text.Focus()
	case key.Matches(msg, k.Add):
		m.editing = inputHost
		m.text.SetValue("")
		m.text.Placeholder = "user@host:port"
		m.text.Focus()
	case key.Matches(msg, k.Scan):
		m.screen = screenScan
		return m, tea.Batch(m.spin.Tick, m.discover())
	case key.Matches(msg, k.Next):
		if err := m.validateDecisions(); err != nil {
			m.err = err
			return m, nil
		}
		m.err = nil
		m.screen = screenInventory
		m.collectFailedChecks()
		m.renderInventory()
	}
	return m, nil
}

// validateDecisions says what keeps the choices from making a farm.
func (m Model) validateDecisions() error {
	used, servers := 0, 0
	for _, d := range m.decisions {
		if d.Use != UseSkip {
			used++
		}
		if d.Use == UseLinux && d.Role == inventory.RoleServer {
			servers++
		}
	}
	switch {
	case used == 0:
		return fmt.Errorf("no phone is used: press space on a phone to choose what it becomes")
	case servers == 0 && m.hasAgents() && !existingServer(m.opts.Path):
		return fmt.Errorf("no server: a phone running k3s over SSH must be the server (r on it)")
	}
	return nil
}

func (m Model) hasAgents() bool {
	for _, d := range m.decisions {
		if d.Use == UseAgent || d.Use == UseLinux {
			return true
		}
	}
	return false
}

func (m *Model) renderInventory() {
	s := m.settings
	s.Skip = map[string]string{}
	for k, v := range m.settings.Skip {
		s.Skip[k] = v
	}
	for _, f := range m.failed {
		if f.skip {
			if _, ok := s.Skip[f.id]; !ok {
				s.Skip[f.id] = "skipped in phonefarm init after it failed on " + strings.Join(f.phones, ", ")
			}
		} else {
			delete(s.Skip, f.id)
		}
	}
	m.inventory, m.err = RenderInventory(m.opts.Path, m.decisions, s)
}

func (m Model) updateInventory(msg tea.KeyMsg) (tea.Model, tea.Cmd) {
	k := m.keys
	switch {
	case key.Matches(msg, k.Back):
		m.screen, m.err = screenPhones, nil
	case key.Matches(msg, k.Up):
		m.skipAt = max(0, m.skipAt-1)
	case key.Matches(msg, k.Down):
		m.skipAt = min(max(len(m.failed)-1, 0), m.skipAt+1)
	case key.Matches(msg, k.Toggle) && len(m.failed) > 0:
		m.failed[m.skipAt].skip = !m.failed[m.skipAt].skip
		m.renderInventory()
	case key.Matches(msg, k.Edit):
		m.editing = inputFarm
		m.text.SetValue(m.settings.Farm)
		m.text.Placeholder = "farm name"
		m.text.Focus()
	case key.Matches(msg, k.Next) && m.err == nil && m.inventory != nil:
		path, b := m.opts.Path, m.inventory
		return m, func() tea.Msg { return writtenMsg{err: writeInventory(path, b)} }
	}
	return m, nil
}

func (m Model) updateInput(msg tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch {
	case key.Matches(msg, m.keys.Cancel):
		m.editing = inputNone
		m.text.Blur()
		return m, nil
	case key.Matches(msg, m.keys.Accept):
		v := strings.TrimSpace(m.text.Value())
		what := m.editing
		m.editing = inputNone
		m.text.Blur()
		switch what {
		case inputHost:
			if v == "" {
				return m, nil
			}
			o := m.opts.Discover
			o.SSH = []string{v}
			eng := m.eng
			m.screen = screenScan
			return m, tea.Batch(m.spin.Tick, func() tea.Msg {
				// Only this host: the phones on USB are known already.
				o.OnlySSH = true
				return discoveredMsg(eng.Discover(context.Background(), o))
			})
		case inputName:
			if v != "" {
				m.decisions[m.cursor].Name = v
				if err := m.checkNames(); err != nil {
					m.err = err
				} else {
					m.err = nil
				}
			}
		case inputFarm:
			if v != "" {
				m.settings.Farm = v
				m.renderInventory()
			}
		}
		return m, nil
	}
	var cmd tea.Cmd
	m.text, cmd = m.text.Update(msg)
	return m, cmd
}

// checkNames says whether the chosen names make a valid inventory.
func (m Model) checkNames() error {
	seen := map[string]bool{}
	for _, d := range m.decisions {
		if d.Use == UseSkip {
			continue
		}
		if seen[d.Name] {
			return fmt.Errorf("two phones are named %s", d.Name)
		}
		seen[d.Name] = true
	}
	_, err := RenderInventory(m.opts.Path, m.decisions, m.settings)
	return err
}

func (m Model) planCmd() tea.Cmd {
	eng, path := m.eng, m.opts.Path
	return func() tea.Msg {
		p, w, err := eng.Plan(context.Background(), path)
		return plannedMsg{plan: p, warnings: w, err: err}
	}
}

func (m Model) startApply() (tea.Model, tea.Cmd) {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.screen = screenApply
	m.rows = map[string]*row{}
	for _, pp := range m.plan.Phones {
		r := &row{step: "waiting"}
		if pp.Blocked != nil {
			r.step = "blocked"
		} else if len(pp.Steps) == 0 {
			r.step = "no changes"
		}
		m.rows[pp.Phone] = r
	}
	events := make(chan provision.Event, 256)
	m.events = events
	eng := m.eng
	apply := func() tea.Msg {
		s, err := eng.Apply(ctx, func(e provision.Event) { events <- e })
		close(events)
		return appliedMsg{summary: s, err: err}
	}
	return m, tea.Batch(apply, m.next(), m.spin.Tick)
}

// next waits for the apply's next event.
func (m Model) next() tea.Cmd {
	ch := m.events
	return func() tea.Msg {
		e, ok := <-ch
		if !ok {
			return nil
		}
		return eventMsg{e}
	}
}

func (m *Model) observe(e provision.Event) {
	logf := func(format string, args ...any) {
		m.logLines = append(m.logLines, fmt.Sprintf(format, args...))
		if len(m.logLines) > 200 {
			m.logLines = m.logLines[len(m.logLines)-200:]
		}
	}
	switch e := e.(type) {
	case provision.PhaseStarted:
		logf("%s: %s", e.Phase, strings.Join(e.Phones, ", "))
	case provision.StepStarted:
		if r := m.rows[e.Phone]; r != nil && r.outcome == "" {
			r.step = fmt.Sprintf("(%d/%d) %s", e.Index+1, e.Total, e.Step.Title())
			r.done, r.total = 0, 0
		}
		logf("%s: %s", e.Phone, e.Step.Title())
	case provision.StepDone:
		if e.Err != nil {
			logf("%s: %s failed: %v", e.Phone, e.Step.Title(), e.Err)
		}
	case provision.Uploaded:
		if r := m.rows[e.Phone]; r != nil && r.outcome == "" {
			r.done, r.total = e.Done, e.Total
		}
	case provision.StepNote:
		logf("%s: %s", e.Phone, e.Message)
	case provision.PhoneDone:
		if r := m.rows[e.Result.Phone]; r != nil {
			r.outcome = string(e.Result.Outcome)
			r.step = e.Result.Reason
			r.total = 0
		}
	}
}

func (m Model) finishCmd() tea.Cmd {
	eng, path := m.eng, m.opts.Path
	return func() tea.Msg {
		kc, nodes, err := eng.Finish(context.Background(), path)
		return finishedMsg{kubeconfig: kc, nodes: nodes, err: err}
	}
}

// short shows a path relative to home.
func short(p string) string {
	if h := home(); h != "" {
		if rel, err := filepath.Rel(h, p); err == nil && !strings.HasPrefix(rel, "..") {
			return "~/" + rel
		}
	}
	return p
}

// Summary is what to leave on the terminal when the wizard ends: the
// inventory written, the outcome, the nodes and the kubeconfig.
func (m Model) Summary() string {
	var b strings.Builder
	if m.inventory != nil && m.screen >= screenPlan {
		fmt.Fprintf(&b, "phonefarm init wrote %s\n", m.opts.Path)
	}
	if m.summary != nil {
		for _, r := range m.summary.Phones {
			line := fmt.Sprintf("  %-16s %s", r.Phone, r.Outcome)
			if r.Reason != "" {
				line += ": " + r.Reason
			}
			b.WriteString(line + "\n")
		}
	}
	if m.screen == screenDone {
		for _, n := range m.nodes {
			fmt.Fprintf(&b, "  node %-16s %s\n", n.Name, n.Status)
		}
		if m.kubeconfig != "" {
			fmt.Fprintf(&b, "export KUBECONFIG=%s\n", m.kubeconfig)
		}
	}
	if m.err != nil {
		fmt.Fprintf(&b, "phonefarm init: %v\n", m.err)
	}
	return b.String()
}

// Failed reports whether the wizard ended with an error or phones that
// did not converge.
func (m Model) Failed() bool {
	return m.err != nil || m.summary != nil && m.summary.Err() != nil
}
