package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a simulated phone farm on this machine",
		Long: `Demo brings up a simulated farm of phone-like hosts on this machine (network
namespaces with a real OpenSSH server, OpenRC and postmarketOS's firewall)
and writes an inventory for it, so phonefarm can be tried without phones.
Needs root.`,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", "/var/lib/phonefarm/demo", "where the demo farm keeps its keys and inventory")
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the demo farm (or reuse a running one) and install k3s on it",
		Long: `Up starts the demo farm's hosts, writes its inventory and runs phonefarm apply
on it with k3s from scripts/build-k3s.sh, then prints the nodes and how to
use kubectl. Run it again and it converges with no changes.`,
		Example: `  sudo phonefarm demo up
  export KUBECONFIG=/var/lib/phonefarm/demo/kubeconfig`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			file, err := demoUp(ctx, e, dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "demo farm inventory: %s\n", file)
			// The demo's hosts share this machine's kernel, which is not a
			// phone kernel: its kernel-config verdict says nothing about
			// phones, so that one check is skipped (and says so).
			if err := newRootCmdRun(ctx, e, "apply", "-f", file, "--skip-checks=kernel-config"); err != nil {
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
			return printNodes(ctx, e.stdout, kc)
		},
	}
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

// demoUp starts the demo farm unless every host of a previous run still
// answers, and returns the path of its inventory.
func demoUp(ctx context.Context, e *env, dir string) (string, error) {
	file := filepath.Join(dir, "farm.yaml")
	if tb, err := loadDemo(dir); err == nil {
		if _, err := os.Stat(file); err == nil && allAnswer(tb) {
			fmt.Fprintln(e.stderr, "demo farm already running")
			return file, nil
		}
		_ = tb.Down(ctx) // a half-dead farm is rebuilt from scratch
	}
	fmt.Fprintln(e.stderr, "starting the demo farm (the first run builds the host image, about a minute)")
	k3s, err := testbed.K3sBinary()
	if err != nil {
		return "", err
	}
	tb, err := testbed.Up(ctx, testbed.Options{Hosts: demoHosts, ID: demoID, Dir: dir, Persistent: true, Log: e.log})
	if err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(tb, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "testbed.json"), b, 0o600); err != nil {
		return "", err
	}
	return file, os.WriteFile(file, []byte(tb.Inventory(testbed.InventoryOptions{Name: "demo", K3s: k3s, Servers: 1, Devices: demoDevices, Labels: map[string]string{"phonefarm.dev/demo": "true"}})), 0o644)
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
