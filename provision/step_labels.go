package provision

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/phonefarm/phonefarm/inventory"
)

// labelStep reconciles the node's labels and taints with the inventory
// through the API. Only what phonefarm set before is removed.
type labelStep struct {
	node    string
	labels  map[string]string
	taints  []string
	why     string
	changes []Change
}

func (s *labelStep) Title() string { return "set labels and taints of node " + s.node }
func (s *labelStep) Why() string   { return s.why }

// labelChanges returns the step that brings node's labels and taints to
// the inventory's, or nil when they match. A node not yet registered gets
// the step once k3s has registered it.
func labelChanges(p *inventory.Phone, node *NodeFacts) Step {
	s := &labelStep{node: p.Name, labels: p.Labels, taints: p.Taints}
	if node == nil {
		if len(p.Labels) == 0 && len(p.Taints) == 0 {
			return nil
		}
		s.why = "node not registered yet"
		for _, k := range sortedKeys(p.Labels) {
			s.changes = append(s.changes, Change{Resource: "node " + p.Name + " label " + k, New: p.Labels[k]})
		}
		for _, t := range p.Taints {
			s.changes = append(s.changes, Change{Resource: "node " + p.Name + " taint " + t, New: "set"})
		}
		return s
	}
	var diffs []string
	for _, k := range sortedKeys(p.Labels) {
		if v, ok := node.Labels[k]; !ok || v != p.Labels[k] {
			diffs = append(diffs, "label "+k+"="+p.Labels[k])
			s.changes = append(s.changes, Change{Resource: "node " + p.Name + " label " + k, Old: v, New: p.Labels[k]})
		}
	}
	for _, k := range node.ManagedLabels {
		if _, want := p.Labels[k]; !want {
			if v, has := node.Labels[k]; has {
				diffs = append(diffs, "remove label "+k)
				s.changes = append(s.changes, Change{Resource: "node " + p.Name + " label " + k, Old: v})
			}
		}
	}
	if !slices.Equal(node.ManagedLabels, sortedKeys(p.Labels)) && len(diffs) == 0 {
		diffs = append(diffs, "record managed labels")
		s.changes = append(s.changes, Change{Resource: "node " + p.Name + " managed labels", Old: strings.Join(node.ManagedLabels, ","), New: strings.Join(sortedKeys(p.Labels), ",")})
	}
	for _, t := range p.Taints {
		if !slices.Contains(node.Taints, t) {
			diffs = append(diffs, "taint "+t)
			s.changes = append(s.changes, Change{Resource: "node " + p.Name + " taint " + t, New: "set"})
		}
	}
	for _, t := range node.ManagedTaints {
		if !slices.Contains(p.Taints, t) && slices.Contains(node.Taints, t) {
			diffs = append(diffs, "remove taint "+t)
			s.changes = append(s.changes, Change{Resource: "node " + p.Name + " taint " + t, Old: "set"})
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	s.why = strings.Join(diffs, ", ")
	return s
}

func (s *labelStep) Apply(ctx context.Context, t *Target) error {
	return withAPI(ctx, t, "node "+s.node+" labels", func(c *Cluster) error {
		return s.update(ctx, c)
	})
}

func (s *labelStep) update(ctx context.Context, c *Cluster) error {
	nodes := c.Client.CoreV1().Nodes()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, s.node, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get node %s: %w", s.node, err)
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		for _, k := range splitList(n.Annotations[annLabels]) {
			if _, want := s.labels[k]; !want {
				delete(n.Labels, k)
			}
		}
		for k, v := range s.labels {
			n.Labels[k] = v
		}
		n.Annotations[annLabels] = strings.Join(sortedKeys(s.labels), ",")
		var taints []corev1.Taint
		for _, t := range n.Spec.Taints {
			ts := taintString(t)
			if slices.Contains(splitList(n.Annotations[annTaints]), ts) && !slices.Contains(s.taints, ts) {
				continue // phonefarm set it and the inventory no longer has it
			}
			if !slices.Contains(s.taints, ts) || !slices.ContainsFunc(taints, func(x corev1.Taint) bool { return taintString(x) == ts }) {
				taints = append(taints, t)
			}
		}
		for _, ts := range s.taints {
			if !slices.ContainsFunc(taints, func(x corev1.Taint) bool { return taintString(x) == ts }) {
				taints = append(taints, parseTaint(ts))
			}
		}
		n.Spec.Taints = taints
		n.Annotations[annTaints] = strings.Join(s.taints, ",")
		_, err = nodes.Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
}
