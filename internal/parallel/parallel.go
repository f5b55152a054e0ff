// Package parallel runs per-phone work concurrently with a bound, the one
// way phonefarm fans out across a farm.
package parallel

import (
	"context"
	"errors"

	"golang.org/x/sync/errgroup"
)

// Each calls fn(ctx, i) for i in [0, n) with at most limit calls running at
// once (limit <= 0 means n). Every call runs even when others fail: one
// phone's failure must not stop the rest of the farm. The errors are joined,
// so errors.Is and errors.As still see each one.
func Each(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	if limit <= 0 || limit > n {
		limit = n
	}
	var g errgroup.Group
	g.SetLimit(max(limit, 1))
	errs := make([]error, n)
	for i := range n {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				errs[i] = err
				return nil
			}
			errs[i] = fn(ctx, i)
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}
