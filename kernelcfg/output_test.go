package kernelcfg_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	_ "github.com/owenrumney/go-sarif/v3/pkg/report/v210/sarif"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/phonefarm/phonefarm/kernelcfg"
)

var testdataConfigs = []string{"fairphone-fp1.config", "samsung-m20lte.config", "postmarketos-stericsson.config"}

// testReports checks the testdata configs under the given profiles.
func testReports(t *testing.T, profiles string) []kernelcfg.Report {
	t.Helper()
	ps, err := kernelcfg.LookupProfiles(profiles)
	if err != nil {
		t.Fatal(err)
	}
	var reps []kernelcfg.Report
	for _, f := range testdataConfigs {
		cfg := loadTestdata(t, f)
		cfg.Name = "testdata/" + f
		reps = append(reps, kernelcfg.Check(cfg, ps...))
	}
	return reps
}

// readyReports are a config with every k3s option (pass) and the same
// config without USER_NS (warn).
func readyReports(t *testing.T) []kernelcfg.Report {
	t.Helper()
	k3s := profile(t, "k3s")
	v, _ := kernelcfg.ParseVersion("6.6.1")
	var b strings.Builder
	b.WriteString("# Linux/arm64 6.6.1 Kernel Configuration\n")
	for _, r := range k3s.Rules {
		if r.Versions.Contains(v) {
			b.WriteString("CONFIG_" + r.Options[0] + "=m\n")
		}
	}
	var reps []kernelcfg.Report
	for _, c := range []struct{ name, text string }{
		{"ready.config", b.String()},
		{"no-userns.config", strings.Replace(b.String(), "CONFIG_USER_NS=m", "# CONFIG_USER_NS is not set", 1)},
	} {
		cfg, err := kernelcfg.Parse([]byte(c.text), kernelcfg.ParseOptions{Name: c.name})
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, kernelcfg.Check(cfg, k3s))
	}
	return reps
}

func TestWriteText(t *testing.T) {
	reps := append(readyReports(t), testReports(t, "k3s")...)
	tests := []struct {
		name string
		opts kernelcfg.TextOptions
	}{
		{"plain", kernelcfg.TextOptions{}},
		{"color", kernelcfg.TextOptions{Color: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := kernelcfg.WriteText(&b, reps, tt.opts); err != nil {
				t.Fatal(err)
			}
			hasEsc := bytes.Contains(b.Bytes(), []byte("\x1b["))
			if hasEsc != tt.opts.Color {
				t.Errorf("got escape codes %v, want %v", hasEsc, tt.opts.Color)
			}
			golden(t, strings.ReplaceAll(t.Name(), "/", "_"), b.Bytes())
		})
	}
}

func TestWriteSummary(t *testing.T) {
	var b bytes.Buffer
	if err := kernelcfg.WriteSummary(&b, append(readyReports(t), testReports(t, "k3s,nftables")...)); err != nil {
		t.Fatal(err)
	}
	golden(t, t.Name(), b.Bytes())
}

func TestWriteJSON(t *testing.T) {
	reps := testReports(t, "k3s")
	var b bytes.Buffer
	if err := kernelcfg.WriteJSON(&b, reps); err != nil {
		t.Fatal(err)
	}
	golden(t, t.Name(), b.Bytes())

	var doc struct {
		Configs []struct {
			Config          string `json:"config"`
			KernelVersion   string `json:"kernelVersion"`
			Verdict         string `json:"verdict"`
			MissingRequired []string
			Results         []struct {
				ID    string `json:"id"`
				State string `json:"state"`
				Line  int    `json:"line"`
			} `json:"results"`
		} `json:"configs"`
		Summary struct{ Configs, Fail, Warn, Pass int } `json:"summary"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if got, want := len(doc.Configs), len(reps); got != want {
		t.Fatalf("got %d configs, want %d", got, want)
	}
	for i, c := range doc.Configs {
		if c.Verdict != reps[i].Verdict().String() || c.KernelVersion != reps[i].Version {
			t.Errorf("%s: got verdict %s version %s, want %s %s", c.Config, c.Verdict, c.KernelVersion, reps[i].Verdict(), reps[i].Version)
		}
		if got, want := len(c.MissingRequired), len(reps[i].MissingRequired()); got != want {
			t.Errorf("%s: got %d missing required, want %d", c.Config, got, want)
		}
	}
	if doc.Summary.Configs != 3 || doc.Summary.Fail != 3 {
		t.Errorf("got summary %+v, want 3 configs, 3 failing", doc.Summary)
	}
}

var ghLine = regexp.MustCompile(`^::(error|warning) file=([^,:]+)(,line=(\d+))?,title=([^:]+)::(.+)$`)

func TestWriteGitHub(t *testing.T) {
	reps := testReports(t, "k3s")
	var b bytes.Buffer
	if err := kernelcfg.WriteGitHub(&b, reps); err != nil {
		t.Fatal(err)
	}
	golden(t, t.Name(), b.Bytes())

	var errorsN, warningsN, withLine int
	for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		m := ghLine.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("got line %q, want a workflow command ::error|warning file=...::msg", line)
			continue
		}
		if m[1] == "error" {
			errorsN++
		} else {
			warningsN++
		}
		if m[4] != "" {
			withLine++
		}
	}
	var wantErr, wantWarn, wantLine int
	for _, r := range reps {
		wantErr += len(r.MissingRequired())
		wantWarn += len(r.MissingRecommended())
		for _, res := range append(r.MissingRequired(), r.MissingRecommended()...) {
			if res.Line > 0 {
				wantLine++
			}
		}
	}
	if errorsN != wantErr || warningsN != wantWarn || withLine != wantLine {
		t.Errorf("got %d errors, %d warnings, %d with a line; want %d, %d, %d", errorsN, warningsN, withLine, wantErr, wantWarn, wantLine)
	}
}

func TestWriteFragment(t *testing.T) {
	reps := testReports(t, "k3s,containers")
	var b bytes.Buffer
	if err := kernelcfg.WriteFragment(&b, reps, kernelcfg.FragmentOptions{}); err != nil {
		t.Fatal(err)
	}
	golden(t, t.Name(), b.Bytes())

	// Appending the fragment to each config (later lines win, as with
	// merge_config.sh) leaves nothing missing.
	ps, _ := kernelcfg.LookupProfiles("k3s,containers")
	for _, f := range testdataConfigs {
		data, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		merged := append(append([]byte{}, data...), b.Bytes()...)
		cfg, err := kernelcfg.Parse(merged, kernelcfg.ParseOptions{Name: f})
		if err != nil {
			t.Fatalf("parse %s with fragment: %v", f, err)
		}
		rep := kernelcfg.Check(cfg, ps...)
		if got := rep.Verdict(); got != kernelcfg.Pass {
			req, rec := missing(rep)
			t.Errorf("%s with fragment: got verdict %s (missing %v %v), want pass", f, got, req, rec)
		}
	}

	b.Reset()
	if err := kernelcfg.WriteFragment(&b, reps, kernelcfg.FragmentOptions{RequiredOnly: true}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "recommended") {
		t.Errorf("got recommended options in a required-only fragment:\n%s", b.String())
	}
}

// JUnit structure after the Ant/Jenkins JUnit XSD: which children each
// element may have, and its required attributes.
var junitShape = map[string]struct {
	children []string
	required []string
}{
	"testsuites": {children: []string{"testsuite"}, required: []string{"name", "tests", "failures", "errors"}},
	"testsuite":  {children: []string{"properties", "testcase", "system-out", "system-err"}, required: []string{"name", "tests", "failures", "errors", "skipped"}},
	"properties": {children: []string{"property"}},
	"property":   {required: []string{"name", "value"}},
	"testcase":   {children: []string{"skipped", "error", "failure", "system-out", "system-err"}, required: []string{"name", "classname"}},
	"failure":    {required: []string{"message", "type"}},
	"skipped":    {},
	"system-out": {},
}

// checkJUnitShape walks the document and checks element nesting, required
// and integer attributes, and that <properties> precede test cases.
func checkJUnitShape(t *testing.T, data []byte) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	var stack []string
	sawCase := map[int]bool{}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("junit xml does not parse: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			name := el.Name.Local
			shape, ok := junitShape[name]
			if !ok {
				t.Errorf("unexpected element <%s>", name)
			}
			if len(stack) == 0 {
				if name != "testsuites" {
					t.Errorf("got root <%s>, want <testsuites>", name)
				}
			} else {
				parent := stack[len(stack)-1]
				if !contains(junitShape[parent].children, name) {
					t.Errorf("<%s> inside <%s> is not allowed", name, parent)
				}
				if parent == "testsuite" && name == "testcase" {
					sawCase[len(stack)] = true
				}
				if parent == "testsuite" && name == "properties" && sawCase[len(stack)] {
					t.Errorf("<properties> after <testcase>; want it first")
				}
			}
			attrs := map[string]string{}
			for _, a := range el.Attr {
				attrs[a.Name.Local] = a.Value
			}
			for _, r := range shape.required {
				if _, ok := attrs[r]; !ok {
					t.Errorf("<%s> lacks required attribute %s", name, r)
				}
			}
			for _, a := range []string{"tests", "failures", "errors", "skipped"} {
				if v, ok := attrs[a]; ok {
					if _, err := strconv.Atoi(v); err != nil {
						t.Errorf("<%s %s=%q>: want an integer", name, a, v)
					}
				}
			}
			stack = append(stack, name)
		case xml.EndElement:
			if name := stack[len(stack)-1]; name == "testsuite" {
				delete(sawCase, len(stack))
			}
			stack = stack[:len(stack)-1]
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestWriteJUnit(t *testing.T) {
	reps := testReports(t, "k3s,nftables")
	// A config without a header leaves version-gated rules unevaluated.
	bare, err := kernelcfg.Parse([]byte("CONFIG_NAMESPACES=y\n"), kernelcfg.ParseOptions{Name: "bare.config"})
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := kernelcfg.LookupProfiles("k3s")
	reps = append(reps, kernelcfg.Check(bare, ps...))

	var b bytes.Buffer
	if err := kernelcfg.WriteJUnit(&b, reps); err != nil {
		t.Fatal(err)
	}
	checkJUnitShape(t, b.Bytes())

	type testcase struct {
		Name      string `xml:"name,attr"`
		Classname string `xml:"classname,attr"`
		Failure   *struct {
			Message string `xml:"message,attr"`
		} `xml:"failure"`
		Skipped   *struct{} `xml:"skipped"`
		SystemOut string    `xml:"system-out"`
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Name     string     `xml:"name,attr"`
			Tests    int        `xml:"tests,attr"`
			Failures int        `xml:"failures,attr"`
			Skipped  int        `xml:"skipped,attr"`
			Cases    []testcase `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if got, want := len(doc.Suites), len(reps); got != want {
		t.Fatalf("got %d test suites, want one per config (%d)", got, want)
	}
	var total, failures, skipped int
	for i, s := range doc.Suites {
		r := reps[i]
		if s.Name != r.Config {
			t.Errorf("suite %d: got name %q, want %q", i, s.Name, r.Config)
		}
		wantCases := len(r.Results) + len(r.Unevaluated)
		if s.Tests != wantCases || len(s.Cases) != wantCases {
			t.Errorf("%s: got tests=%d and %d cases, want %d (one per option)", s.Name, s.Tests, len(s.Cases), wantCases)
		}
		gotFail, gotSkip := 0, 0
		for j, c := range s.Cases {
			if c.Failure != nil {
				gotFail++
			}
			if c.Skipped != nil {
				gotSkip++
			}
			if j < len(r.Results) {
				res := r.Results[j]
				if c.Name != res.ID {
					t.Errorf("%s case %d: got name %q, want %q", s.Name, j, c.Name, res.ID)
				}
				wantFailure := !res.OK() && res.Severity == kernelcfg.Required
				if (c.Failure != nil) != wantFailure {
					t.Errorf("%s %s: got failure %v, want %v (state %s, %s)", s.Name, c.Name, c.Failure != nil, wantFailure, res.State, res.Severity)
				}
				if !res.OK() && res.Severity == kernelcfg.Recommended && !strings.HasPrefix(c.SystemOut, "warning:") {
					t.Errorf("%s %s: got system-out %q, want a warning note", s.Name, c.Name, c.SystemOut)
				}
			}
		}
		if gotFail != len(r.MissingRequired()) || s.Failures != gotFail {
			t.Errorf("%s: got %d failures (attribute %d), want %d", s.Name, gotFail, s.Failures, len(r.MissingRequired()))
		}
		if gotSkip != len(r.Unevaluated) || s.Skipped != gotSkip {
			t.Errorf("%s: got %d skipped (attribute %d), want %d", s.Name, gotSkip, s.Skipped, len(r.Unevaluated))
		}
		total += s.Tests
		failures += s.Failures
		skipped += s.Skipped
	}
	if doc.Tests != total || doc.Failures != failures || doc.Skipped != skipped {
		t.Errorf("got testsuites tests=%d failures=%d skipped=%d, want %d %d %d", doc.Tests, doc.Failures, doc.Skipped, total, failures, skipped)
	}
	if skipped == 0 {
		t.Errorf("got no skipped cases, want the bare config's gated rules skipped")
	}
}

// sarifSchema compiles the official OASIS SARIF 2.1.0 schema. The schema
// text comes from the go-sarif module (through the Go module proxy), which
// embeds it verbatim; the blank import keeps that module in go.mod.
func sarifSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/owenrumney/go-sarif/v3").Output()
	if err != nil {
		t.Fatalf("locate the go-sarif module: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "pkg", "report", "v210", "sarif", "schema.go"))
	if err != nil {
		t.Fatal(err)
	}
	_, text, ok := strings.Cut(string(src), "const schema = `")
	text, _, ok2 := strings.Cut(text, "`")
	if !ok || !ok2 {
		t.Fatal("go-sarif's schema.go no longer holds the schema as a raw string constant")
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	const url = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		t.Fatalf("compile sarif schema: %v", err)
	}
	return sch
}

func TestWriteSARIF(t *testing.T) {
	sch := sarifSchema(t)
	reps := testReports(t, "k3s,containers")
	var b bytes.Buffer
	if err := kernelcfg.WriteSARIF(&b, reps, kernelcfg.SARIFOptions{ToolVersion: "test"}); err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("sarif output does not validate against the 2.1.0 schema: %v", err)
	}

	// The schema check must be able to fail.
	if err := sch.Validate(map[string]any{"version": "2.1.0", "runs": []any{map[string]any{"results": []any{}}}}); err == nil {
		t.Errorf("got a run without a tool accepted, want the schema to reject it")
	}

	var log struct {
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Rules []struct {
						ID string `json:"id"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				RuleIndex int    `json:"ruleIndex"`
				Level     string `json:"level"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
						Region *struct {
							StartLine int `json:"startLine"`
						} `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(b.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	type located struct {
		Rule  string
		Level string
		URI   string
		Line  int
	}
	var got, want []located
	for _, res := range log.Runs[0].Results {
		if rules := log.Runs[0].Tool.Driver.Rules; rules[res.RuleIndex].ID != res.RuleID {
			t.Errorf("result %s points at rule %d (%s)", res.RuleID, res.RuleIndex, rules[res.RuleIndex].ID)
		}
		l := located{Rule: res.RuleID, Level: res.Level, URI: res.Locations[0].PhysicalLocation.ArtifactLocation.URI}
		if r := res.Locations[0].PhysicalLocation.Region; r != nil {
			l.Line = r.StartLine
		}
		got = append(got, l)
	}
	for _, r := range reps {
		for _, res := range r.Results {
			if res.OK() {
				continue
			}
			level := "warning"
			if res.Severity == kernelcfg.Required {
				level = "error"
			}
			want = append(want, located{Rule: res.ID, Level: level, URI: r.Config, Line: res.Line})
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sarif results differ (-want +got):\n%s", diff)
	}
}
