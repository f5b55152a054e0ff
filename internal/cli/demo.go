package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/phonefarm/phonefarm/internal/testbed"
)

// demoID is the test-bed ID of the demo farm (bridge pf1br, 10.99.1.0/24);
// test runs allocate IDs from 10 up, so the two never collide.
const demoID = 1

// demoHosts is the embedded default farm: three postmarketOS phones and
// an old Debian laptop. Each phone is named after its device.
var demoHosts = []testbed.HostSpec{
	{Name: "enchilada", PostmarketOS: true},
	{Name: "fajita", PostmarketOS: true},
	{Name: "beryllium", PostmarketOS: true},
	{Name: "thinkpad"},
}

var demoDevices = map[string]string{"enchilada": "oneplus-enchilada", "fajita": "oneplus-fajita", "beryllium": "xiaomi-beryllium"}

func newDemoCmd(e *env) *cobra.Command {
	var dir string
	var tailnet bool
	var id int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a simulated phone farm on this machine",
		Long: `Demo brings up a simulated farm of phone-like hosts on this machine (network
namespaces with a real OpenSSH server, OpenRC and postmarketOS's firewall)
and writes an inventory for it, so phonefarm can be tried without phones.
Needs root.`,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", "/var/lib/phonefarm/demo", "where the demo farm keeps its keys and inventory")
	// Tests run demo farms beside a user's: 0 takes a free test-bed ID.
	cmd.PersistentFlags().IntVar(&id, "testbed-id", demoID, "test-bed ID (network 10.99.ID.0/24)")
	_ = cmd.PersistentFlags().MarkHidden("testbed-id")
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the demo farm (or reuse a running one) and install k3s on it",
		Long: `Up starts the demo farm's hosts, writes its inventory and runs phonefarm apply
on it with k3s from scripts/build-k3s.sh, then prints the nodes and how to
use kubectl. Run it again and it converges with no changes.

With --tailscale the farm also gets a headscale control server on the demo
network and this machine joins its tailnet through a userspace tailscaled
(tailscale and headscale from scripts/build-tailscale.sh); phonefarm mints
a key per phone, joins each to the tailnet and runs k3s over it.`,
		Example: `  sudo phonefarm demo up
  sudo phonefarm demo up --tailscale
  export KUBECONFIG=/var/lib/phonefarm/demo/kubeconfig`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			k3s, err := testbed.K3sBinary()
			if err != nil {
				return err
			}
			tb, err := demoFarm(ctx, e, dir, id)
			if err != nil {
				return err
			}
			opts := testbed.InventoryOptions{Name: "demo", K3s: k3s, Servers: 1, Devices: demoDevices, Labels: map[string]string{"phonefarm.dev/demo": "true"}}
			var tn *demoTailnet
			if tailnet {
				if tn, err = startDemoTailnet(ctx, e, tb, dir); err != nil {
					return err
				}
				opts.Tailnet = &tn.Inventory
			} else if err := stopDemoTailnet(dir); err != nil {
				return err
			}
			file := filepath.Join(dir, "farm.yaml")
			if err := os.WriteFile(file, []byte(tb.Inventory(opts)), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "demo farm inventory: %s\n", file)
			// The demo's hosts share this machine's kernel, which is not a
			// phone kernel: its kernel-config verdict says nothing about
			// phones, so that one check is skipped (and says so).
			args := []string{"apply", "-f", file, "--skip-checks=kernel-config"}
			if tn != nil {
				err = tn.run(ctx, e, args...)
			} else {
				err = newRootCmdRun(ctx, e, args...)
			}
			if err != nil {
				return err
			}
			farm, err := (&farmFlag{path: file}).load()
			if err != nil {
				return err
			}
			kc, err := e.writeKubeconfig(ctx, farm, filepath.Join(dir, "kubeconfig"))
			if err != nil {
				return err
			}
			if tn != nil {
				// kubectl reaches the tailnet through the same proxy.
				if err := setProxyURL(kc, tn.Controller.Proxy); err != nil {
					return err
				}
			}
			if err := printNodes(ctx, e.stdout, kc); err != nil {
				return err
			}
			if tn != nil {
				fmt.Fprintf(e.stdout, "\nThis machine is on the demo tailnet through a userspace tailscaled; phonefarm reaches\nthe k3s API at its tailnet address through that tailscaled's proxy:\n  HTTPS_PROXY=%s NO_PROXY=%s phonefarm apply -f %s\n", tn.Controller.Proxy, tn.NoProxy, file)
			}
			return nil
		},
	}
	up.Flags().BoolVar(&tailnet, "tailscale", false, "join the farm to a headscale tailnet on the demo network and run k3s over it")
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop the demo farm and remove its files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tb, err := loadDemo(dir)
			if errors.Is(err, os.ErrNotExist) {
				fmt.Fprintln(e.stdout, "no demo farm is running")
				return nil
			}
			if err != nil {
				return err
			}
			if err := stopDemoTailnet(dir); err != nil {
				return err
			}
			if err := tb.Down(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "demo farm removed")
			return nil
		},
	}
	cmd.AddCommand(up, down)
	return cmd
}

// demoTailnet is the demo's headscale and this machine's tailscaled on
// its tailnet, both outliving the command that started them.
type demoTailnet struct {
	Headscale  *testbed.Headscale
	Controller *testbed.Controller
	Inventory  testbed.TailnetInventory
	NoProxy    string // what is reached directly: the demo network
}

func tailnetStatePath(dir string) string { return filepath.Join(dir, "tailnet.json") }

// startDemoTailnet starts headscale and the controller's tailscaled unless
// both of a previous run still answer.
func startDemoTailnet(ctx context.Context, e *env, tb *testbed.Testbed, dir string) (*demoTailnet, error) {
	tools, err := testbed.TailnetTools()
	if err != nil {
		return nil, err
	}
	var tn demoTailnet
	if b, err := os.ReadFile(tailnetStatePath(dir)); err == nil && json.Unmarshal(b, &tn) == nil &&
		tn.Headscale != nil && tn.Controller != nil && tn.Headscale.Answers(ctx) && tn.Controller.Answers() {
		fmt.Fprintln(e.stderr, "demo tailnet already running")
		return &tn, nil
	}
	if err := stopDemoTailnet(dir); err != nil {
		return nil, err
	}
	fmt.Fprintln(e.stderr, "starting the demo tailnet: headscale on "+tb.Gateway+" and this machine's tailscaled")
	hs, err := testbed.StartHeadscale(ctx, tb, tools)
	if err != nil {
		return nil, err
	}
	tn = demoTailnet{Headscale: hs, NoProxy: "127.0.0.1,localhost," + strings.TrimSuffix(tb.Gateway, ".1") + ".0/24"}
	keyFile := filepath.Join(dir, "headscale-api-key")
	if err := os.WriteFile(keyFile, []byte(hs.APIKey), 0o600); err != nil {
		hs.Stop()
		return nil, err
	}
	tn.Inventory = testbed.TailnetInventory{LoginServer: hs.URL, APIKeyFile: keyFile, Tools: tools}
	key, err := hs.PreAuthKey(ctx, "demo-admin")
	if err == nil {
		tn.Controller, err = testbed.JoinController(ctx, tb, tools, hs.URL, key)
	}
	if err != nil {
		hs.Stop()
		return nil, err
	}
	b, err := json.MarshalIndent(tn, "", "  ")
	if err == nil {
		err = os.WriteFile(tailnetStatePath(dir), b, 0o600)
	}
	if err != nil {
		tn.Controller.Stop()
		hs.Stop()
		return nil, err
	}
	return &tn, nil
}

// stopDemoTailnet ends the demo tailnet's processes, if any.
func stopDemoTailnet(dir string) error {
	b, err := os.ReadFile(tailnetStatePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var tn demoTailnet
	if err := json.Unmarshal(b, &tn); err != nil {
		return fmt.Errorf("read %s: %w", tailnetStatePath(dir), err)
	}
	if tn.Controller != nil {
		tn.Controller.Stop()
	}
	if tn.Headscale != nil {
		tn.Headscale.Stop()
	}
	return os.Remove(tailnetStatePath(dir))
}

// run runs phonefarm as its own process with the tailnet proxy in its
// environment, as a user on a userspace tailnet would (Go reads proxy
// settings once per process).
func (tn *demoTailnet) run(ctx context.Context, e *env, args ...string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = append(os.Environ(), "HTTPS_PROXY="+tn.Controller.Proxy, "NO_PROXY="+tn.NoProxy)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = e.stdin, e.stdout, e.stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("phonefarm %s: %w", args[0], err)
	}
	return nil
}

// setProxyURL points every cluster of a kubeconfig file at an HTTP proxy.
func setProxyURL(file, proxy string) error {
	cfg, err := clientcmd.LoadFromFile(file)
	if err != nil {
		return err
	}
	for _, c := range cfg.Clusters {
		c.ProxyURL = proxy
	}
	return clientcmd.WriteToFile(*cfg, file)
}

// newRootCmdRun runs another phonefarm command with the same streams.
func newRootCmdRun(ctx context.Context, e *env, args ...string) error {
	root := newRootCmd(e)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func loadDemo(dir string) (*testbed.Testbed, error) {
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

// demoFarm starts the demo farm's hosts unless every host of a previous
// run still answers.
func demoFarm(ctx context.Context, e *env, dir string, id int) (*testbed.Testbed, error) {
	if tb, err := loadDemo(dir); err == nil {
		if allAnswer(tb) {
			fmt.Fprintln(e.stderr, "demo farm already running")
			return tb, nil
		}
		_ = stopDemoTailnet(dir)
		_ = tb.Down(ctx) // a half-dead farm is rebuilt from scratch
	}
	fmt.Fprintln(e.stderr, "starting the demo farm (the first run builds the host image, about a minute)")
	tb, err := testbed.Up(ctx, testbed.Options{Hosts: demoHosts, ID: id, Dir: dir, Persistent: true, Log: e.log})
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(tb, "", "  ")
	if err != nil {
		return nil, err
	}
	return tb, os.WriteFile(filepath.Join(dir, "testbed.json"), b, 0o600)
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

// printNodes lists the cluster's nodes as kubectl get nodes would, and how
// to point kubectl at the cluster.
func printNodes(ctx context.Context, w io.Writer, kubeconfig string) error {
	kc, err := os.ReadFile(kubeconfig)
	if err != nil {
		return err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	fmt.Fprintln(w)
	tw := newTable(w)
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
	tw.Flush()
	fmt.Fprintf(w, "\nexport KUBECONFIG=%s\n", kubeconfig)
	return nil
}
