// Package kube is what phonefarm's demo and tests do with a cluster beyond
// provisioning it: apply manifests (server-side apply, as kubectl apply
// --server-side does) and wait for workloads to be ready.
package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

// FieldManager owns what phonefarm applies.
const FieldManager = "phonefarm"

// Client is a cluster reached through a kubeconfig.
type Client struct {
	Config *rest.Config
	Core   kubernetes.Interface
	dyn    dynamic.Interface
	mapper meta.RESTMapper
}

// NewClient reads a kubeconfig.
func NewClient(kubeconfig []byte) (*Client, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return NewClientFromConfig(cfg)
}

// NewClientFromConfig uses a REST config.
func NewClientFromConfig(cfg *rest.Config) (*Client, error) {
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{Config: cfg, Core: core, dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

// Apply server-side-applies every object of a multi-document YAML
// manifest; file names it in errors.
func (c *Client) Apply(ctx context.Context, file string, manifest []byte) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for i := 0; ; i++ {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%s: document %d: %w", file, i+1, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		gvk := obj.GroupVersionKind()
		m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s: %s %s: %w", file, gvk.Kind, obj.GetName(), err)
		}
		var r dynamic.ResourceInterface = c.dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := obj.GetNamespace()
			if ns == "" {
				ns = "default"
			}
			r = c.dyn.Resource(m.Resource).Namespace(ns)
		}
		if _, err := r.Apply(ctx, obj.GetName(), &obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			return fmt.Errorf("%s: apply %s %s: %w", file, gvk.Kind, obj.GetName(), err)
		}
	}
}

// WaitDeployments waits until each named deployment of ns has all its
// replicas updated and available, and says which are not when limit
// passes.
func (c *Client) WaitDeployments(ctx context.Context, ns string, names []string, limit time.Duration) error {
	var pending []string
	err := wait.PollUntilContextTimeout(ctx, time.Second, limit, true, func(ctx context.Context) (bool, error) {
		pending = pending[:0]
		for _, n := range names {
			d, err := c.Core.AppsV1().Deployments(ns).Get(ctx, n, metav1.GetOptions{})
			if err != nil || !available(d) {
				pending = append(pending, n)
			}
		}
		return len(pending) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("deployments in %s not available within %s: %s%s", ns, limit, strings.Join(pending, ", "), c.PodTrouble(ctx, ns))
	}
	return nil
}

// WaitEndpoints waits until each named Service of ns lists as many ready
// endpoints as its Deployment of the same name has replicas: until then
// the Service sends every request to the endpoints it already has.
func (c *Client) WaitEndpoints(ctx context.Context, ns string, names []string, limit time.Duration) error {
	var pending []string
	err := wait.PollUntilContextTimeout(ctx, time.Second, limit, true, func(ctx context.Context) (bool, error) {
		pending = pending[:0]
		for _, n := range names {
			d, err := c.Core.AppsV1().Deployments(ns).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				pending = append(pending, n)
				continue
			}
			want := 1
			if d.Spec.Replicas != nil {
				want = int(*d.Spec.Replicas)
			}
			slices, err := c.Core.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + n})
			if err != nil {
				pending = append(pending, n)
				continue
			}
			ready := map[string]bool{}
			for _, s := range slices.Items {
				for _, e := range s.Endpoints {
					if e.Conditions.Ready != nil && *e.Conditions.Ready && len(e.Addresses) > 0 {
						ready[e.Addresses[0]] = true
					}
				}
			}
			if len(ready) < want {
				pending = append(pending, fmt.Sprintf("%s (%d of %d ready)", n, len(ready), want))
			}
		}
		return len(pending) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("services in %s without all their endpoints within %s: %s", ns, limit, strings.Join(pending, ", "))
	}
	return nil
}

func available(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.AvailableReplicas == want && s.Replicas == want
}

// PodTrouble describes the pods of ns that are not running, with the
// reason their containers wait.
func (c *Client) PodTrouble(ctx context.Context, ns string) string {
	pods, err := c.Core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return ""
	}
	var lines []string
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && ready(&p) {
			continue
		}
		why := string(p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				why += fmt.Sprintf("; %s: %s %s", cs.Name, w.Reason, w.Message)
			}
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status != corev1.ConditionTrue {
				why += "; unscheduled: " + cond.Message
			}
		}
		lines = append(lines, fmt.Sprintf("\n  %s on %q: %s", p.Name, p.Spec.NodeName, why))
	}
	sort.Strings(lines)
	return strings.Join(lines, "")
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PodsByNode returns, for the pods of ns matching selector that are
// running and ready, the node each runs on.
func (c *Client) PodsByNode(ctx context.Context, ns, selector string) (map[string]string, error) {
	pods, err := c.Core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && ready(&p) {
			out[p.Name] = p.Spec.NodeName
		}
	}
	return out, nil
}
