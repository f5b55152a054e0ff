package testbed

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// A tool lookup waits while scripts/buildlock.sh's lock is held, and goes
// on once the build script exits.
func TestWaitBuiltWaitsForTheBuildScript(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tool", "v1")
	build := exec.Command("bash", "-c", `. ../../scripts/buildlock.sh && build_lock "$1" && echo locked && { read -r _ || true; }`, "build", dir)
	stdin, err := build.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := build.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := build.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("build script: %q, %v", line, err)
	}
	done := make(chan struct{})
	go func() { waitBuilt(dir); close(done) }()
	select {
	case <-done:
		t.Fatal("waitBuilt returned while the build held its lock")
	case <-time.After(300 * time.Millisecond):
	}
	stdin.Close() // the build ends
	if err := build.Wait(); err != nil {
		t.Fatal(err)
	}
	<-done
	// No lock file at all: nothing is building.
	waitBuilt(filepath.Join(t.TempDir(), "never"))
}
