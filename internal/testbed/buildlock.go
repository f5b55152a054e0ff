package testbed

import (
	"os"

	"golang.org/x/sys/unix"
)

// waitBuilt waits while a build script holds dir's lock
// (scripts/buildlock.sh): scripts/test.sh starts the tests while tools that
// only some of them need are still building, and a test that needs one
// waits for its build to end rather than fail. With no build running it
// returns at once; the caller then looks for the tool as usual.
func waitBuilt(dir string) {
	f, err := os.Open(dir + ".lock")
	if err != nil {
		return // no build has run here, or the lock is unreadable: look anyway
	}
	defer f.Close()
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_SH)
		if err != unix.EINTR {
			break
		}
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
}
