package agent_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	vke2e "github.com/virtual-kubelet/virtual-kubelet/test/e2e"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/phonefarm/phonefarm/agent/config"
	"github.com/phonefarm/phonefarm/internal/conformance"
	"github.com/phonefarm/phonefarm/internal/kube"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testenv"
)

// AgentSpecs are Kubernetes' e2e tests the agent's node must pass: pods
// come and go, get the node's IP, run commands and give logs over the
// API server's websockets, and see their own name, namespace and IP.
var AgentSpecs = []string{
	"[sig-node] Pods should be submitted and removed",
	"[sig-node] Pods should get a host IP",
	"[sig-node] Pods should support remote command execution over websockets",
	"[sig-node] Pods should support retrieving logs from the container over websockets",
	"[sig-node] Kubelet when scheduling a busybox command in a pod should print the output to logs",
	"[sig-node] Downward API should provide pod name, namespace and IP address as env vars",
}

// Tests nobody at phonefarm wrote, against the agent's node: the e2e tests
// above (the k3s server is tainted, and the agent's node has no proot
// taint, so their pods land on the agent), then virtual-kubelet's own
// provider suite.
func TestUpstreamSuitesOnTheAgent(t *testing.T) {
	a := newAgentFarm(t, farmOptions{E2E: true, ServerTaints: []string{"node-role.kubernetes.io/control-plane=true:NoSchedule"}})
	// virtual-kubelet's suite runs images it calls foo, bar and baz: here
	// busybox, waiting until it is told to stop.
	busybox := a.f.Images[testbed.BusyboxImage]
	cf, err := busybox.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	c.Cmd = []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"}
	sleeper, err := mutate.Config(busybox, c)
	if err != nil {
		t.Fatal(err)
	}
	imgs := map[string]v1.Image{}
	for _, n := range []string{"foo", "bar", "baz"} {
		imgs["docker.io/library/"+n+":latest"] = sleeper
	}
	if err := a.f.Registry.Push(t.Context(), imgs); err != nil {
		t.Fatal(err)
	}
	// k3s's own pods (cluster DNS, local storage) tolerate the server's
	// taint; they must be running there before the untainted agent joins,
	// or the scheduler may place them on the agent, where CoreDNS cannot
	// bind port 53 as the unprivileged user a phone's agent runs as, and
	// e2e.test's setup waits for them in vain.
	kc, err := os.ReadFile(a.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kube.NewClient(kc)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.WaitDeployments(t.Context(), "kube-system", []string{"coredns", "local-path-provisioner"}, 5*time.Minute); err != nil {
		t.Fatalf("%v%s", err, k.PodTrouble(t.Context(), "kube-system"))
	}
	// virtual-kubelet's suite reaches the node's kubelet API at the
	// kubelet's port, 10250, whatever the node says.
	testenv.HoldPort(t, 10250)
	a.start(t, "phone1", func(c *config.Config) { c.Taints = []string{}; c.KubeletPort = 10250 })
	waitFor(t, "node phone1 Ready", 3*time.Minute, func(ctx context.Context) (bool, error) {
		n, err := a.cs.CoreV1().Nodes().Get(ctx, "phone1", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := condition(n, corev1.NodeReady)
		return c != nil && c.Status == corev1.ConditionTrue, nil
	})

	t.Run("kubernetes e2e", func(t *testing.T) {
		var out bytes.Buffer
		results, err := conformance.Run(t.Context(), conformance.Options{
			E2E: filepath.Join(a.e2e, "e2e.test"), Kubeconfig: a.kubeconfig, ReportDir: t.TempDir(),
			Focus: conformance.FocusOn(AgentSpecs...), Output: &out,
		})
		if err != nil {
			t.Fatalf("%v\n%s", err, tail(out.String(), 8000))
		}
		var b bytes.Buffer
		conformance.Print(&b, results)
		t.Logf("e2e.test on the agent's node:\n%s", b.String())
		passed := 0
		for _, r := range results {
			passed += r.Passed
			if r.Failed > 0 || r.Skipped > 0 {
				t.Errorf("%s: %d failed, %d skipped\n%s", r.Group, r.Failed, r.Skipped, tail(out.String(), 8000))
			}
		}
		if passed != len(AgentSpecs) {
			t.Errorf("%d e2e tests passed, want all %d", passed, len(AgentSpecs))
		}
	})

	t.Run("virtual-kubelet", func(t *testing.T) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vk-e2e"}}
		if _, err := a.cs.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the vk-e2e service account", time.Minute, func(ctx context.Context) (bool, error) {
			_, err := a.cs.CoreV1().ServiceAccounts("vk-e2e").Get(ctx, "default", metav1.GetOptions{})
			return err == nil, err
		})
		vke2e.NewEndToEndTestSuite(vke2e.EndToEndTestSuiteConfig{
			Kubeconfig: a.kubeconfig, Namespace: "vk-e2e", NodeName: "phone1",
			// These two reach the provider through a pod named after the
			// node, as virtual-kubelet's own test deployment runs it; the
			// agent is not a pod. Its /stats/summary and /metrics/resource
			// are checked through the node proxy in
			// TestAgentJoinsK3sAndRunsPods instead.
			ShouldSkipTest: func(name string) bool {
				return name == "TestGetStatsSummary" || name == "TestGetMetricsResource"
			},
		}).Run(t)
	})
}
