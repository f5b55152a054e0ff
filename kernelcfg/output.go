package kernelcfg

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// TextOptions adjusts WriteText.
type TextOptions struct {
	// Color adds ANSI colours (for terminals).
	Color bool
	// All lists satisfied rules too, not only missing ones.
	All bool
}

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiDim    = "\x1b[2m"
)

type painter bool

func (p painter) paint(code, s string) string {
	if !p {
		return s
	}
	return code + s + ansiReset
}

// WriteText writes reports for people, grouped by verdict: failing configs
// first, then those with warnings, then passing ones.
func WriteText(w io.Writer, reports []Report, opts TextOptions) error {
	bw := bufio.NewWriter(w)
	p := painter(opts.Color)
	groups := []struct {
		v     Verdict
		title string
		color string
	}{
		{Fail, "FAIL: a required option is missing", ansiRed},
		{Warn, "WARN: only recommended options are missing", ansiYellow},
		{Pass, "PASS: every checked option is enabled", ansiGreen},
	}
	first := true
	for _, g := range groups {
		var members []Report
		for _, r := range reports {
			if r.Verdict() == g.v {
				members = append(members, r)
			}
		}
		if len(members) == 0 {
			continue
		}
		if !first {
			bw.WriteString("\n")
		}
		first = false
		fmt.Fprintf(bw, "%s (%d)\n", p.paint(ansiBold+g.color, g.title), len(members))
		for _, r := range members {
			writeTextReport(bw, r, opts, p)
		}
	}
	return bw.Flush()
}

func writeTextReport(w *bufio.Writer, r Report, opts TextOptions, p painter) {
	fmt.Fprintf(w, "\n  %s  %s  [%s]\n", p.paint(ansiBold, r.Config), kernelLabel(r), strings.Join(r.Profiles, ","))
	width := 0
	for _, res := range r.Results {
		width = max(width, len(res.ID))
	}
	section := func(title, color, mark string, list []Result) {
		if len(list) == 0 {
			return
		}
		fmt.Fprintf(w, "    %s (%d):\n", p.paint(color, title), len(list))
		for _, res := range list {
			fmt.Fprintf(w, "      %s %s  %-20s %s\n", p.paint(color, mark), p.paint(color, pad(res.ID, width)), stateText(res), res.Reason)
		}
	}
	section("required, missing", ansiRed, "x", r.MissingRequired())
	section("recommended, missing", ansiYellow, "!", r.MissingRecommended())
	ok := 0
	var passed []Result
	for _, res := range r.Results {
		if res.OK() {
			ok++
			passed = append(passed, res)
		}
	}
	if opts.All {
		section("enabled", ansiGreen, "+", passed)
	}
	fmt.Fprintf(w, "    %d of %d checks pass\n", ok, len(r.Results))
	for _, u := range r.Unevaluated {
		fmt.Fprintf(w, "    %s\n", p.paint(ansiDim, "not evaluated: "+u.ID+" ("+u.Why+")"))
	}
}

func pad(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return s + strings.Repeat(" ", n-len(s))
}

func kernelLabel(r Report) string {
	v := r.Version
	if v == "" {
		v = "version unknown"
	}
	if r.Arch != "" {
		return "Linux " + v + " " + r.Arch
	}
	return "Linux " + v
}

// stateText is the short state column: "absent", "not set, line 12",
// "=y, line 3".
func stateText(r Result) string {
	name := ""
	if len(r.Options) > 1 && r.Option != "" {
		name = r.Option
	}
	switch r.State {
	case StateAbsent:
		return "absent"
	case StateDisabled:
		if r.Value == "" {
			return strings.TrimSpace(name+" not set") + fmt.Sprintf(", line %d", r.Line)
		}
		return fmt.Sprintf("%s=%s, line %d", name, r.Value, r.Line)
	default:
		return fmt.Sprintf("%s=%s, line %d", name, r.Value, r.Line)
	}
}

// WriteSummary writes one row per report: config, kernel version,
// architecture, verdict, required options missing and warnings.
func WriteSummary(w io.Writer, reports []Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONFIG\tKERNEL\tARCH\tVERDICT\tREQUIRED MISSING\tWARNINGS")
	var counts [3]int
	for _, r := range reports {
		v := r.Verdict()
		counts[v]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", r.Config, orDash(r.Version), orDash(r.Arch), v, len(r.MissingRequired()), len(r.MissingRecommended()))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d configs: %d fail, %d warn, %d pass\n", len(reports), counts[Fail], counts[Warn], counts[Pass])
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// jsonReport is a Report with its verdict and missing options spelled out.
type jsonReport struct {
	Report
	Verdict            Verdict  `json:"verdict"`
	MissingRequired    []string `json:"missingRequired"`
	MissingRecommended []string `json:"missingRecommended"`
}

type jsonOutput struct {
	Configs []jsonReport `json:"configs"`
	Summary struct {
		Configs int `json:"configs"`
		Fail    int `json:"fail"`
		Warn    int `json:"warn"`
		Pass    int `json:"pass"`
	} `json:"summary"`
}

// WriteJSON writes reports as one JSON document.
func WriteJSON(w io.Writer, reports []Report) error {
	out := jsonOutput{Configs: make([]jsonReport, 0, len(reports))}
	for _, r := range reports {
		jr := jsonReport{Report: r, Verdict: r.Verdict(), MissingRequired: ids(r.MissingRequired()), MissingRecommended: ids(r.MissingRecommended())}
		if jr.Results == nil {
			jr.Results = []Result{}
		}
		out.Configs = append(out.Configs, jr)
		switch jr.Verdict {
		case Fail:
			out.Summary.Fail++
		case Warn:
			out.Summary.Warn++
		default:
			out.Summary.Pass++
		}
	}
	out.Summary.Configs = len(reports)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func ids(rs []Result) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// WriteGitHub writes GitHub Actions workflow commands: an ::error
// annotation per missing required option and a ::warning per missing
// recommended one, at the option's line when the config mentions it.
func WriteGitHub(w io.Writer, reports []Report) error {
	bw := bufio.NewWriter(w)
	for _, r := range reports {
		file := filepath.ToSlash(r.Config)
		for _, res := range r.Results {
			if res.OK() {
				continue
			}
			cmd := "warning"
			if res.Severity == Required {
				cmd = "error"
			}
			props := "file=" + ghProperty(file)
			if res.Line > 0 {
				props += fmt.Sprintf(",line=%d", res.Line)
			}
			title := fmt.Sprintf("%s missing (%s)", res.ID, strings.Join(res.Profiles, ", "))
			props += ",title=" + ghProperty(title)
			fmt.Fprintf(bw, "::%s %s::%s\n", cmd, props, ghData(message(r, res)))
		}
	}
	return bw.Flush()
}

// message is the one-line explanation used by the GitHub and SARIF output.
func message(r Report, res Result) string {
	return fmt.Sprintf("%s is %s by %s (kernel %s) but %s: %s", res.ID, res.Severity, strings.Join(res.Profiles, ", "), orDash(r.Version), describe(res), res.Reason)
}

func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func ghProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

// FragmentOptions adjusts WriteFragment.
type FragmentOptions struct {
	// RequiredOnly leaves recommended options out.
	RequiredOnly bool
}

// WriteFragment writes a Kconfig fragment that enables every option the
// reports find missing (for scripts/kconfig/merge_config.sh). For an any-of
// rule it enables the first option. Options are listed once, required
// ones first.
func WriteFragment(w io.Writer, reports []Report, opts FragmentOptions) error {
	type entry struct {
		option   string
		severity Severity
		profiles []string
		reason   string
		configs  int
	}
	var list []*entry
	byOption := map[string]*entry{}
	for _, r := range reports {
		for _, res := range r.Results {
			if res.OK() || (opts.RequiredOnly && res.Severity != Required) {
				continue
			}
			opt := res.Options[0]
			e, ok := byOption[opt]
			if !ok {
				e = &entry{option: opt, severity: res.Severity, reason: res.Reason}
				byOption[opt] = e
				list = append(list, e)
			}
			e.configs++
			if res.Severity > e.severity {
				e.severity, e.reason = res.Severity, res.Reason
			}
			for _, p := range res.Profiles {
				if !containsString(e.profiles, p) {
					e.profiles = append(e.profiles, p)
				}
			}
		}
	}
	bw := bufio.NewWriter(w)
	bw.WriteString("# Kconfig fragment written by phonefarm kernelcfg: it enables the options\n")
	bw.WriteString("# the checked configs lack. Merge it with scripts/kconfig/merge_config.sh\n")
	bw.WriteString("# and check the result again: options whose dependencies are off stay off.\n")
	if len(list) == 0 {
		bw.WriteString("# Nothing is missing.\n")
	}
	for _, sev := range []Severity{Required, Recommended} {
		wrote := false
		for _, e := range list {
			if e.severity != sev {
				continue
			}
			if !wrote {
				fmt.Fprintf(bw, "\n# --- %s ---\n", sev)
				wrote = true
			}
			fmt.Fprintf(bw, "# %s (%s)\n%s=y\n", e.reason, strings.Join(e.profiles, ", "), e.option)
		}
	}
	return bw.Flush()
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
