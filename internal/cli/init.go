package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"

	"github.com/phonefarm/phonefarm/tui"
)

// DefaultK3sVersion is the k3s release phonefarm init writes.
const DefaultK3sVersion = "v1.32.0+k3s1"

type initFlags struct {
	farm                             farmFlag
	ssh, fastboot, k3sFiles          []string
	agent, proot                     []string
	androidDir                       string
	adbServer                        string
	user, identity, become, known    string
	k3sVersion, name, kubeconfigPath string
}

func newInitCmd(e *env) *cobra.Command {
	var f initFlags
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Find your phones and build a farm of them, interactively",
		Long: `Init is a wizard in the terminal: it finds phones on USB (adb, fastboot,
postmarketOS's USB network) and at the SSH hosts you give, says what each
can become (k3s over SSH on postmarketOS or Linux, phonefarm's rootless agent
on stock Android, or postmarketOS flashed onto it), writes the inventory (or
adds the phones to the one there), shows phonefarm's plan and applies it
with live progress, and ends with the nodes and a kubeconfig.

Everything it does the other commands do too: the inventory it writes is
applied by phonefarm apply the same way. It needs a terminal; phonefarm
with no command on a terminal starts it too.`,
		Example: `  phonefarm init
  phonefarm init -f ~/farm.yaml --ssh user@192.168.1.20 --ssh 192.168.1.21`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInit(e, f)
		},
	}
	f.farm.register(cmd)
	fl := cmd.Flags()
	fl.StringArrayVar(&f.ssh, "ssh", nil, "an SSH host to look at, [user@]host[:port] (repeatable; more can be added in the wizard)")
	fl.StringArrayVar(&f.fastboot, "fastboot", nil, "a fastboot device over TCP, tcp:host:port (repeatable; USB ones are found)")
	fl.StringVar(&f.adbServer, "adb-server", "", "the adb server's host:port (adb's default when empty)")
	fl.StringVar(&f.user, "user", "user", "SSH user for hosts that do not name one")
	fl.StringVar(&f.identity, "identity", "~/.ssh/id_ed25519", "SSH private key")
	fl.StringVar(&f.become, "become", "doas", "how to become root over SSH: doas, sudo or none")
	fl.StringVar(&f.known, "known-hosts", "~/.ssh/known_hosts", "known_hosts file host keys are recorded in")
	fl.StringVar(&f.k3sVersion, "k3s-version", DefaultK3sVersion, "k3s release the farm runs")
	fl.StringArrayVar(&f.k3sFiles, "k3s-file", nil, "a local k3s binary, ARCH=PATH (repeatable; for farms without GitHub)")
	fl.StringArrayVar(&f.agent, "agent", nil, "a phonefarm-agent binary for Android phones, ARCH=PATH (repeatable)")
	fl.StringArrayVar(&f.proot, "proot", nil, "a proot for Android phones, ARCH=PATH (repeatable; scripts/build-proot.sh builds one)")
	fl.StringVar(&f.androidDir, "android-dir", "", "where the agent lives on Android phones (default /data/local/tmp/phonefarm)")
	fl.StringVar(&f.name, "name", "drawer", "the farm's name")
	fl.StringVar(&f.kubeconfigPath, "kubeconfig", "", "where to write the kubeconfig (default ~/.kube/phonefarm-NAME.yaml)")
	return cmd
}

// errNoTerminal: the wizard was started without a terminal.
var errNoTerminal = errors.New("phonefarm init needs a terminal")

func runInit(e *env, f initFlags) error {
	in, inOK := e.stdin.(*os.File)
	out, outOK := e.stdout.(*os.File)
	if !inOK || !outOK || !isTTY(in) || !isTTY(out) {
		return fmt.Errorf("%w: %w; without one, write the inventory by hand (phonefarm inventory schema describes it) and run phonefarm apply", errUsage, errNoTerminal)
	}
	files, err := archFiles("--k3s-file", f.k3sFiles)
	if err != nil {
		return err
	}
	agents, err := archFiles("--agent", f.agent)
	if err != nil {
		return err
	}
	proots, err := archFiles("--proot", f.proot)
	if err != nil {
		return err
	}
	path, err := filepath.Abs(f.farm.path)
	if err != nil {
		return err
	}
	o := tui.Options{
		Path: path,
		Discover: tui.DiscoverOptions{SSH: f.ssh, Fastboot: f.fastboot, ADBServer: f.adbServer,
			User: f.user, Identity: f.identity, Become: f.become, KnownHosts: f.known},
		Settings: tui.Settings{Farm: f.name, User: f.user, Identity: f.identity, Become: f.become, KnownHosts: f.known,
			K3sVersion: f.k3sVersion, K3sFiles: files, ADBServer: f.adbServer, Agent: agents, Proot: proots, AndroidDir: f.androidDir},
	}
	m := tui.New(&tui.Real{Log: e.log, Kubeconfig: f.kubeconfigPath}, o)
	p := tea.NewProgram(m, tea.WithAltScreen(), tea.WithInput(in), tea.WithOutput(out))
	final, err := p.Run()
	if err != nil {
		return err
	}
	// What stays on the terminal once the wizard's screen is gone.
	if s := final.(tui.Model).Summary(); s != "" {
		fmt.Fprint(e.stdout, s)
	}
	if final.(tui.Model).Failed() {
		return exitError{code: 1}
	}
	return nil
}

// archFiles reads ARCH=PATH flags into absolute paths by architecture.
func archFiles(flag string, kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		arch, path, ok := strings.Cut(kv, "=")
		if !ok || arch == "" || path == "" {
			return nil, fmt.Errorf("%w: %s %q: want ARCH=PATH, e.g. arm64=./file", errUsage, flag, kv)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		out[arch] = abs
	}
	return out, nil
}
