// Package farmtest brings up, for a test, test-bed hosts that run pods and
// a registry on their network that mirrors the upstream registries with
// the images built here: what every test of workloads on real k3s starts
// from.
package farmtest

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/phonefarm/phonefarm/examples/apps"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testenv"
)

// Options choose the images the registry serves beyond k3s's own.
type Options struct {
	// Apps adds the example apps' images.
	Apps bool
	// E2E adds the images Kubernetes' e2e tests run.
	E2E bool
}

// Farm is a running test bed with its registry.
type Farm struct {
	Testbed   *testbed.Testbed
	Registry  *testbed.Registry
	K3s       string // the k3s binary
	Workloads string // testbed.WorkloadTools
	E2E       string // testbed.E2ETools, with Options.E2E
	// Images the registry serves, by upstream reference.
	Images map[string]v1.Image
}

// Require returns the k3s binary and the workload tools, or stops the test
// (a failure under CI) when this machine lacks them.
func Require(t testing.TB) (k3s, workloads string) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mmdebstrap")
	k3s, err := testbed.K3sBinary()
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	if workloads, err = testbed.WorkloadTools(); err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	return k3s, workloads
}

// New starts hosts that can run pods and the registry; both stop when the
// test ends.
func New(t testing.TB, o Options, hosts ...testbed.HostSpec) *Farm {
	t.Helper()
	k3s, workloads := Require(t)
	f := &Farm{K3s: k3s, Workloads: workloads}
	if o.E2E {
		var err error
		if f.E2E, err = testbed.E2ETools(); err != nil {
			testenv.Unavailable(t, "%v", err)
		}
	}
	ctx := context.Background()
	tb, err := testbed.Up(ctx, testbed.Options{Hosts: hosts, Workloads: workloads})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tb.Down(context.Background()) })
	f.Testbed = tb
	if f.Images, err = testbed.SystemImages(ctx, testbed.DefaultCacheDir(), workloads); err != nil {
		t.Fatal(err)
	}
	if o.Apps {
		imgs, err := apps.Images(ctx, "amd64", t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(f.Images, imgs)
	}
	if o.E2E {
		imgs, err := testbed.E2EImages(ctx, testbed.DefaultCacheDir(), f.E2E, workloads)
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(f.Images, imgs)
	}
	if f.Registry, err = testbed.StartRegistry(ctx, fmt.Sprintf("%s:%d", tb.Gateway, testbed.RegistryPort), filepath.Join(t.TempDir(), "blobs"), f.Images); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Registry.Close)
	return f
}

// Inventory returns a farm.yaml for the hosts (testbed.Inventory) that
// mirrors every upstream registry to the farm's registry and takes k3s
// from the machine's build unless o says otherwise.
func (f *Farm) Inventory(o testbed.InventoryOptions) string {
	o.Registry = f.Registry.URL
	if o.K3s == "" {
		o.K3s = f.K3s
	}
	if o.Servers == 0 {
		o.Servers = 1
	}
	return f.Testbed.Inventory(o)
}
