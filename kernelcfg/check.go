package kernelcfg

import (
	"slices"
	"strings"
)

// State is what a checked configuration says about a rule's options.
type State int

const (
	// StateAbsent: no line mentions any of the options (the symbol does not
	// exist in this kernel, or its dependencies are off).
	StateAbsent State = iota
	// StateDisabled: an option is present but off ("is not set", =n, or a
	// non-tristate value).
	StateDisabled
	// StateModule: an option is =m.
	StateModule
	// StateBuiltin: an option is =y.
	StateBuiltin
)

func (s State) String() string {
	switch s {
	case StateAbsent:
		return "absent"
	case StateDisabled:
		return "disabled"
	case StateModule:
		return "module"
	case StateBuiltin:
		return "builtin"
	}
	return "unknown"
}

// MarshalText renders the state as absent, disabled, module or builtin.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Verdict is the outcome for one configuration.
type Verdict int

const (
	// Pass: every checked option is enabled.
	Pass Verdict = iota
	// Warn: only recommended options are missing.
	Warn
	// Fail: a required option is missing.
	Fail
)

func (v Verdict) String() string {
	switch v {
	case Fail:
		return "fail"
	case Warn:
		return "warn"
	}
	return "pass"
}

// MarshalText renders the verdict as pass, warn or fail.
func (v Verdict) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// Result is one checked rule.
type Result struct {
	// ID is CONFIG_X, or CONFIG_X|CONFIG_Y for an any-of rule.
	ID       string   `json:"id"`
	Options  []string `json:"options"`
	Severity Severity `json:"severity"`
	Reason   string   `json:"reason"`
	// Profiles lists every selected profile that has this rule.
	Profiles []string `json:"profiles"`
	State    State    `json:"state"`
	// Option is the option the state was read from: the enabled one, or
	// the first one the configuration mentions; "" when absent.
	Option string `json:"option,omitempty"`
	// Value is the option's value as written ("y", "m", "n", ...).
	Value string `json:"value,omitempty"`
	// Line is the 1-based line of Option in the configuration, 0 if absent.
	Line int `json:"line,omitempty"`
}

// OK reports whether the rule is satisfied.
func (r Result) OK() bool { return r.State == StateModule || r.State == StateBuiltin }

// Report is the outcome of checking one configuration.
type Report struct {
	// Config names the configuration (its path).
	Config   string   `json:"config"`
	Version  string   `json:"kernelVersion,omitempty"`
	Arch     string   `json:"arch,omitempty"`
	Profiles []string `json:"profiles"`
	Results  []Result `json:"results"`
	// Unevaluated lists rules that were skipped because the kernel version
	// or architecture they depend on is unknown.
	Unevaluated []Skipped `json:"unevaluated,omitempty"`
}

// Skipped is a rule Check could not evaluate.
type Skipped struct {
	ID  string `json:"id"`
	Why string `json:"why"`
}

// Verdict summarises the report.
func (r Report) Verdict() Verdict {
	v := Pass
	for _, res := range r.Results {
		if res.OK() {
			continue
		}
		if res.Severity == Required {
			return Fail
		}
		v = Warn
	}
	return v
}

// MissingRequired lists the unsatisfied required rules.
func (r Report) MissingRequired() []Result { return r.missing(Required) }

// MissingRecommended lists the unsatisfied recommended rules.
func (r Report) MissingRecommended() []Result { return r.missing(Recommended) }

func (r Report) missing(s Severity) []Result {
	var out []Result
	for _, res := range r.Results {
		if !res.OK() && res.Severity == s {
			out = append(out, res)
		}
	}
	return out
}

// Check evaluates cfg against profiles. Rules are gated by cfg's kernel
// version and architecture; a rule several profiles share is checked once,
// at the highest severity any of them gives it.
func Check(cfg *Config, profiles ...Profile) Report {
	rep := Report{Config: cfg.Name, Version: cfg.Version.String(), Arch: cfg.Arch}
	index := map[string]int{}
	for _, p := range profiles {
		rep.Profiles = append(rep.Profiles, p.Name)
		for _, rule := range p.Rules {
			id := rule.ID()
			if !rule.Versions.Unbounded() && !cfg.Version.Known() {
				rep.Unevaluated = appendSkipped(rep.Unevaluated, Skipped{ID: id, Why: "kernel version unknown"})
				continue
			}
			if !rule.Versions.Contains(cfg.Version) {
				continue
			}
			if len(rule.Arches) > 0 {
				if cfg.Arch == "" {
					rep.Unevaluated = appendSkipped(rep.Unevaluated, Skipped{ID: id, Why: "architecture unknown"})
					continue
				}
				if !slices.Contains(rule.Arches, cfg.Arch) {
					continue
				}
			}
			if i, ok := index[id]; ok {
				res := &rep.Results[i]
				if !slices.Contains(res.Profiles, p.Name) {
					res.Profiles = append(res.Profiles, p.Name)
				}
				if rule.Severity > res.Severity {
					res.Severity, res.Reason = rule.Severity, rule.Reason
				}
				continue
			}
			index[id] = len(rep.Results)
			rep.Results = append(rep.Results, evaluate(cfg, rule, id, p.Name))
		}
	}
	return rep
}

func evaluate(cfg *Config, rule Rule, id, profile string) Result {
	res := Result{
		ID: id, Options: prefixed(rule.Options), Severity: rule.Severity,
		Reason: rule.Reason, Profiles: []string{profile},
	}
	for _, name := range rule.Options {
		o, ok := cfg.Options[name]
		if !ok {
			continue
		}
		st := StateDisabled
		switch o.Kind {
		case KindYes:
			st = StateBuiltin
		case KindModule:
			st = StateModule
		}
		if st > res.State {
			res.State, res.Option, res.Value, res.Line = st, configPrefix+o.Name, o.Value, o.Line
		}
	}
	return res
}

func prefixed(opts []string) []string {
	out := make([]string, len(opts))
	for i, o := range opts {
		out[i] = configPrefix + o
	}
	return out
}

func appendSkipped(list []Skipped, s Skipped) []Skipped {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// describe renders what the configuration says about a missing rule:
// "is not set (line 12)", "=n (line 3)", "is absent".
func describe(r Result) string {
	switch r.State {
	case StateBuiltin:
		return "=y"
	case StateModule:
		return "=m"
	case StateDisabled:
		if r.Value == "" {
			return r.Option + " is not set"
		}
		return r.Option + "=" + r.Value
	}
	if len(r.Options) > 1 {
		return "none of " + strings.Join(r.Options, ", ") + " is in the config"
	}
	return "not in the config"
}
