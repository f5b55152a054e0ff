// Package pods is the agent's pod service: it runs the pods bound to its
// node, every container a proot process in its own copy of the image,
// with init containers in order, restart policies with back-off, probes,
// volumes bound in, graceful termination and truthful statuses. It is the
// provider virtual-kubelet drives, and serves logs, exec, attach and
// port-forward for the kubelet API.
//
// Pods share the phone's network (no root, no namespaces): every pod's
// IP is the phone's, and two pods cannot listen on one port.
package pods

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"

	"github.com/phonefarm/phonefarm/agent/image"
	"github.com/phonefarm/phonefarm/agent/proot"
)

// Images pulls images; *image.Store is one.
type Images interface {
	Pull(ctx context.Context, ref string, secrets []image.PullSecret, pull bool) (*image.Image, error)
	Cached(ref string) (*image.Image, error)
}

// Objects reads what a pod refers to from the API, by name (as the node
// authorizer allows a node).
type Objects interface {
	Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
	ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
	// ServiceAccountToken returns a token for a projected volume.
	ServiceAccountToken(ctx context.Context, pod *corev1.Pod, audience string, seconds int64) (string, error)
}

// Node is what pods see of the phone.
type Node struct {
	Name string
	// IP is the phone's address: every pod's IP and host IP.
	IP string
	// DNS are the phone's name servers, for the pods' resolv.conf.
	DNS []string
	// APIServer is host:port of the API server, for KUBERNETES_SERVICE_*
	// (the cluster IP of the kubernetes Service is out of a rootless
	// phone's reach).
	APIServer string
	// CA is the cluster CA for service account volumes.
	CA []byte
}

// Manager runs the node's pods.
type Manager struct {
	// Dir holds one directory per pod (container roots, volumes, logs).
	Dir      string
	Images   Images
	Objects  Objects
	Services corev1listers.ServiceLister // for service environment variables; optional
	Proot    *proot.Proot
	Node     Node
	Log      *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Event records an event on a pod (the API's event recorder);
	// optional.
	Event func(pod *corev1.Pod, eventType, reason, message string)
	// BackoffBase and BackoffMax bound restart back-off (10s, 5m as the
	// kubelet's when zero).
	BackoffBase, BackoffMax time.Duration

	mu     sync.Mutex
	pods   map[string]*podRun // by namespace/name
	notify func(*corev1.Pod)
}

func key(namespace, name string) string { return namespace + "/" + name }

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Manager) log() *slog.Logger {
	if m.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Log
}

// NotifyPods registers the callback that pushes pod statuses to the API.
func (m *Manager) NotifyPods(_ context.Context, cb func(*corev1.Pod)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notify = cb
}

// CreatePod starts running a pod; its statuses follow through NotifyPods.
func (m *Manager) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	m.mu.Lock()
	if m.pods == nil {
		m.pods = map[string]*podRun{}
	}
	k := key(pod.Namespace, pod.Name)
	if old, ok := m.pods[k]; ok && old.pod.UID == pod.UID {
		m.mu.Unlock()
		return nil
	}
	p := newPodRun(m, pod.DeepCopy())
	m.pods[k] = p
	m.mu.Unlock()
	go p.run(context.WithoutCancel(ctx))
	return nil
}

// UpdatePod takes what may change in a running pod: its labels,
// annotations and active deadline, and the images of its containers (a
// new image restarts that container).
func (m *Manager) UpdatePod(_ context.Context, pod *corev1.Pod) error {
	p := m.get(pod.Namespace, pod.Name)
	if p == nil {
		return errdefs.NotFoundf("pod %s/%s is not on this node", pod.Namespace, pod.Name)
	}
	p.update(pod.DeepCopy())
	return nil
}

// DeletePod stops a pod's containers gracefully (SIGTERM, then SIGKILL
// after the grace period) and reports them terminated. The pod leaves
// GetPods at once; its files go once its processes are gone.
func (m *Manager) DeletePod(_ context.Context, pod *corev1.Pod) error {
	k := key(pod.Namespace, pod.Name)
	m.mu.Lock()
	p := m.pods[k]
	if p != nil && (pod.UID == "" || p.pod.UID == pod.UID) {
		delete(m.pods, k)
	}
	m.mu.Unlock()
	if p == nil {
		return errdefs.NotFoundf("pod %s is not on this node", k)
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		grace = *pod.DeletionGracePeriodSeconds
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	go p.stop(time.Duration(grace)*time.Second, true)
	return nil
}

// GetPod returns the pod with its current status, or NotFound.
func (m *Manager) GetPod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	p := m.get(namespace, name)
	if p == nil {
		return nil, errdefs.NotFoundf("pod %s/%s is not on this node", namespace, name)
	}
	return p.snapshot(), nil
}

// GetPodStatus returns a pod's current status, or NotFound.
func (m *Manager) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := m.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

// GetPods returns every pod the node runs.
func (m *Manager) GetPods(context.Context) ([]*corev1.Pod, error) {
	m.mu.Lock()
	runs := make([]*podRun, 0, len(m.pods))
	for _, p := range m.pods {
		runs = append(runs, p)
	}
	m.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(runs))
	for _, p := range runs {
		out = append(out, p.snapshot())
	}
	sort.Slice(out, func(i, j int) bool { return key(out[i].Namespace, out[i].Name) < key(out[j].Namespace, out[j].Name) })
	return out, nil
}

func (m *Manager) get(namespace, name string) *podRun {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pods[key(namespace, name)]
}

// push sends a pod's status to the API.
func (m *Manager) push(pod *corev1.Pod) {
	m.mu.Lock()
	cb := m.notify
	m.mu.Unlock()
	if cb != nil {
		cb(pod)
	}
}

// Shutdown stops every pod at once (the agent is exiting): their
// processes must not outlive it.
func (m *Manager) Shutdown(grace time.Duration) {
	m.mu.Lock()
	runs := make([]*podRun, 0, len(m.pods))
	for _, p := range m.pods {
		runs = append(runs, p)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range runs {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(grace, false) }()
	}
	wg.Wait()
}

// CleanStale removes the directories of pods this agent does not run (left
// by an agent that was killed), stopping what still runs in them.
func (m *Manager) CleanStale() error {
	entries, err := os.ReadDir(m.Dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	m.mu.Lock()
	live := map[string]bool{}
	for _, p := range m.pods {
		live[string(p.pod.UID)] = true
	}
	m.mu.Unlock()
	for _, e := range entries {
		if !e.IsDir() || live[e.Name()] {
			continue
		}
		dir := filepath.Join(m.Dir, e.Name())
		killRecorded(dir)
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove stale pod directory %s: %w", dir, err)
		}
	}
	return nil
}

// RunningPods returns the pods with a container running now, as the
// kubelet's /runningpods/ lists them: not a pod still waiting for its
// volumes, images or configuration.
func (m *Manager) RunningPods(ctx context.Context) ([]*corev1.Pod, error) {
	all, err := m.GetPods(ctx)
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for _, p := range all {
		for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			if cs.State.Running != nil {
				out = append(out, p)
				break
			}
		}
	}
	return out, nil
}
