package conformance

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testenv"
)

// dryRun lists, without running them, the specs e2e.test selects for a
// focus.
func dryRun(t *testing.T, e2e, focus string) []Case {
	t.Helper()
	report := filepath.Join(t.TempDir(), "junit.xml")
	cmd := exec.Command(e2e, "--provider=skeleton", "--ginkgo.dry-run", "--ginkgo.focus="+focus, "--ginkgo.junit-report="+report)
	cmd.Dir = t.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("e2e.test --ginkgo.dry-run: %v\n%s", err, out)
	}
	f, err := os.Open(report)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cases, err := ParseJUnit(f)
	if err != nil {
		t.Fatal(err)
	}
	return cases
}

// Every group's CI tests exist in this e2e.test, each name selects at
// least one test, and the full focus holds only [Conformance] tests.
func TestFocusSelectsEachGroup(t *testing.T) {
	e2e, err := testbed.E2ETools()
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	e2eTest := filepath.Join(e2e, "e2e.test")
	ciFocus, fullFocus := regexp.MustCompile(Focus(false)), regexp.MustCompile(Focus(true))
	ci := Count(dryRun(t, e2eTest, Focus(false)), ciFocus)
	selected := dryRun(t, e2eTest, Focus(true))
	full := Count(selected, fullFocus)
	for i, g := range Groups {
		if got := ci[i].Passed; got < len(g.CI) {
			t.Errorf("%s: the CI focus selects %d tests, want at least %d (one per name in CI)", g.Name, got, len(g.CI))
		}
		for _, name := range g.CI {
			re := regexp.MustCompile(g.Match + ".*" + regexp.QuoteMeta(name) + `.*\[Conformance\]`)
			found := false
			for _, c := range selected {
				found = found || re.MatchString(c.Name) && c.Status == "passed"
			}
			if !found {
				t.Errorf("%s: no [Conformance] test named %q", g.Name, name)
			}
		}
	}
	total := 0
	for i, g := range Groups {
		total += full[i].Passed
		if full[i].Passed < ci[i].Passed {
			t.Errorf("%s: the full list (%d) is shorter than CI's (%d)", g.Name, full[i].Passed, ci[i].Passed)
		}
		t.Logf("%s: %d conformance tests, %d in CI", g.Name, full[i].Passed, ci[i].Passed)
	}
	if len(full) > len(Groups) {
		t.Errorf("the full focus selects tests outside every group: %+v", full[len(Groups)])
	}
	for _, c := range selected {
		if fullFocus.MatchString(c.Name) && !strings.Contains(c.Name, "[Conformance]") {
			t.Errorf("not a conformance test: %s", c.Name)
		}
	}
	t.Logf("%d conformance tests in all", total)
}

// An e2e.test whose suite setup failed writes a report of setup nodes only
// and exits 1: Run says so instead of returning a table of zeros.
func TestRunSaysWhenTheSuiteSetupFailed(t *testing.T) {
	dir := t.TempDir()
	e2e := filepath.Join(dir, "e2e.test")
	script := `#!/bin/sh
for a; do case $a in --ginkgo.junit-report=*) report=${a#*=};; esac; done
cat > "$report" <<'XML'
<testsuites><testsuite name="Kubernetes e2e suite" tests="1" failures="1">
<testcase name="[SynchronizedBeforeSuite]" status="failed"><failure message="there are currently no ready, schedulable nodes in the cluster"></failure></testcase>
</testsuite></testsuites>
XML
echo "there are currently no ready, schedulable nodes in the cluster"
exit 1
`
	if err := os.WriteFile(e2e, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, err := Run(t.Context(), Options{E2E: e2e, Kubeconfig: "/dev/null", ReportDir: filepath.Join(dir, "report"), Focus: FocusOn("should get a host IP"), Output: &out})
	if err == nil || !strings.Contains(err.Error(), "ran none of the selected tests") || !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("Run: got %v, want an error saying no selected test ran and e2e.test's exit status", err)
	}
	if !strings.Contains(out.String(), "no ready, schedulable nodes") {
		t.Errorf("e2e.test's output: got %q", out.String())
	}
}
