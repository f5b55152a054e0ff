// Package testenv decides whether an integration test can run here. Locally a
// test whose prerequisites are missing is skipped with the reason; under CI
// (CI=true) the same situation fails the test, so CI can never go green by
// skipping the real parts.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// CI reports whether the tests run under CI (CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// Unavailable skips t locally and fails it under CI.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf("integration prerequisite missing under CI: "+format, args...)
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
