// Package nodes is one view of a farm's phones as Kubernetes nodes: what
// the cluster says of each (status, conditions, taints, versions,
// addresses, pods running) joined with what the phone itself says (its
// facts: battery, charger, temperature, uptime). A phone of the inventory
// that is not in the cluster, and a node that is in no inventory, are
// shown as such.
package nodes

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/phonefarm/phonefarm/facts"
	"github.com/phonefarm/phonefarm/farm"
	"github.com/phonefarm/phonefarm/inventory"
)

// Runtimes a node runs on.
const (
	RuntimeK3sServer = "k3s server"
	RuntimeK3sAgent  = "k3s agent"
	RuntimeRootless  = "rootless agent"
)

// Node is one phone, one node, or both.
type Node struct {
	Name string `json:"name"`
	// InInventory and InCluster say where the name was found.
	InInventory bool `json:"inInventory"`
	InCluster   bool `json:"inCluster"`
	// Role is the inventory's (server, agent); Runtime what runs the node.
	Role    string `json:"role,omitempty"`
	Runtime string `json:"runtime,omitempty"`
	// Ready is the Ready condition's status: True, False or Unknown.
	Ready string `json:"ready,omitempty"`
	// Conditions are the node's other conditions that report a problem
	// (status True, such as MemoryPressure or PhoneBatteryLow; or
	// EtcdIsVoter=False).
	Conditions []Condition `json:"conditions,omitempty"`
	Taints     []string    `json:"taints,omitempty"`
	// KubeletVersion is the version the node reports (k3s's, or the
	// rootless agent's).
	KubeletVersion string   `json:"kubeletVersion,omitempty"`
	Addresses      []string `json:"addresses,omitempty"`
	// TailnetIP is the phone's tailnet address, when it is on one.
	TailnetIP string `json:"tailnetIP,omitempty"`
	// Pods are the pods running on the node.
	Pods int `json:"pods"`
	// Facts are what the phone said; Error why it could not be read.
	Facts *facts.Facts `json:"facts,omitempty"`
	Error string       `json:"error,omitempty"`
}

// healthyWhenTrue are the conditions besides Ready whose True is the good
// state: k3s's EtcdIsVoter (the server's etcd member votes). The rest, by
// the kubelet's convention, report a problem when True.
var healthyWhenTrue = map[corev1.NodeConditionType]bool{"EtcdIsVoter": true}

// Condition is a node condition that reports a problem.
type Condition struct {
	Type    string `json:"type"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Since is when its status last flipped, RFC 3339.
	Since string `json:"since,omitempty"`
}

// PhoneFacts is one phone's facts, or why they could not be read.
type PhoneFacts struct {
	Facts *facts.Facts
	Err   error
}

// Join is the view of phones (by inventory order, then nodes in no
// inventory by name), from their facts and the cluster's nodes and pods.
func Join(inv *inventory.Farm, got map[string]PhoneFacts, nodes []corev1.Node, pods []corev1.Pod) []Node {
	byName := map[string]*corev1.Node{}
	for i := range nodes {
		byName[nodes[i].Name] = &nodes[i]
	}
	running := map[string]int{}
	for _, p := range pods {
		if p.Spec.NodeName != "" && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running[p.Spec.NodeName]++
		}
	}
	var out []Node
	seen := map[string]bool{}
	for i := range inv.Phones {
		p := &inv.Phones[i]
		seen[p.Name] = true
		n := Node{Name: p.Name, InInventory: true, Role: p.Role}
		if f, ok := got[p.Name]; ok {
			n.Facts = f.Facts
			if f.Err != nil {
				n.Error = f.Err.Error()
			}
			if f.Facts != nil && f.Facts.Tailscale.IPv4 != "" {
				n.TailnetIP = f.Facts.Tailscale.IPv4
			}
		}
		if p.OS == inventory.OSAndroid && p.Role != "" {
			n.Runtime = RuntimeRootless
		}
		if k := byName[p.Name]; k != nil {
			fromNode(&n, k)
		}
		if n.Runtime == "" && p.Role != "" {
			n.Runtime = RuntimeK3sAgent
			if p.Role == inventory.RoleServer {
				n.Runtime = RuntimeK3sServer
			}
		}
		n.Pods = running[p.Name]
		out = append(out, n)
	}
	var extra []Node
	for i := range nodes {
		if seen[nodes[i].Name] {
			continue
		}
		n := Node{Name: nodes[i].Name}
		fromNode(&n, &nodes[i])
		n.Pods = running[n.Name]
		extra = append(extra, n)
	}
	slices.SortFunc(extra, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return append(out, extra...)
}

// fromNode fills in what the cluster says of n.
func fromNode(n *Node, k *corev1.Node) {
	n.InCluster = true
	n.KubeletVersion = k.Status.NodeInfo.KubeletVersion
	switch {
	case k.Labels["phonefarm.dev/runtime"] == "proot":
		n.Runtime = RuntimeRootless
	case k.Labels["node-role.kubernetes.io/control-plane"] == "true":
		n.Runtime = RuntimeK3sServer
	case n.Runtime == "":
		n.Runtime = RuntimeK3sAgent
	}
	n.Ready = string(corev1.ConditionUnknown)
	for _, c := range k.Status.Conditions {
		if c.Type == corev1.NodeReady {
			n.Ready = string(c.Status)
			continue
		}
		typ := string(c.Type)
		switch {
		case healthyWhenTrue[c.Type] && c.Status == corev1.ConditionFalse:
			typ += "=False"
		case healthyWhenTrue[c.Type] || c.Status != corev1.ConditionTrue:
			continue
		}
		n.Conditions = append(n.Conditions, Condition{Type: typ, Reason: c.Reason, Message: c.Message,
			Since: c.LastTransitionTime.UTC().Format("2006-01-02T15:04:05Z")})
	}
	for _, t := range k.Spec.Taints {
		s := t.Key
		if t.Value != "" {
			s += "=" + t.Value
		}
		n.Taints = append(n.Taints, s+":"+string(t.Effect))
	}
	for _, a := range k.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			n.Addresses = append(n.Addresses, a.Address)
		}
	}
}

// Collect reads every phone's facts (in parallel, parallelism at once)
// and the cluster's nodes and pods, and joins them. A phone that cannot
// be read is shown with why; a cluster that cannot be reached is an
// error returned beside the phones' view.
func Collect(ctx context.Context, f *farm.Farm, parallelism int) ([]Node, error) {
	got, clusterErr, nodes, pods := gather(ctx, f, parallelism, nil)
	return Join(f.Inventory, got, nodes, pods), clusterErr
}

// gather reads the facts and, through client (or the farm's first server
// when nil), the nodes and pods.
func gather(ctx context.Context, f *farm.Farm, parallelism int, client kubernetes.Interface) (map[string]PhoneFacts, error, []corev1.Node, []corev1.Pod) {
	var wg sync.WaitGroup
	var nodes []corev1.Node
	var pods []corev1.Pod
	var clusterErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if client == nil {
			c, err := f.Cluster(ctx)
			if err != nil {
				clusterErr = fmt.Errorf("the cluster: %w", err)
				return
			}
			client = c.Client
		}
		nodes, pods, clusterErr = list(ctx, client)
	}()
	got := Facts(ctx, f, parallelism)
	wg.Wait()
	return got, clusterErr, nodes, pods
}

// Facts reads every phone's facts, parallelism at once.
func Facts(ctx context.Context, f *farm.Farm, parallelism int) map[string]PhoneFacts {
	phones := make([]*inventory.Phone, len(f.Inventory.Phones))
	for i := range f.Inventory.Phones {
		phones[i] = &f.Inventory.Phones[i]
	}
	got, _ := f.Facts(ctx, phones, parallelism) // each phone's error is in its entry
	out := map[string]PhoneFacts{}
	for _, g := range got {
		out[g.Phone.Name] = PhoneFacts{Facts: g.Facts, Err: g.Err}
	}
	return out
}

func list(ctx context.Context, c kubernetes.Interface) ([]corev1.Node, []corev1.Pod, error) {
	ns, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("list nodes: %w", err)
	}
	ps, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "status.phase=Running"})
	if err != nil {
		return ns.Items, nil, fmt.Errorf("list pods: %w", err)
	}
	return ns.Items, ps.Items, nil
}
