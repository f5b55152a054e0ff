package conformance

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phonefarm/phonefarm/internal/cli"
	"github.com/phonefarm/phonefarm/internal/demo"
	"github.com/phonefarm/phonefarm/internal/kube"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testbed/farmtest"
)

// Kubernetes' own conformance tests pass on a farm phonefarm built: three
// phones (a server and two agents) pulling every image through the farm's
// registry mirror. CI runs each group's representative tests;
// PHONEFARM_CONFORMANCE=full (scripts/conformance.sh) runs every
// [Conformance] test of the groups.
func TestKubernetesConformance(t *testing.T) {
	f := farmtest.New(t, farmtest.Options{E2E: true},
		testbed.HostSpec{Name: "server1", PostmarketOS: true}, testbed.HostSpec{Name: "agent1", PostmarketOS: true}, testbed.HostSpec{Name: "agent2"})
	dir := t.TempDir()
	t.Setenv("PHONEFARM_CACHE", filepath.Join(dir, "cache"))
	file, kc := filepath.Join(dir, "farm.yaml"), filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(file, []byte(f.Inventory(testbed.InventoryOptions{Name: "conformance"})), 0o600); err != nil {
		t.Fatal(err)
	}
	pf := func(args ...string) {
		var out bytes.Buffer
		if code := cli.Run(t.Context(), args, strings.NewReader(""), &out, &out); code != 0 {
			t.Fatalf("phonefarm %s: exit %d\n%s", strings.Join(args, " "), code, out.String())
		}
	}
	pf("apply", "-f", file, "--skip-checks=kernel-config")
	pf("kubeconfig", "-f", file, "--out", kc)
	// e2e.test's suite setup wants the cluster's own pods running.
	b, err := os.ReadFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kube.NewClient(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitDeployments(t.Context(), "kube-system", demo.SystemDeployments, 5*time.Minute); err != nil {
		t.Fatal(err)
	}

	full := os.Getenv("PHONEFARM_CONFORMANCE") == "full"
	log, err := os.Create(filepath.Join(dir, "e2e.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	start := time.Now()
	results, err := Run(context.Background(), Options{E2E: filepath.Join(f.E2E, "e2e.test"), Kubeconfig: kc, ReportDir: filepath.Join(dir, "report"), Full: full, Output: log})
	if err != nil {
		out, _ := os.ReadFile(log.Name())
		t.Fatalf("%v\n%s", err, tail(out, 4000))
	}
	var table bytes.Buffer
	Print(&table, results)
	t.Logf("Kubernetes conformance (full list: %v) in %s:\n%s", full, time.Since(start).Round(time.Second), table.String())
	for i, r := range results {
		if r.Failed > 0 {
			t.Errorf("%s: %d failed", r.Group, r.Failed)
		}
		if i < len(Groups) && r.Passed == 0 {
			t.Errorf("%s: no test passed", r.Group)
		}
	}
	if t.Failed() {
		out, _ := os.ReadFile(log.Name())
		t.Logf("e2e.test output (end):\n%s", tail(out, 8000))
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
