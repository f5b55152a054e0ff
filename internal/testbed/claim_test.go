package testbed

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// Test beds starting at once get distinct IDs, also when stale
// reservations (their owners dead) are there to take over: two that took
// the same one would each tear down the other's network.
func TestClaimIDConcurrentWithStaleReservations(t *testing.T) {
	root := t.TempDir()
	const dead = "999999999" // no such process
	for _, id := range []int{10, 11, 12} {
		dir := filepath.Join(root, strconv.Itoa(id))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(dead), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	cleared := map[int]int{}
	clearOut := func(id int) error {
		mu.Lock()
		defer mu.Unlock()
		cleared[id]++
		return nil
	}
	owner := strconv.Itoa(os.Getpid()) // alive: once claimed, an ID stays taken
	const n = 8
	ids := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ids[i], errs[i] = claimID(root, 0, owner, clearOut) })
	}
	wg.Wait()
	seen := map[int]bool{}
	for i, id := range ids {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
		}
		if seen[id] {
			t.Errorf("ID %d claimed twice: %v", id, ids)
		}
		seen[id] = true
		if b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(id), "owner")); err != nil || string(b) != owner {
			t.Errorf("ID %d: owner %q (%v), want %s", id, b, err, owner)
		}
	}
	for id := 10; id < 10+n; id++ {
		if !seen[id] {
			t.Errorf("ID %d not claimed; got %v, want the %d lowest from 10", id, ids, n)
		}
		if cleared[id] != 1 {
			t.Errorf("ID %d cleared %d times, want once", id, cleared[id])
		}
	}
}
