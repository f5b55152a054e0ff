package cli

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildPhonefarm builds cmd/phonefarm, for tests that need it as a process
// of its own (Go reads proxy settings once per process; the demo re-runs
// itself).
func buildPhonefarm(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "phonefarm")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/phonefarm").CombinedOutput(); err != nil {
		t.Fatalf("build phonefarm: %v\n%s", err, out)
	}
	return bin
}

// runBinary runs bin with env and returns its exit code and output.
func runBinary(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr strings.Builder
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}
