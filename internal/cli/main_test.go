package cli

import (
	"fmt"
	"os"
	"testing"
)

// TestMain gives the package's tests one cache directory of their own (the
// farm lock and hash memos), so no test touches the user's and the heavy
// tests can run in parallel, which t.Setenv forbids.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "phonefarm-cli-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("PHONEFARM_CACHE", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
