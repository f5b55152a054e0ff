// Package testenv decides whether an integration test can run here. Under
// scripts/test.sh (which sets PHONEFARM_INTEGRATION=required) and under CI
// (CI=true) a test whose prerequisites are missing fails, so neither a
// newcomer's run nor CI can pass by skipping the real parts; a bare go test
// elsewhere skips it with the reason.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// CI reports whether the tests run under CI (CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// Required reports whether integration tests must run: under CI or
// scripts/test.sh.
func Required() bool { return CI() || os.Getenv("PHONEFARM_INTEGRATION") == "required" }

// Unavailable fails t when integration tests are required, and skips it
// otherwise.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("integration prerequisite missing (scripts/test.sh builds and installs them): "+format, args...)
	}
	t.Skipf("skipping integration test: "+format, args...)
}

// RequireRoot needs uid 0 (network namespaces, mounts).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root (network namespaces); run the tests as root")
	}
}

// RequireTool needs an executable on PATH and returns its path.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s not found on PATH; scripts/test.sh installs it", name)
	}
	return p
}
