package node

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The Lease is created held by the node and owned by it, and renewed on
// its cadence.
func TestLeaseRenews(t *testing.T) {
	cs := fake.NewClientset()
	l := &Lease{Client: cs.CoordinationV1().Leases(corev1.NamespaceNodeLease), Node: "phone1", UID: "uid-1", Renew: 20 * time.Millisecond}
	runLease(t, l)
	get := leaseGetter(t, cs)
	waitUntil(t, "lease created", func() bool { return get() != nil })
	lease := get()
	if h := lease.Spec.HolderIdentity; h == nil || *h != "phone1" {
		t.Errorf("holder: got %v, want phone1", h)
	}
	if d := lease.Spec.LeaseDurationSeconds; d == nil || *d != 40 {
		t.Errorf("duration: got %v, want 40", d)
	}
	if o := lease.OwnerReferences; len(o) != 1 || o[0].Kind != "Node" || o[0].UID != "uid-1" {
		t.Errorf("owner: got %+v, want the Node phone1", o)
	}
	first := lease.Spec.RenewTime.Time
	waitUntil(t, "a renewal", func() bool { return get().Spec.RenewTime.After(first) })
}

// A renewal that fails (a server that does not answer, which a fake
// produces on demand) is retried at the short interval, not the renew
// interval: with an hour between renewals, the Lease still appears once
// the failures stop.
func TestLeaseRetriesAtOnce(t *testing.T) {
	cs := fake.NewClientset()
	var failing, attempts atomic.Int32
	failing.Store(5)
	cs.PrependReactor("*", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		attempts.Add(1)
		if failing.Load() > 0 {
			failing.Add(-1)
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	l := &Lease{Client: cs.CoordinationV1().Leases(corev1.NamespaceNodeLease), Node: "phone1", Renew: time.Hour, Retry: 5 * time.Millisecond}
	runLease(t, l)
	get := leaseGetter(t, cs)
	waitUntil(t, "lease created after five failures", func() bool { return get() != nil })
	// Five failed reads, one that finds none, the creation; and our Get
	// calls here.
	if n := attempts.Load(); n < 7 {
		t.Errorf("attempts: got %d, want at least 7", n)
	}
}

func runLease(t *testing.T, l *Lease) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func leaseGetter(t *testing.T, cs *fake.Clientset) func() *coordinationv1.Lease {
	return func() *coordinationv1.Lease {
		got, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(t.Context(), "phone1", metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return got
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
