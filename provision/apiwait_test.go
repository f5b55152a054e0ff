package provision

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// refused is the error client-go returns while nothing listens on the API
// port, as when a server's k3s is being respawned.
func refused() error {
	return &url.Error{Op: "Get", URL: "https://10.0.0.1:6443/api/v1/nodes/pixel", Err: &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}}
}

// labelTarget is a phone whose API answers get nodes with the errors in
// fails first, then normally.
func labelTarget(t *testing.T, fails ...error) (*Target, *fake.Clientset, *[]string) {
	t.Helper()
	old := apiRetryEvery
	apiRetryEvery = time.Millisecond
	t.Cleanup(func() { apiRetryEvery = old })
	cs := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "pixel", Labels: map[string]string{"kubernetes.io/os": "linux"}}})
	cs.PrependReactor("get", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		if len(fails) == 0 {
			return false, nil, nil
		}
		err := fails[0]
		fails = fails[1:]
		return true, nil, err
	})
	var notes []string
	tg := &Target{Phone: "pixel", Env: &Env{
		ReadyTimeout: time.Minute,
		Cluster:      func(context.Context) (*Cluster, error) { return &Cluster{Client: cs}, nil },
	}, Note: func(m string) { notes = append(notes, m) }}
	return tg, cs, &notes
}

func TestLabelStepWaitsForAnAPIThatRestarts(t *testing.T) {
	unavailable := apierrors.NewServiceUnavailable("apiserver not ready")
	tg, cs, notes := labelTarget(t, refused(), refused(), unavailable, &url.Error{Op: "Get", URL: "https://10.0.0.1:6443/api/v1/nodes/pixel", Err: io.EOF})
	s := &labelStep{node: "pixel", labels: map[string]string{"phonefarm.dev/shelf": "top"}}
	if err := s.Apply(context.Background(), tg); err != nil {
		t.Fatalf("label step over an API that comes back: %v", err)
	}
	n, err := cs.CoreV1().Nodes().Get(context.Background(), "pixel", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels["phonefarm.dev/shelf"] != "top" || n.Labels["kubernetes.io/os"] != "linux" {
		t.Errorf("labels after the API came back: %v", n.Labels)
	}
	// Said once per distinct reason, naming the node.
	if len(*notes) != 3 || !strings.Contains((*notes)[0], "node pixel labels: waiting for the k3s API") || !strings.Contains((*notes)[0], "connection refused") {
		t.Errorf("notes: %q, want 3 (refused, unavailable, EOF), each naming the node", *notes)
	}
}

func TestLabelStepFailsAtOnceWhenForbidden(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "pixel", errors.New("RBAC"))
	tg, _, notes := labelTarget(t, forbidden)
	s := &labelStep{node: "pixel", labels: map[string]string{"phonefarm.dev/shelf": "top"}}
	err := s.Apply(context.Background(), tg)
	if !apierrors.IsForbidden(err) {
		t.Errorf("got %v, want the Forbidden error at once", err)
	}
	if len(*notes) != 0 {
		t.Errorf("notes on an error that waiting cannot fix: %q", *notes)
	}
}

func TestLabelStepGivesUpAfterTheReadyTimeout(t *testing.T) {
	fails := make([]error, 1000)
	for i := range fails {
		fails[i] = refused()
	}
	tg, _, _ := labelTarget(t, fails...)
	tg.Env.ReadyTimeout = 50 * time.Millisecond
	s := &labelStep{node: "pixel", labels: map[string]string{"phonefarm.dev/shelf": "top"}}
	err := s.Apply(context.Background(), tg)
	if err == nil || !strings.Contains(err.Error(), "the k3s API did not answer for 50ms") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("got %v, want it to give up naming the wait and the last error", err)
	}
}
