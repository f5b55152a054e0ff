package provision

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// readyStep waits until the node is registered and Ready in the API.
type readyStep struct {
	node string
	why  string
}

func (s *readyStep) Title() string { return "wait for node " + s.node + " to be Ready" }
func (s *readyStep) Why() string   { return s.why }

func (s *readyStep) Apply(ctx context.Context, t *Target) error {
	timeout := t.Env.ReadyTimeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "not registered"
	for {
		c, err := t.Env.Cluster(ctx)
		if err == nil {
			n, gerr := c.Client.CoreV1().Nodes().Get(ctx, s.node, metav1.GetOptions{})
			switch {
			case gerr != nil:
				last = gerr.Error()
			case nodeReady(n) && heartbeatSince(n, t.Restarted):
				return nil
			case nodeReady(n):
				last = "Ready as of its last heartbeat, which predates the restart"
			default:
				last = readyMessage(n)
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return fmt.Errorf("waiting for node %s to be Ready: %w", s.node, parent.Err())
			}
			return fmt.Errorf("node %s not Ready after %s: %s", s.node, timeout, last)
		case <-time.After(2 * time.Second):
		}
	}
}

// heartbeatSince reports whether the node's Ready condition was posted at
// or after since (zero since: any time).
func heartbeatSince(n *corev1.Node, since time.Time) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return !c.LastHeartbeatTime.Time.Before(since)
		}
	}
	return false
}

func readyMessage(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return fmt.Sprintf("Ready=%s: %s", c.Status, c.Message)
		}
	}
	return "no Ready condition yet"
}
