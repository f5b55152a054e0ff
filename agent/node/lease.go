package node

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	coordclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

// Lease keeps the node's Lease in kube-node-lease renewed: the heartbeat
// the node lifecycle controller reads. It renews every Renew; a renewal
// that fails is retried every Retry, each attempt bounded by Timeout, so
// that the Lease resumes within moments of the API server coming back
// (after a server restart or a network outage) rather than a whole renew
// interval or a stalled connection later. The node is Ready for as long
// as the Lease is renewed within the controller's grace period (50 s by
// default, against 40 s of Lease duration).
type Lease struct {
	Client coordclient.LeaseInterface
	Node   string
	// UID is the Node's, for the owner reference that lets the garbage
	// collector remove the Lease with the Node.
	UID types.UID
	// Duration is the Lease's duration (40 s, the kubelet's).
	Duration time.Duration
	// Renew, Retry and Timeout: the cadence (10 s, 1 s, 5 s by default).
	Renew, Retry, Timeout time.Duration
	Now                   func() time.Time
	Log                   *slog.Logger
}

func (l *Lease) defaults() {
	if l.Duration == 0 {
		l.Duration = 40 * time.Second
	}
	if l.Renew == 0 {
		l.Renew = 10 * time.Second
	}
	if l.Retry == 0 {
		l.Retry = time.Second
	}
	if l.Timeout == 0 {
		l.Timeout = 5 * time.Second
	}
	if l.Now == nil {
		l.Now = time.Now
	}
	if l.Log == nil {
		l.Log = slog.New(slog.DiscardHandler)
	}
}

// Run renews the Lease until ctx ends.
func (l *Lease) Run(ctx context.Context) {
	l.defaults()
	var last *coordinationv1.Lease
	failing := time.Time{}
	for {
		next := l.Renew
		lease, err := l.renew(ctx, last)
		switch {
		case err == nil:
			last = lease
			if !failing.IsZero() {
				l.Log.Info("node lease renewed again", "after", l.Now().Sub(failing).Round(time.Second))
				failing = time.Time{}
			}
		case ctx.Err() != nil:
			return
		default:
			last = nil // read it again: it may have changed, or gone
			next = l.Retry
			if failing.IsZero() {
				failing = l.Now()
				l.Log.Warn("renew the node lease; retrying every "+l.Retry.String(), "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}

// renew updates the Lease from the last one this agent wrote (one request
// in the common case), or reads or creates it first.
func (l *Lease) renew(ctx context.Context, last *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	if last == nil {
		got, err := l.Client.Get(ctx, l.Node, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			created, err := l.Client.Create(ctx, l.fill(nil), metav1.CreateOptions{})
			if err != nil {
				return nil, fmt.Errorf("create lease: %w", err)
			}
			return created, nil
		case err != nil:
			return nil, fmt.Errorf("read lease: %w", err)
		}
		last = got
	}
	updated, err := l.Client.Update(ctx, l.fill(last), metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update lease: %w", err)
	}
	return updated, nil
}

// fill returns base (or a new Lease) held by the node, renewed now.
func (l *Lease) fill(base *coordinationv1.Lease) *coordinationv1.Lease {
	var lease *coordinationv1.Lease
	if base == nil {
		lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: l.Node, Namespace: corev1.NamespaceNodeLease}}
	} else {
		lease = base.DeepCopy()
	}
	holder, secs := l.Node, int32(l.Duration/time.Second)
	lease.Spec.HolderIdentity = &holder
	lease.Spec.LeaseDurationSeconds = &secs
	now := metav1.NewMicroTime(l.Now())
	lease.Spec.RenewTime = &now
	if l.UID != "" && len(lease.OwnerReferences) == 0 {
		lease.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: l.Node, UID: l.UID}}
	}
	return lease
}
