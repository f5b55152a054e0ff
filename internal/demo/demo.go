// Package demo is phonefarm's demo farm: phone-like hosts on this machine
// (the test bed), a registry on their network that mirrors the upstream
// registries with images built here, optionally a headscale tailnet, and
// phonefarm's example apps. Prepare brings the farm up and writes its
// inventory; the command line then converges it with phonefarm apply, as a
// user would, and DeployApps runs the apps on it.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/phonefarm/phonefarm/internal/testbed"
)

// DefaultID is the test-bed ID of the demo farm (bridge pf1br,
// 10.99.1.0/24); test runs allocate IDs from 10 up, so the two never
// collide.
const DefaultID = 1

// Hosts is the demo farm: three postmarketOS phones and an old Debian
// laptop. Each phone is named after its device.
var Hosts = []testbed.HostSpec{
	{Name: "enchilada", PostmarketOS: true},
	{Name: "fajita", PostmarketOS: true},
	{Name: "beryllium", PostmarketOS: true},
	{Name: "thinkpad"},
}

// Devices are the demo phones' postmarketOS codenames.
var Devices = map[string]string{"enchilada": "oneplus-enchilada", "fajita": "oneplus-fajita", "beryllium": "xiaomi-beryllium"}

// AssistantPhone carries the label the example assistant is pinned to.
const AssistantPhone = "enchilada"

// Options shape Prepare.
type Options struct {
	Dir string
	ID  int
	// Tailscale runs the farm on a headscale tailnet.
	Tailscale bool
	// Apps is a docker archive of the example apps' images
	// (go run ./examples/apps/build), served by the demo's registry.
	Apps string
	// HealthAgent, when set, is a phonefarm-agent for this machine's
	// architecture: the inventory gets a health block and every phone
	// reports its battery and temperature to the cluster.
	HealthAgent string
	// RegistryCommand runs the demo's registry process; the registry's
	// address and blobs directory are appended (testbed.StartRegistryProcess).
	RegistryCommand []string
	// Progress receives one line per thing the demo starts or reuses.
	Progress io.Writer
	Log      *slog.Logger
}

// Farm is a prepared demo farm.
type Farm struct {
	Dir       string
	Inventory string // farm.yaml
	Testbed   *testbed.Testbed
	Registry  *testbed.RegistryProcess
	Tailnet   *Tailnet // nil off the tailnet
}

// Kubeconfig is where the demo writes its kubeconfig.
func (f *Farm) Kubeconfig() string { return filepath.Join(f.Dir, "kubeconfig") }

// Prepare starts the demo farm's hosts, registry and tailnet, reusing a
// running one's parts that still answer, fills the registry and writes the
// inventory.
func Prepare(ctx context.Context, o Options) (*Farm, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	k3s, err := testbed.K3sBinary()
	if err != nil {
		return nil, err
	}
	workloads, err := testbed.WorkloadTools()
	if err != nil {
		return nil, err
	}
	apps, err := appImages(o.Apps)
	if err != nil {
		return nil, err
	}
	tb, err := hosts(ctx, o, workloads)
	if err != nil {
		return nil, err
	}
	f := &Farm{Dir: o.Dir, Inventory: filepath.Join(o.Dir, "farm.yaml"), Testbed: tb}
	if f.Registry, err = registry(ctx, o, tb); err != nil {
		return nil, err
	}
	fmt.Fprintln(o.Progress, "building the images the farm pulls: pause, CoreDNS, local-path-provisioner, busybox (once per machine)")
	images, err := testbed.SystemImages(ctx, testbed.DefaultCacheDir(), workloads)
	if err != nil {
		return nil, err
	}
	for ref, img := range apps {
		images[ref] = img
	}
	if err := testbed.PushTo(ctx, f.Registry.URL, images); err != nil {
		return nil, err
	}
	opts := testbed.InventoryOptions{
		Name: "demo", K3s: k3s, Servers: 1, Devices: Devices, Registry: f.Registry.URL,
		Labels:      map[string]string{"phonefarm.dev/demo": "true"},
		PhoneLabels: map[string]map[string]string{AssistantPhone: {"phonefarm.dev/assistant": "true"}},
		// Recorded in the inventory, so phonefarm plan and apply on it
		// agree with demo up without flags.
		SkipChecks: map[string]string{"kernel-config": KernelConfigSkipReason},
	}
	if o.HealthAgent != "" {
		abs, err := filepath.Abs(o.HealthAgent)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("the health reporter: %w (CGO_ENABLED=0 go build -o bin/phonefarm-agent ./cmd/phonefarm-agent builds it)", err)
		}
		opts.Health = &testbed.HealthInventory{Agent: abs}
	}
	if o.Tailscale {
		if f.Tailnet, err = startTailnet(ctx, o, tb); err != nil {
			return nil, err
		}
		opts.Tailnet = &f.Tailnet.Inventory
	} else if err := stopTailnet(o.Dir); err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.Inventory, []byte(tb.Inventory(opts)), 0o644); err != nil {
		return nil, err
	}
	return f, nil
}

// KernelConfigSkipReason is why the demo farm skips the kernel-config
// check.
const KernelConfigSkipReason = "the demo's phones are network namespaces on this machine: they run its kernel, whose config says nothing about a phone's"

// appImages reads the example apps' images from their docker archive.
func appImages(file string) (map[string]v1.Image, error) {
	const how = "go run ./examples/apps/build -arch amd64 -o bin builds them"
	if file == "" {
		return nil, errors.New("no example app images; " + how)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
	if err != nil {
		return nil, fmt.Errorf("example app images %s (%s): %w", file, how, err)
	}
	out := map[string]v1.Image{}
	for _, d := range m {
		for _, t := range d.RepoTags {
			tag, err := name.NewTag(t)
			if err != nil {
				return nil, fmt.Errorf("%s in %s: %w", t, file, err)
			}
			if out[t], err = tarball.ImageFromPath(file, &tag); err != nil {
				return nil, fmt.Errorf("%s in %s: %w", t, file, err)
			}
		}
	}
	return out, nil
}

// hosts starts the demo farm's hosts unless every host of a previous run
// still answers.
func hosts(ctx context.Context, o Options, workloads string) (*testbed.Testbed, error) {
	if tb, err := load(o.Dir); err == nil {
		if allAnswer(tb) && tb.Workloads == workloads {
			fmt.Fprintln(o.Progress, "demo farm already running")
			return tb, nil
		}
		_ = stopTailnet(o.Dir)
		stopRegistry(o.Dir)
		_ = tb.Down(ctx) // a half-dead or outdated farm is rebuilt from scratch
	}
	fmt.Fprintln(o.Progress, "starting the demo farm (the first run builds the host image, about a minute)")
	tb, err := testbed.Up(ctx, testbed.Options{Hosts: Hosts, ID: o.ID, Dir: o.Dir, Persistent: true, Workloads: workloads, Log: o.Log})
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(tb, "", "  ")
	if err != nil {
		return nil, err
	}
	return tb, os.WriteFile(filepath.Join(o.Dir, "testbed.json"), b, 0o600)
}

func load(dir string) (*testbed.Testbed, error) {
	b, err := os.ReadFile(filepath.Join(dir, "testbed.json"))
	if err != nil {
		return nil, err
	}
	var tb testbed.Testbed
	if err := json.Unmarshal(b, &tb); err != nil {
		return nil, fmt.Errorf("read demo state %s: %w", dir, err)
	}
	return &tb, nil
}

func allAnswer(tb *testbed.Testbed) bool {
	for _, h := range tb.Hosts {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(h.Addr, "22"), time.Second)
		if err != nil {
			return false
		}
		c.Close()
	}
	return len(tb.Hosts) > 0
}

func registryStatePath(dir string) string { return filepath.Join(dir, "registry.json") }

// registry starts the demo's registry process unless one answers.
func registry(ctx context.Context, o Options, tb *testbed.Testbed) (*testbed.RegistryProcess, error) {
	var p testbed.RegistryProcess
	if b, err := os.ReadFile(registryStatePath(o.Dir)); err == nil && json.Unmarshal(b, &p) == nil && testbed.RegistryAnswers(p.URL) {
		return &p, nil
	}
	stopRegistry(o.Dir)
	if len(o.RegistryCommand) == 0 {
		return nil, errors.New("no command to run the demo's registry")
	}
	fmt.Fprintln(o.Progress, "starting the demo registry on "+tb.Gateway+": the farm's mirror of docker.io, registry.k8s.io and phonefarm.dev")
	rp, err := testbed.StartRegistryProcess(ctx, tb, o.RegistryCommand)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(rp)
	if err := os.WriteFile(registryStatePath(o.Dir), b, 0o600); err != nil {
		rp.Stop()
		return nil, err
	}
	return rp, nil
}

func stopRegistry(dir string) {
	var p testbed.RegistryProcess
	if b, err := os.ReadFile(registryStatePath(dir)); err == nil && json.Unmarshal(b, &p) == nil {
		p.Stop()
	}
	_ = os.Remove(registryStatePath(dir))
}

// Down stops the demo farm and removes its files. It reports false when
// no demo farm was there.
func Down(ctx context.Context, dir string) (bool, error) {
	tb, err := load(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	if err := stopTailnet(dir); err != nil {
		return true, err
	}
	stopRegistry(dir)
	return true, tb.Down(ctx)
}

// NoProxy is what a process on a tailnet demo reaches directly: this
// machine and the demo network.
func noProxy(tb *testbed.Testbed) string {
	return "127.0.0.1,localhost," + strings.TrimSuffix(tb.Gateway, ".1") + ".0/24"
}

// ServeRegistry is the body of the demo's registry process: it serves the
// blobs directory on addr until ctx ends.
func ServeRegistry(ctx context.Context, addr, blobs string) error {
	return testbed.ServeRegistry(ctx, addr, blobs)
}
