package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/phonefarm/phonefarm/internal/demo"
)

func newDemoCmd(e *env) *cobra.Command {
	var dir, appsFile, healthAgent string
	var tailnet bool
	var id int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a simulated phone farm on this machine",
		Long: `Demo brings up a simulated farm of phone-like hosts on this machine (network
namespaces with a real OpenSSH server, OpenRC and postmarketOS's firewall),
a registry on their network that mirrors docker.io, registry.k8s.io and
phonefarm.dev with images built on this machine, and writes an inventory for
it, so phonefarm can be tried without phones. Needs root.`,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", "/var/lib/phonefarm/demo", "where the demo farm keeps its keys and inventory")
	// Tests run demo farms beside a user's: 0 takes a free test-bed ID.
	cmd.PersistentFlags().IntVar(&id, "testbed-id", demo.DefaultID, "test-bed ID (network 10.99.ID.0/24)")
	_ = cmd.PersistentFlags().MarkHidden("testbed-id")
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the demo farm (or reuse a running one), install k3s and run the example apps",
		Long: `Up starts the demo farm's hosts and its registry, writes its inventory and runs
phonefarm apply on it with k3s from scripts/build-k3s.sh. The registry serves
the images of k3s's pause, CoreDNS and local-path-provisioner (from
scripts/build-workloads.sh) and of the example apps (--apps, from
go run ./examples/apps/build). Up then deploys the example apps (pong, chat,
assistant; examples/apps) and waits until they run, and prints the nodes,
where each app runs and how to ask the phones. Run it again and it
converges with no changes. traefik and metrics-server are disabled: their
images are not built here.

With --tailscale the farm also gets a headscale control server on the demo
network and this machine joins its tailnet through a userspace tailscaled
(tailscale and headscale from scripts/build-tailscale.sh); phonefarm mints
a key per phone, joins each to the tailnet and runs k3s over it.

With --health-agent the inventory gets a health block: every phone runs
phonefarm-agent health beside k3s and reports its (simulated) battery and
temperature as node conditions; watch them with phonefarm nodes --watch.`,
		Example: `  sudo phonefarm demo up
  sudo phonefarm demo up --tailscale
  export KUBECONFIG=/var/lib/phonefarm/demo/kubeconfig`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			self, err := os.Executable()
			if err != nil {
				return err
			}
			farm, err := demo.Prepare(ctx, demo.Options{Dir: dir, ID: id, Tailscale: tailnet, Apps: appsFile, HealthAgent: healthAgent,
				RegistryCommand: []string{self, "demo", "registry"}, Progress: e.stderr, Log: e.log})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "demo farm inventory: %s\n", farm.Inventory)
			// The demo's hosts share this machine's kernel, which is not a
			// phone kernel: the inventory skips the kernel-config check,
			// and says why.
			args := []string{"apply", "-f", farm.Inventory}
			if farm.Tailnet != nil {
				err = runSelf(ctx, e, farm.Tailnet.Env(), args...)
			} else {
				err = newRootCmdRun(ctx, e, args...)
			}
			if err != nil {
				return err
			}
			fm, err := (&farmFlag{path: farm.Inventory}).open(e)
			if err != nil {
				return err
			}
			kc, err := fm.WriteKubeconfig(ctx, farm.Kubeconfig())
			if err != nil {
				return err
			}
			if farm.Tailnet != nil {
				// kubectl reaches the tailnet through the same proxy.
				if err := setProxyURL(kc, farm.Tailnet.Controller.Proxy); err != nil {
					return err
				}
			}
			var phones []string
			for _, h := range farm.Testbed.Hosts {
				phones = append(phones, h.Addr)
			}
			pods, err := demo.DeployApps(ctx, kc, phones, e.stderr)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout)
			if err := demo.PrintNodes(ctx, e.stdout, kc); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout)
			demo.PrintApps(e.stdout, pods)
			chat := demo.Apps[1]
			url := fmt.Sprintf("http://%s:%d%s", farm.Testbed.Hosts[0].Addr, chat.NodePort, chat.Path)
			fmt.Fprintf(e.stdout, "\nAsk the chat through its Service and see which phones answer:\n  for i in 1 2 3 4 5 6; do curl -s '%s'; done\n", url)
			if answers, err := demo.Ask(ctx, url, 6); err == nil {
				for _, a := range answers {
					fmt.Fprintln(e.stdout, "  "+a)
				}
			} else {
				fmt.Fprintf(e.stderr, "warning: asking the chat: %v\n", err)
			}
			fmt.Fprintf(e.stdout, "\nexport KUBECONFIG=%s\n", kc)
			if farm.Tailnet != nil {
				fmt.Fprintf(e.stdout, "\nThis machine is on the demo tailnet through a userspace tailscaled; phonefarm reaches\nthe k3s API at its tailnet address through that tailscaled's proxy:\n  %s phonefarm apply -f %s\n", strings.Join(farm.Tailnet.Env(), " "), farm.Inventory)
			}
			return nil
		},
	}
	up.Flags().BoolVar(&tailnet, "tailscale", false, "join the farm to a headscale tailnet on the demo network and run k3s over it")
	up.Flags().StringVar(&healthAgent, "health-agent", "", "a static phonefarm-agent for this machine (CGO_ENABLED=0 go build -o bin/phonefarm-agent ./cmd/phonefarm-agent): every phone runs its health reporter")
	up.Flags().StringVar(&appsFile, "apps", filepath.Join("bin", "apps-"+runtime.GOARCH+".tar"), "the example apps' images (go run ./examples/apps/build -arch "+runtime.GOARCH+" -o bin)")
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop the demo farm and remove its files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			existed, err := demo.Down(cmd.Context(), dir)
			if err != nil {
				return err
			}
			if !existed {
				fmt.Fprintln(e.stdout, "no demo farm is running")
				return nil
			}
			fmt.Fprintln(e.stdout, "demo farm removed")
			return nil
		},
	}
	var addr, blobs string
	registry := &cobra.Command{
		Use:    "registry",
		Short:  "Serve the demo farm's registry (started by demo up)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			return demo.ServeRegistry(ctx, addr, blobs)
		},
	}
	registry.Flags().StringVar(&addr, "addr", "", "listen address")
	registry.Flags().StringVar(&blobs, "blobs", "", "directory of the registry's blobs")
	cmd.AddCommand(up, down, registry)
	return cmd
}

// runSelf runs phonefarm as its own process with more environment, as a
// user on a userspace tailnet would (Go reads proxy settings once per
// process).
func runSelf(ctx context.Context, e *env, extraEnv []string, args ...string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
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
