package parallel

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestEachBoundAndErrors(t *testing.T) {
	var running, peak atomic.Int32
	errOdd := errors.New("odd")
	err := Each(t.Context(), 10, 3, func(ctx context.Context, i int) error {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		running.Add(-1)
		if i%2 == 1 {
			return errOdd
		}
		return nil
	})
	if got := peak.Load(); got > 3 || got < 1 {
		t.Errorf("peak concurrency: got %d, want 1..3", got)
	}
	if !errors.Is(err, errOdd) {
		t.Errorf("got %v, want errors.Is(err, errOdd)", err)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 5 {
		t.Errorf("got %v, want 5 joined errors", err)
	}
}

func TestEachCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := 0
	err := Each(ctx, 4, 1, func(context.Context, int) error { calls++; return nil })
	if calls != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("got %d calls and %v, want 0 calls and context.Canceled", calls, err)
	}
}
