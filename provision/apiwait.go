package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// apiRetryEvery is how often withAPI tries an API that does not answer.
var apiRetryEvery = 2 * time.Second

// withAPI runs fn against the cluster's API, and while the API does not
// answer (k3s still starting, or restarting: a supervisor respawns a k3s
// that exited, as a loaded server's does when its controllers lose leader
// election) runs it again every apiRetryEvery, up to the Ready timeout.
// What it waits for is noted once each time it changes.
func withAPI(ctx context.Context, t *Target, what string, fn func(*Cluster) error) error {
	timeout := t.Env.readyTimeout()
	deadline := time.Now().Add(timeout)
	said := ""
	for {
		c, err := t.Env.Cluster(ctx)
		if err == nil {
			if err = fn(c); err == nil {
				return nil
			}
		}
		if !apiStarting(err) || ctx.Err() != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the k3s API did not answer for %s: %w", timeout, err)
		}
		if msg := what + ": waiting for the k3s API (" + err.Error() + ")"; msg != said && t.Note != nil {
			t.Note(msg)
			said = msg
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(apiRetryEvery):
		}
	}
}

// apiStarting reports whether err is what an API server that is starting
// or restarting answers, or a connection it does not accept or dropped.
// NotFound is kube-system (or a node) not made yet.
func apiStarting(err error) bool {
	return apierrors.IsServiceUnavailable(err) || apierrors.IsNotFound(err) || apierrors.IsInternalError(err) || apierrors.IsTimeout(err) ||
		apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) || utilnet.IsConnectionRefused(err) ||
		utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) ||
		errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(fmt.Sprint(err), "apiserver not ready")
}
