package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/phonefarm/phonefarm/examples/apps"
	"github.com/phonefarm/phonefarm/internal/kube"
)

// AppsNamespace is where the example apps run.
const AppsNamespace = "phonefarm-examples"

// App is one example app and the NodePort it answers on.
type App struct {
	Name     string
	NodePort int
	Path     string // what to ask it
}

// Apps are the example apps the demo runs.
var Apps = []App{
	{Name: "pong", NodePort: 30080, Path: "/"},
	{Name: "chat", NodePort: 30081, Path: "/?say=hello"},
	{Name: "assistant", NodePort: 30082, Path: "/?say=where"},
}

// SystemDeployments are k3s's packaged components that run pods on the
// demo farm: cluster DNS and local storage.
var SystemDeployments = []string{"coredns", "local-path-provisioner"}

// DeployApps waits for the cluster's DNS and storage, applies the example
// apps' manifests and waits until every replica is available and each
// app's Service answers on every address in phones (kube-proxy on each
// phone has its rules). It returns each app's pods by the node they run on.
func DeployApps(ctx context.Context, kubeconfig string, phones []string, progress io.Writer) (map[string]map[string]string, error) {
	kc, err := os.ReadFile(kubeconfig)
	if err != nil {
		return nil, err
	}
	c, err := kube.NewClient(kc)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(progress, "waiting for the cluster's DNS and storage (coredns, local-path-provisioner)")
	if err := c.WaitDeployments(ctx, "kube-system", SystemDeployments, 5*time.Minute); err != nil {
		return nil, err
	}
	fmt.Fprintln(progress, "deploying the example apps: "+strings.Join(apps.ManifestNames(), ", "))
	for _, name := range apps.ManifestNames() {
		b, err := apps.Manifests.ReadFile(name)
		if err != nil {
			return nil, err
		}
		if err := c.Apply(ctx, "examples/apps/"+name, b); err != nil {
			return nil, err
		}
	}
	var names []string
	for _, a := range Apps {
		names = append(names, a.Name)
	}
	if err := c.WaitDeployments(ctx, AppsNamespace, names, 5*time.Minute); err != nil {
		return nil, err
	}
	if err := c.WaitEndpoints(ctx, AppsNamespace, names, time.Minute); err != nil {
		return nil, err
	}
	for _, a := range Apps {
		for _, p := range phones {
			if err := waitAnswer(ctx, fmt.Sprintf("http://%s:%d%s", p, a.NodePort, a.Path), time.Minute); err != nil {
				return nil, fmt.Errorf("%s's Service: %w", a.Name, err)
			}
		}
	}
	out := map[string]map[string]string{}
	for _, a := range Apps {
		if out[a.Name], err = c.PodsByNode(ctx, AppsNamespace, "app.kubernetes.io/name="+a.Name); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// waitAnswer polls url until it answers 200 OK.
func waitAnswer(ctx context.Context, url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		_, err := Ask(ctx, url, 1)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer within %s: %w", limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Ask sends n requests to url and returns the answers.
func Ask(ctx context.Context, url string, n int) ([]string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	var out []string
	for range n {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return out, err
		}
		// A new connection per request, as separate curl calls make, so
		// kube-proxy picks a backend each time.
		req.Close = true
		resp, err := client.Do(req)
		if err != nil {
			return out, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return out, err
		}
		if resp.StatusCode != http.StatusOK {
			return out, fmt.Errorf("%s: %s: %s", url, resp.Status, b)
		}
		out = append(out, strings.TrimSpace(string(b)))
	}
	return out, nil
}

// PrintApps shows where each app's pods run.
func PrintApps(w io.Writer, pods map[string]map[string]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tPODS\tPHONES")
	for _, a := range Apps {
		var nodes []string
		seen := map[string]bool{}
		for _, n := range pods[a.Name] {
			if !seen[n] {
				seen[n] = true
				nodes = append(nodes, n)
			}
		}
		sort.Strings(nodes)
		fmt.Fprintf(tw, "%s\t%d\t%s\n", a.Name, len(pods[a.Name]), strings.Join(nodes, ", "))
	}
	tw.Flush()
}

// PrintNodes lists the cluster's nodes as kubectl get nodes would.
func PrintNodes(ctx context.Context, w io.Writer, kubeconfig string) error {
	kc, err := os.ReadFile(kubeconfig)
	if err != nil {
		return err
	}
	c, err := kube.NewClient(kc)
	if err != nil {
		return err
	}
	nodes, err := c.Core.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tROLES\tINTERNAL-IP\tOS\tVERSION")
	for _, n := range nodes.Items {
		status := "NotReady"
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				status = "Ready"
			}
		}
		var roles []string
		for l := range n.Labels {
			if r, ok := strings.CutPrefix(l, "node-role.kubernetes.io/"); ok {
				roles = append(roles, r)
			}
		}
		sort.Strings(roles)
		ip := ""
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ip = a.Address
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, status, strings.Join(roles, ","), ip, n.Status.NodeInfo.OSImage, n.Status.NodeInfo.KubeletVersion)
	}
	return tw.Flush()
}
