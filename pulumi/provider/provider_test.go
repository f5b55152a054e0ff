package provider_test

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/blang/semver"
	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/integration"
	presource "github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/property"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/phonefarm/phonefarm/internal/kube"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testenv"
	"github.com/phonefarm/phonefarm/pulumi/provider"
)

var update = flag.Bool("update", false, "rewrite pulumi/schema.json from the provider")

// The schema checked in (from which the Go SDK is generated) is the
// provider's.
func TestSchemaIsCheckedIn(t *testing.T) {
	s := server(t)
	resp, err := s.GetSchema(p.GetSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var pretty strings.Builder
	var v any
	if err := json.Unmarshal([]byte(resp.Schema), &v); err != nil {
		t.Fatal(err)
	}
	enc := json.NewEncoder(&pretty)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join("..", "schema.json")
	if *update {
		if err := os.WriteFile(file, []byte(pretty.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != pretty.String() {
		t.Errorf("%s is not the provider's schema; run scripts/gen-pulumi-sdk.sh", file)
	}
	for _, secret := range []string{`"secrets"`, `"kubeconfig"`} {
		i := strings.Index(pretty.String(), secret+": {")
		if i < 0 || !strings.Contains(pretty.String()[i:min(len(pretty.String()), i+400)], `"secret": true`) {
			t.Errorf("the schema does not mark %s secret", secret)
		}
	}
}

func server(t *testing.T) integration.Server {
	t.Helper()
	prov, err := provider.New()
	if err != nil {
		t.Fatal(err)
	}
	s, err := integration.NewServer(t.Context(), provider.Name, semver.MustParse("0.1.0"), integration.WithProvider(prov))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testFarm brings up test-bed phones and returns a writer of their
// inventory, whose join token is env:PF_TOKEN.
func testFarm(t *testing.T, hosts ...testbed.HostSpec) (*testbed.Testbed, func(labels map[string]map[string]string) string) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mmdebstrap")
	k3s, err := testbed.K3sBinary()
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	tb, err := testbed.Up(context.Background(), testbed.Options{Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tb.Down(context.Background()) })
	return tb, func(labels map[string]map[string]string) string {
		inv := tb.Inventory(testbed.InventoryOptions{Name: "pulumi-farm", K3s: k3s, Servers: 1, PhoneLabels: labels,
			SkipChecks: map[string]string{"kernel-config": "test-bed hosts run this machine's kernel"}})
		return strings.Replace(inv, "\nk3s:\n", "\nk3s:\n  token: env:PF_TOKEN\n", 1)
	}
}

const token = "pulumi-test-token-0123456789"

func inputs(inventory string) property.Map {
	return property.NewMap(map[string]property.Value{
		"inventory": property.New(inventory),
		"secrets":   property.New(map[string]property.Value{"PF_TOKEN": property.New(token)}).WithSecret(true),
	})
}

// The provider's lifecycle on test-bed phones, in process: create brings
// the nodes up; a label change diffs and updates that phone alone; a
// stopped k3s reads as drift; delete resets the phones.
func TestFarmLifecycle(t *testing.T) {
	t.Parallel()
	tb, write := testFarm(t, testbed.HostSpec{Name: "server1", PostmarketOS: true}, testbed.HostSpec{Name: "agent1"})
	ctx := context.Background()
	s := server(t)
	urn := presource.NewURN("test", "provider", "", "phonefarm:index:Farm", "test")
	inv1 := write(map[string]map[string]string{"agent1": {"phonefarm.dev/shelf": "top"}})
	inv2 := write(map[string]map[string]string{"agent1": {"phonefarm.dev/shelf": "bottom"}})

	nodes := func(out property.Map) map[string]corev1.Node {
		t.Helper()
		kc := out.Get("kubeconfig")
		if !kc.Secret() || !strings.Contains(kc.AsString(), "client-key-data") {
			t.Fatalf("kubeconfig output: secret %v, want a secret kubeconfig", kc.Secret())
		}
		c, err := kube.NewClient([]byte(kc.AsString()))
		if err != nil {
			t.Fatal(err)
		}
		list, err := c.Core.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]corev1.Node{}
		for _, n := range list.Items {
			m[n.Name] = n
		}
		return m
	}
	ready := func(n corev1.Node) bool {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}
	phone := func(out property.Map, name string) property.Map {
		return out.Get("phones").AsMap().Get(name).AsMap()
	}

	integration.LifeCycleTest{
		Resource: "phonefarm:index:Farm",
		Create: integration.Operation{
			Inputs: inputs(inv1),
			Hook: func(_, out property.Map) {
				if !out.Get("secrets").Secret() {
					t.Error("the secrets input is not secret in the output")
				}
				ns := nodes(out)
				for _, h := range []string{"server1", "agent1"} {
					if n, ok := ns[h]; !ok || !ready(n) {
						t.Errorf("after create, node %s is not Ready: %v", h, ns[h].Status.Conditions)
					}
					if !phone(out, h).Get("converged").AsBool() {
						t.Errorf("after create, %s is not converged: %v", h, phone(out, h))
					}
				}
				// The label change is an update of agent1's label, and
				// of nothing else.
				check, err := s.Check(p.CheckRequest{Urn: urn, State: out, Inputs: inputs(inv2)})
				if err != nil {
					t.Fatal(err)
				}
				diff, err := s.Diff(p.DiffRequest{ID: "pulumi-farm", Urn: urn, State: out, Inputs: check.Inputs})
				if err != nil {
					t.Fatal(err)
				}
				var keys []string
				for k, d := range diff.DetailedDiff {
					keys = append(keys, k+"="+string(d.Kind))
				}
				slices.Sort(keys)
				want := []string{`inventory=update`, `phones["agent1"].labels["phonefarm.dev/shelf"]=update`}
				if !diff.HasChanges || !slices.Equal(keys, want) {
					t.Errorf("diff of a label change: %v (changes %v), want %v", keys, diff.HasChanges, want)
				}
			},
		},
		Updates: []integration.Operation{{
			Inputs: inputs(inv2),
			Hook: func(in, out property.Map) {
				if got := nodes(out)["agent1"].Labels["phonefarm.dev/shelf"]; got != "bottom" {
					t.Errorf("after the update, agent1's label is %q, want bottom", got)
				}
				if l := phone(out, "agent1").Get("labels").AsMap().Get("phonefarm.dev/shelf"); l.AsString() != "bottom" {
					t.Errorf("after the update, the state has agent1's label %v, want bottom", l)
				}
				// k3s stopped by hand reads as drift: agent1 is not
				// converged, with the step that would repair it.
				if out, err := tb.Exec(ctx, tb.Host("agent1"), "rc-service k3s-agent stop"); err != nil {
					t.Fatalf("stop k3s on agent1: %v\n%s", err, out)
				}
				read, err := s.Read(p.ReadRequest{ID: "pulumi-farm", Urn: urn, Properties: out, Inputs: in})
				if err != nil {
					t.Fatal(err)
				}
				a, s1 := phone(read.Properties, "agent1"), phone(read.Properties, "server1")
				pending := ""
				if v := a.Get("pending"); v.IsArray() {
					for _, step := range v.AsArray().All {
						pending += step.AsString() + "\n"
					}
				}
				if a.Get("converged").AsBool() || !strings.Contains(pending, "k3s") {
					t.Errorf("read after stopping k3s on agent1: converged %v, pending %q; want not converged, pending a k3s start\nphones: %v", a.Get("converged"), pending, read.Properties.Get("phones"))
				}
				if !s1.Get("converged").AsBool() {
					t.Errorf("read after stopping k3s on agent1: server1 is not converged: %v", s1)
				}
				if !read.Properties.Get("kubeconfig").Secret() {
					t.Error("read lost the kubeconfig's secrecy")
				}
			},
		}},
	}.Run(t, s)

	// Delete reset the phones.
	for _, h := range []string{"server1", "agent1"} {
		left, err := tb.Exec(ctx, tb.Host(h), "ls -d /usr/local/bin/k3s /var/lib/rancher/k3s /etc/rancher/k3s 2>/dev/null; pgrep -f '^/usr/local/bin/k3s' || true")
		if err != nil || strings.TrimSpace(string(left)) != "" {
			t.Errorf("after delete, %s still has: %q (%v)", h, left, err)
		}
	}
}

// Check fills in what the inventory asks of each phone and turns an
// inventory that does not load into a located check failure.
func TestCheck(t *testing.T) {
	s := server(t)
	urn := presource.NewURN("test", "provider", "", "phonefarm:index:Farm", "test")
	good := `apiVersion: phonefarm.dev/v1alpha1
kind: Farm
name: drawer
phones:
  - {name: enchilada, os: postmarketos, role: server, ssh: {host: 10.0.0.11}, labels: {phonefarm.dev/shelf: top}}
`
	resp, err := s.Check(p.CheckRequest{Urn: urn, Inputs: inputs(good)})
	if err != nil || len(resp.Failures) > 0 {
		t.Fatalf("check of a good inventory: %v %v", resp.Failures, err)
	}
	ph := resp.Inputs.Get("phones").AsMap().Get("enchilada").AsMap()
	if ph.Get("role").AsString() != "server" || !ph.Get("converged").AsBool() || ph.Get("labels").AsMap().Get("phonefarm.dev/shelf").AsString() != "top" {
		t.Errorf("check filled in %v for enchilada, want server, converged, shelf=top", ph)
	}
	if !resp.Inputs.Get("secrets").Secret() {
		t.Error("check lost the secrets' secrecy")
	}

	bad := strings.Replace(good, "role: server", "role: sever", 1)
	resp, err = s.Check(p.CheckRequest{Urn: urn, Inputs: inputs(bad)})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Failures) != 1 || resp.Failures[0].Property != "inventory" || !strings.Contains(resp.Failures[0].Reason, ":5:") || !strings.Contains(resp.Failures[0].Reason, "server") {
		t.Errorf("check of a misspelt role: %+v, want one failure on inventory at line 5 naming what is valid", resp.Failures)
	}

	set := inputs(good).Set("phones", property.New(map[string]property.Value{"x": property.New(map[string]property.Value{
		"role": property.New("server"), "os": property.New("linux"), "converged": property.New(true)})}))
	resp, err = s.Check(p.CheckRequest{Urn: urn, Inputs: set})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Failures) != 1 || resp.Failures[0].Property != "phones" {
		t.Errorf("check with phones set by hand: %+v, want a failure on phones", resp.Failures)
	}
}
