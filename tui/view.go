package tui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/lipgloss"

	"github.com/phonefarm/phonefarm/provision"
)

// Styles. lipgloss renders them without colour where the terminal has
// none or NO_COLOR is set.
var (
	titleStyle = lipgloss.NewStyle().Bold(true)
	dimStyle   = lipgloss.NewStyle().Faint(true)
	selStyle   = lipgloss.NewStyle().Bold(true)
	errStyle   = lipgloss.NewStyle().Foreground(lipgloss.Color("1"))
	okStyle    = lipgloss.NewStyle().Foreground(lipgloss.Color("2"))
	warnStyle  = lipgloss.NewStyle().Foreground(lipgloss.Color("3"))
)

func (m Model) View() string {
	var body string
	var keys []key.Binding
	k := m.keys
	switch m.screen {
	case screenScan:
		body = fmt.Sprintf("\n %s Looking for phones: adb, fastboot, postmarketOS's USB network\n   (%s) and the SSH hosts given...\n", m.spin.View(), USBNetwork)
		keys = []key.Binding{k.Quit}
	case screenPhones:
		body = m.viewPhones()
		keys = []key.Binding{k.Up, k.Down, k.Use, k.Role, k.Rename, k.Add, k.Scan, k.Next, k.Quit}
	case screenInventory:
		body = m.viewInventory()
		keys = []key.Binding{k.Up, k.Down, k.Toggle, k.Edit, withHelp(k.Next, "write and plan"), k.Back, k.Quit}
	case screenPlan:
		body = m.viewPlan()
		keys = []key.Binding{k.Down, k.Up, withHelp(k.Next, "apply"), k.Back, k.Quit}
	case screenApply:
		body = m.viewApply()
		if m.cancel != nil {
			keys = []key.Binding{k.Stop}
		} else {
			keys = []key.Binding{k.Quit}
		}
	case screenDone:
		body = m.viewDone()
		keys = []key.Binding{k.Quit}
	}
	var b strings.Builder
	b.WriteString(titleStyle.Render(m.title()))
	b.WriteString("\n")
	b.WriteString(body)
	if m.editing != inputNone {
		b.WriteString("\n " + m.text.View() + dimStyle.Render("  (enter ok, esc cancel)"))
	}
	if m.err != nil {
		b.WriteString("\n" + errStyle.Render(indent(wrap("error: "+m.err.Error(), m.width-2), " ")))
	}
	b.WriteString("\n" + m.help.View(helpKeys(keys)))
	return fit(b.String(), m.width, m.height)
}

func withHelp(b key.Binding, desc string) key.Binding {
	b.SetHelp(b.Help().Key, desc)
	return b
}

func (m Model) title() string {
	names := map[screen]string{screenScan: "1/5 finding phones", screenPhones: "1/5 phones", screenInventory: "2/5 inventory",
		screenPlan: "3/5 plan", screenApply: "4/5 apply", screenDone: "5/5 done"}
	return "phonefarm init · " + names[m.screen]
}

func (m Model) viewPhones() string {
	if len(m.decisions) == 0 {
		return "\n No phones found. Plug one in over USB (with USB debugging on, or in its\n bootloader), or press a to add an SSH host (a phone running postmarketOS\n or another Linux).\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n  %-14s %-24s %-27s %s\n", "NAME", "FOUND", "USE", "ROLE")
	for i, d := range m.decisions {
		cur := "  "
		if i == m.cursor {
			cur = "> "
		}
		role := d.Role
		if d.Use == UseSkip || d.Use == UseFlash {
			role = "-"
		}
		line := fmt.Sprintf("%s%-14s %-24s %-27s %s", cur, clip(d.Name, 14), clip(d.Found.Via+" "+d.Found.Address, 24), d.Use, role)
		if i == m.cursor {
			line = selStyle.Render(line)
		}
		b.WriteString(line + "\n")
	}
	b.WriteString("\n" + m.details(m.decisions[m.cursor]))
	return b.String()
}

// details says what phonefarm knows of a phone, beside the choice.
func (m Model) details(d Decision) string {
	f := d.Found
	var lines []string
	head := f.Model
	if f.Device != nil {
		head = fmt.Sprintf("%s (postmarketOS device %s, %s)", f.Device.Name, f.Device.Codename, f.Device.Category)
	}
	if head == "" {
		head = f.Address
	}
	lines = append(lines, d.Name+": "+head)
	if f.Err != nil {
		lines = append(lines, errStyle.Render("cannot be used: "+f.Err.Error()))
	}
	if fs := f.Facts; fs != nil {
		desc := fmt.Sprintf("%s · %s · %d CPUs · %d MiB", fs.OS.Name, fs.Arch, fs.CPUs, fs.Memory.Total>>20)
		if fs.Init != "" && fs.Init != "android" {
			desc += " · " + fs.Init
		}
		lines = append(lines, desc)
		if fs.Battery != nil {
			lines = append(lines, fmt.Sprintf("battery %d%%", fs.Battery.CapacityPercent))
		}
	}
	if f.Kernel != "" {
		v := okStyle.Render("kernel config " + f.Kernel)
		if f.Kernel != "pass" {
			v = warnStyle.Render("kernel config " + f.Kernel)
		}
		lines = append(lines, v)
	}
	for _, c := range f.Checks {
		lines = append(lines, warnStyle.Render("failed check "+c))
	}
	switch d.Use {
	case UseFlash:
		if u := f.Unlock; u != nil {
			lines = append(lines, "unlock ("+u.Manufacturer+"): "+u.Outlook)
			if u.Automatic() {
				lines = append(lines, "phonefarm sends fastboot "+u.Command+"; "+u.OnPhone)
			} else {
				lines = append(lines, "phonefarm cannot unlock this phone itself")
			}
		}
		lines = append(lines, fmt.Sprintf("after init: phonefarm flash -f %s %s, then phonefarm init again", m.opts.Path, d.Name))
	case UseAgent:
		if fs := f.Facts; fs != nil && fs.OS.Android != nil {
			lines = append(lines, fmt.Sprintf("Android %s (SDK %d): phonefarm's rootless agent runs pods under proot", fs.OS.Android.Release, fs.OS.Android.SDK))
		}
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(indent(wrap(l, m.width-3), " ") + "\n")
	}
	return b.String()
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

func (m Model) viewInventory() string {
	var b strings.Builder
	what := "new file"
	if len(existingNames(m.opts.Path)) > 0 {
		what = "the phones are added to it"
	}
	fmt.Fprintf(&b, "\n File: %s (%s)\n Farm: %s\n", short(m.opts.Path), what, m.settings.Farm)
	if len(m.failed) > 0 {
		b.WriteString("\n Checks that failed (space skips one; the inventory records why):\n")
		for i, f := range m.failed {
			cur, box := "  ", "[ ]"
			if i == m.skipAt {
				cur = "> "
			}
			if f.skip {
				box = "[x]"
			}
			fmt.Fprintf(&b, " %s%s %s  on %s\n", cur, box, f.id, strings.Join(f.phones, ", "))
		}
	}
	b.WriteString("\n" + dimStyle.Render(" --- "+short(m.opts.Path)+" ---") + "\n")
	lines := strings.Split(strings.TrimRight(string(m.inventory), "\n"), "\n")
	room := max(m.height-len(strings.Split(b.String(), "\n"))-4, 3)
	if len(lines) > room {
		lines = append(lines[:room-1], fmt.Sprintf("... (%d more lines)", len(lines)-room+1))
	}
	for _, l := range lines {
		b.WriteString(" " + dimStyle.Render(clip(l, m.width-2)) + "\n")
	}
	return b.String()
}

func (m Model) viewPlan() string {
	if m.plan == nil && m.err == nil {
		return fmt.Sprintf("\n %s Reading the phones and planning...\n", m.spin.View())
	}
	if m.plan == nil {
		return ""
	}
	var lines []string
	for _, w := range m.warnings {
		lines = append(lines, warnStyle.Render("warning: "+w))
	}
	blocked := 0
	for _, pp := range m.plan.Phones {
		head := fmt.Sprintf("%s (%s)", pp.Phone, pp.Stage)
		switch {
		case pp.Blocked != nil:
			blocked++
			lines = append(lines, errStyle.Render(head+": blocked: "+pp.Blocked.Error()))
		case len(pp.Steps) == 0:
			lines = append(lines, head+": no changes")
		default:
			lines = append(lines, fmt.Sprintf("%s: %d changes", head, len(pp.Steps)))
			for _, s := range pp.Steps {
				lines = append(lines, "  + "+s.Title()+dimStyle.Render("  ("+s.Why()+")"))
			}
		}
		for _, n := range pp.Notes {
			lines = append(lines, warnStyle.Render("  ! "+n))
		}
	}
	sum := fmt.Sprintf("Plan: %d changes on %s", m.plan.Changes(), plural(len(m.plan.Phones)-blocked, "phone"))
	if blocked > 0 {
		sum += fmt.Sprintf(", %d blocked (apply converges the others)", blocked)
	}
	// The steps scroll; the plan's sum stays in view.
	room := max(m.height-7, 3)
	start := min(m.scroll, max(len(lines)-room, 0))
	end := min(start+room, len(lines))
	var b strings.Builder
	b.WriteString("\n")
	for _, l := range lines[start:end] {
		b.WriteString(" " + clip(l, m.width-2) + "\n")
	}
	if end < len(lines) {
		b.WriteString(dimStyle.Render(fmt.Sprintf(" ... %d more lines (↓ scrolls)", len(lines)-end)) + "\n")
	}
	b.WriteString("\n " + sum + ".\n")
	return b.String()
}

func (m Model) viewApply() string {
	var b strings.Builder
	b.WriteString("\n")
	for _, pp := range m.plan.Phones {
		r := m.rows[pp.Phone]
		if r == nil {
			continue
		}
		state := r.step
		switch {
		case r.total > 0:
			state = fmt.Sprintf("%s %s %d/%d MB", clip(r.step, 24), bar(r.done, r.total, 20), r.done>>20, r.total>>20)
		case r.outcome != "":
			state = r.outcome
			if r.step != "" {
				state += ": " + r.step
			}
		}
		mark := m.spin.View()
		switch provision.Outcome(r.outcome) {
		case provision.Changed, provision.Unchanged:
			mark = okStyle.Render("✓")
		case provision.Failed, provision.Blocked, provision.Interrupted:
			mark = errStyle.Render("✗")
		}
		if r.outcome == "" && (r.step == "blocked" || r.step == "no changes") {
			mark = " "
		}
		fmt.Fprintf(&b, " %s %-14s %s\n", mark, clip(pp.Phone, 14), clip(state, m.width-20))
	}
	switch {
	case m.stopping && m.cancel != nil:
		b.WriteString("\n" + warnStyle.Render(indent(wrap("stopping: each phone finishes its current step", m.width-2), " ")) + "\n")
	case m.summary != nil && m.stopping:
		b.WriteString("\n" + warnStyle.Render(indent(wrap("stopped: phones keep what was applied so far; phonefarm apply -f "+m.opts.Path+" converges them", m.width-2), " ")) + "\n")
	case m.summary != nil && m.err != nil:
		b.WriteString("\n" + errStyle.Render(indent(wrap("apply did not converge every phone; fix what is said below, then run phonefarm apply -f "+m.opts.Path, m.width-2), " ")) + "\n")
	case m.summary != nil:
		fmt.Fprintf(&b, "\n %s Writing the kubeconfig and reading the nodes...\n", m.spin.View())
	}
	room := max(m.height-len(strings.Split(b.String(), "\n"))-4, 2)
	b.WriteString(dimStyle.Render(" --- log ---") + "\n")
	logs := m.logLines
	if len(logs) > room {
		logs = logs[len(logs)-room:]
	}
	for _, l := range logs {
		b.WriteString(" " + dimStyle.Render(clip(l, m.width-2)) + "\n")
	}
	return b.String()
}

func (m Model) viewDone() string {
	var b strings.Builder
	if m.err == nil {
		b.WriteString("\n " + okStyle.Render("Your farm runs.") + "\n\n")
	} else {
		b.WriteString("\n")
	}
	if len(m.nodes) > 0 {
		fmt.Fprintf(&b, "  %-16s %-9s %-16s %s\n", "NODE", "STATUS", "ADDRESS", "ROLES")
		for _, n := range m.nodes {
			fmt.Fprintf(&b, "  %-16s %-9s %-16s %s\n", clip(n.Name, 16), n.Status, n.Address, n.Roles)
		}
	}
	if m.kubeconfig != "" {
		fmt.Fprintf(&b, "\n Kubeconfig: %s\n", short(m.kubeconfig))
		b.WriteString("\n Next:\n")
		fmt.Fprintf(&b, "   export KUBECONFIG=%s\n", m.kubeconfig)
		b.WriteString("   kubectl get nodes\n")
		fmt.Fprintf(&b, "   phonefarm plan -f %s    (after editing it)\n", m.opts.Path)
	}
	return b.String()
}

// bar is a progress bar of width.
func bar(done, total int64, width int) string {
	fill := int(done * int64(width) / max(total, 1))
	return "[" + strings.Repeat("#", fill) + strings.Repeat(".", width-fill) + "]"
}

// clip shortens s to n cells.
func clip(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if lipgloss.Width(s) <= n {
		return s
	}
	r := []rune(s)
	for len(r) > 0 && lipgloss.Width(string(r)) > n-1 {
		r = r[:len(r)-1]
	}
	return string(r) + "…"
}

// wrap breaks s into lines of at most n cells.
func wrap(s string, n int) string {
	if n < 20 {
		n = 20
	}
	return lipgloss.NewStyle().Width(n).Render(s)
}

// fit keeps a frame within the terminal: at most height lines.
func fit(s string, width, height int) string {
	lines := strings.Split(s, "\n")
	if height > 0 && len(lines) > height {
		lines = append(lines[:height-1], lines[len(lines)-1])
	}
	return strings.Join(lines, "\n")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
