package conformance

import (
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
