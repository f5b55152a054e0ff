// Package conformance runs Kubernetes' own end-to-end tests (e2e.test,
// built by scripts/build-e2e.sh) against a cluster phonefarm built, and
// counts their results per group: tests nobody at phonefarm wrote, that
// say whether pods, volumes, Services and DNS behave as Kubernetes
// requires.
package conformance

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
)

// Group is a set of [Conformance] tests by the name Kubernetes gives them.
type Group struct {
	Name string
	// Match selects the group's tests by their full name.
	Match string
	// CI are the representative tests run on every change (by a
	// substring of their name); the whole group runs with Full.
	CI []string
}

// Groups are the [Conformance] tests phonefarm's farms must pass: pods and
// their logs and exec, volumes from ConfigMaps, Secrets, the downward API
// and emptyDir, Services and cluster DNS.
var Groups = []Group{
	{Name: "sig-node Pods", Match: `\[sig-node\] Pods `, CI: []string{
		"should be submitted and removed", "should get a host IP", "should support remote command execution over websockets",
		"should support retrieving logs from the container over websockets"}},
	{Name: "sig-node Kubelet", Match: `\[sig-node\] Kubelet `, CI: []string{"should print the output to logs"}},
	{Name: "Downward API", Match: `\[sig-(node|storage)\] Downward API`, CI: []string{
		"should provide pod name, namespace and IP address as env vars", "should provide podname only"}},
	{Name: "ConfigMap", Match: `\[sig-(node|storage)\] ConfigMap `, CI: []string{
		"should be consumable from pods in volume [NodeConformance]", "should be consumable via environment variable", "should be consumable via the environment"}},
	{Name: "Secrets", Match: `\[sig-(node|storage)\] Secrets `, CI: []string{
		"should be consumable from pods in volume [NodeConformance]", "should be consumable from pods in env vars", "should be consumable via the environment"}},
	{Name: "EmptyDir", Match: `\[sig-storage\] EmptyDir volumes `, CI: []string{
		"should support (root,0644,tmpfs)", "volume on default medium should have the correct mode"}},
	{Name: "sig-network Services", Match: `\[sig-network\] Services `, CI: []string{
		"should serve a basic endpoint from pods", "should be able to create a functioning NodePort service"}},
	{Name: "sig-network DNS", Match: `\[sig-network\] DNS `, CI: []string{
		"should provide DNS for services", "should provide DNS for the cluster"}},
}

// Focus is the --ginkgo.focus expression for the groups: every
// [Conformance] test of each with full, else the CI tests.
func Focus(full bool) string {
	var parts []string
	for _, g := range Groups {
		if full {
			parts = append(parts, g.Match+`.*\[Conformance\]`)
			continue
		}
		for _, t := range g.CI {
			parts = append(parts, g.Match+`.*`+regexp.QuoteMeta(t)+`.*\[Conformance\]`)
		}
	}
	return strings.Join(parts, "|")
}

// Case is one test's result.
type Case struct {
	Name    string
	Status  string // passed, failed or skipped
	Message string // why it failed
	Seconds float64
}

// Result counts one group's cases.
type Result struct {
	Group                   string
	Passed, Failed, Skipped int
	Failures                []Case
}

// Options shape a run.
type Options struct {
	E2E        string // the e2e.test binary
	Kubeconfig string
	ReportDir  string
	Full       bool
	// Focus, when set, selects the tests instead of the groups' (Focus
	// and Full): e.g. FocusOn for a handful of them.
	Focus string
	// Output receives e2e.test's own output.
	Output io.Writer
}

// Run runs the groups' tests and returns the counts per group. An error
// means e2e.test could not run or report; failed tests are in the results.
func Run(ctx context.Context, o Options) ([]Result, error) {
	if err := os.MkdirAll(o.ReportDir, 0o755); err != nil {
		return nil, err
	}
	report := filepath.Join(o.ReportDir, "junit.xml")
	focus := o.Focus
	if focus == "" {
		focus = Focus(o.Full)
	}
	cmd := exec.CommandContext(ctx, o.E2E,
		"--provider=skeleton", "--kubeconfig="+o.Kubeconfig,
		"--ginkgo.focus="+focus, "--ginkgo.skip=\\[Disruptive\\]|\\[Flaky\\]",
		"--ginkgo.junit-report="+report, "--ginkgo.no-color", "--ginkgo.timeout=2h",
		"--report-dir="+o.ReportDir)
	cmd.Dir = o.ReportDir
	cmd.Stdout, cmd.Stderr = o.Output, o.Output
	runErr := cmd.Run()
	f, err := os.Open(report)
	if err != nil {
		return nil, fmt.Errorf("e2e.test wrote no report (%v): %w", runErr, err)
	}
	defer f.Close()
	cases, err := ParseJUnit(f)
	if err != nil {
		return nil, err
	}
	results := Count(cases, regexp.MustCompile(focus))
	ran := 0
	for _, r := range results {
		ran += r.Passed + r.Failed + r.Skipped
	}
	if ran == 0 {
		// The suite's setup (it waits for every node to be schedulable,
		// for example) failed before any test: its output says why.
		return results, fmt.Errorf("e2e.test ran none of the selected tests (exit: %v); its suite setup failed, see its output", runErr)
	}
	return results, nil
}

// FocusOn selects tests by substrings of their names.
func FocusOn(names ...string) string {
	var parts []string
	for _, n := range names {
		parts = append(parts, regexp.QuoteMeta(n))
	}
	return strings.Join(parts, "|")
}

// ParseJUnit reads Ginkgo's JUnit report: the specs that ran, not the
// suite's setup nodes.
func ParseJUnit(r io.Reader) ([]Case, error) {
	var doc struct {
		Suites []struct {
			Cases []struct {
				Name    string  `xml:"name,attr"`
				Status  string  `xml:"status,attr"`
				Time    float64 `xml:"time,attr"`
				Skipped *struct {
					Message string `xml:"message,attr"`
				} `xml:"skipped"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
				Error *struct {
					Message string `xml:"message,attr"`
				} `xml:"error"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.NewDecoder(r).Decode(&doc); err != nil {
		return nil, fmt.Errorf("read e2e JUnit report: %w", err)
	}
	var out []Case
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			if !strings.HasPrefix(c.Name, "[It] ") {
				continue // BeforeSuite, AfterSuite, ReportAfterSuite
			}
			k := Case{Name: strings.TrimPrefix(c.Name, "[It] "), Status: "passed", Seconds: c.Time}
			switch {
			case c.Failure != nil:
				k.Status, k.Message = "failed", c.Failure.Message
			case c.Error != nil:
				k.Status, k.Message = "failed", c.Error.Message
			case c.Skipped != nil || c.Status == "skipped" || c.Status == "pending":
				k.Status = "skipped"
			}
			out = append(out, k)
		}
	}
	return out, nil
}

// Count sorts the cases focus selects into the groups (Ginkgo reports every
// other spec as skipped); a selected case in no group is counted under
// "other".
func Count(cases []Case, focus *regexp.Regexp) []Result {
	res := make([]Result, len(Groups)+1)
	for i, g := range Groups {
		res[i].Group = g.Name
	}
	res[len(Groups)].Group = "other"
	for _, c := range cases {
		if !focus.MatchString(c.Name) {
			continue
		}
		i := len(Groups)
		for j, g := range Groups {
			if regexp.MustCompile(g.Match).MatchString(c.Name) {
				i = j
				break
			}
		}
		switch c.Status {
		case "passed":
			res[i].Passed++
		case "failed":
			res[i].Failed++
			res[i].Failures = append(res[i].Failures, c)
		default:
			res[i].Skipped++
		}
	}
	if r := res[len(Groups)]; r.Passed+r.Failed+r.Skipped == 0 {
		res = res[:len(Groups)]
	}
	return res
}

// Print writes the counts as a table, and each failure.
func Print(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tPASSED\tFAILED\tSKIPPED")
	var failures []Case
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", r.Group, r.Passed, r.Failed, r.Skipped)
		failures = append(failures, r.Failures...)
	}
	tw.Flush()
	sort.Slice(failures, func(i, j int) bool { return failures[i].Name < failures[j].Name })
	for _, f := range failures {
		fmt.Fprintf(w, "FAILED %s\n  %s\n", f.Name, firstLine(f.Message))
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
