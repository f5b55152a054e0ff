package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// lockFarm takes this machine's lock for an inventory, so two applies (or
// an apply and a reset) never work on the same phones at once: they would
// remove each other's temporary files. The lock is released when the
// returned function runs or the process dies.
func lockFarm(inventory string) (func(), error) {
	abs, err := filepath.Abs(inventory)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(abs))
	dir := filepath.Join(cacheDir(), "locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, hex.EncodeToString(sum[:8])), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(f.Name())
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another phonefarm command is changing the phones of %s (%s); wait for it to finish", inventory, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("lock %s: %w", inventory, err)
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "pid %d", os.Getpid())
	return func() { f.Close() }, nil
}
