package provision

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Annotations recording what phonefarm set on a node, so a label or taint
// removed from the inventory is removed from the node, and labels set by
// others are left alone.
const (
	annLabels = "phonefarm.dev/labels"
	annTaints = "phonefarm.dev/taints"
)

// Cluster is the k3s API reached through the first server.
type Cluster struct {
	Client kubernetes.Interface
	// Kubeconfig is k3s's admin kubeconfig with its server rewritten to
	// an address reachable from here.
	Kubeconfig []byte
}

// NewCluster builds a client from k3s's kubeconfig (k3s.yaml, which points
// at 127.0.0.1) and the API URL phonefarm reaches the server at.
func NewCluster(k3sYAML []byte, serverURL, name string) (*Cluster, error) {
	cfg, err := clientcmd.Load(k3sYAML)
	if err != nil {
		return nil, fmt.Errorf("parse k3s kubeconfig: %w", err)
	}
	for _, c := range cfg.Clusters {
		c.Server = serverURL
	}
	if name != "" {
		renameContext(cfg, name)
	}
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, err
	}
	rest, err := clientcmd.RESTConfigFromKubeConfig(out)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	rest.Timeout = 15e9
	cs, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return nil, err
	}
	return &Cluster{Client: cs, Kubeconfig: out}, nil
}

// renameContext names the cluster, user and context after the farm, so the
// kubeconfig can be merged with others.
func renameContext(cfg *clientcmdapi.Config, name string) {
	for k, v := range cfg.Clusters {
		delete(cfg.Clusters, k)
		cfg.Clusters[name] = v
	}
	for k, v := range cfg.AuthInfos {
		delete(cfg.AuthInfos, k)
		cfg.AuthInfos[name] = v
	}
	for k, v := range cfg.Contexts {
		delete(cfg.Contexts, k)
		v.Cluster, v.AuthInfo = name, name
		cfg.Contexts[name] = v
	}
	cfg.CurrentContext = name
}

// Facts lists the nodes as the API sees them.
func (c *Cluster) Facts(ctx context.Context) (*ClusterFacts, error) {
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	cf := &ClusterFacts{Nodes: map[string]NodeFacts{}}
	for _, n := range nodes.Items {
		cf.Nodes[n.Name] = nodeFacts(&n)
	}
	return cf, nil
}

func nodeFacts(n *corev1.Node) NodeFacts {
	nf := NodeFacts{Labels: n.Labels, Ready: nodeReady(n)}
	for _, t := range n.Spec.Taints {
		nf.Taints = append(nf.Taints, taintString(t))
	}
	nf.ManagedLabels = splitList(n.Annotations[annLabels])
	nf.ManagedTaints = splitList(n.Annotations[annTaints])
	return nf
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func taintString(t corev1.Taint) string {
	s := t.Key
	if t.Value != "" {
		s += "=" + t.Value
	}
	return s + ":" + string(t.Effect)
}

func parseTaint(s string) corev1.Taint {
	kv, effect, _ := strings.Cut(s, ":")
	k, v, _ := strings.Cut(kv, "=")
	return corev1.Taint{Key: k, Value: v, Effect: corev1.TaintEffect(effect)}
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
