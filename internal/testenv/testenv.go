// Package testenv decides whether an integration test can run here. Under
// scripts/test.sh (which sets PHONEFARM_INTEGRATION=required) and under CI
// (CI=true) a test whose prerequisites are missing fails, so neither a
// newcomer's run nor CI can pass by skipping the real parts; a bare go test
// elsewhere skips it with the reason.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
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

// HoldPort takes this machine's lock for a TCP port that tests of
// different packages (which run at once) must not share, such as the
// kubelet's 10250 that agents on this machine listen on, and releases it
// when the test ends. It waits while another test holds it.
func HoldPort(t testing.TB, port int) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), fmt.Sprintf("phonefarm-test-port-%d.lock", port)), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock port %d: %v", port, err)
	}
	t.Cleanup(func() { f.Close() })
}
