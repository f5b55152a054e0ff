package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/phonefarm/phonefarm/farm"
	"github.com/phonefarm/phonefarm/pulumi/sdk/go/phonefarm"
)

// stackFlags are what phonefarm up and destroy share: where the Pulumi
// state lives.
type stackFlags struct {
	farmFlag
	state string
}

func (s *stackFlags) register(cmd *cobra.Command) {
	s.farmFlag.register(cmd)
	cmd.Flags().StringVar(&s.state, "state", "", "directory of the Pulumi state (default $PULUMI_BACKEND_URL, else phonefarm/pulumi in the user's state directory)")
}

func newUpCmd(e *env) *cobra.Command {
	var s stackFlags
	var preview, refresh bool
	var skipChecks []string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Converge the farm as a Pulumi stack (state, history and secrets in Pulumi)",
		Long: `up converges the farm as phonefarm apply does, through Pulumi: the farm is a
stack named after it, with one phonefarm:index:Farm resource, so Pulumi keeps
its state and history and the inventory's secrets, encrypted.

The pulumi CLI must be on PATH. The state is kept in --state (a local
directory), or $PULUMI_BACKEND_URL when set; its secrets are encrypted with
$PULUMI_CONFIG_PASSPHRASE (or the file $PULUMI_CONFIG_PASSPHRASE_FILE names),
asked for on a terminal when neither is set. The values of the inventory's
env: references are read from the environment and kept in the state as
secrets, so a later destroy does not need them.`,
		Example: "  phonefarm up -f farm.yaml --preview\n  phonefarm up -f farm.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			stack, err := e.farmStack(ctx, &s, skipChecks)
			if err != nil {
				return err
			}
			if preview {
				_, err := stack.Preview(ctx, optpreview.Diff(), optpreview.ProgressStreams(e.stdout), optpreview.ErrorProgressStreams(e.stderr))
				return pulumiErr("preview", err)
			}
			opts := []optup.Option{optup.Diff(), optup.ProgressStreams(e.stdout), optup.ErrorProgressStreams(e.stderr)}
			if refresh {
				opts = append(opts, optup.Refresh())
			}
			if _, err := stack.Up(ctx, opts...); err != nil {
				return pulumiErr("up", err)
			}
			fmt.Fprintf(e.stdout, "The farm's kubeconfig: phonefarm kubeconfig -f %s, or pulumi stack output kubeconfig --show-secrets\n", s.path)
			return nil
		},
	}
	s.register(cmd)
	cmd.Flags().BoolVar(&preview, "preview", false, "show what up would change, change nothing")
	cmd.Flags().BoolVar(&refresh, "refresh", false, "read the phones into the state first, so what drifted shows as such")
	cmd.Flags().StringSliceVar(&skipChecks, "skip-checks", nil, "install even where these preflight checks fail (check IDs, or all)")
	cmd.Flags().Lookup("skip-checks").NoOptDefVal = "all"
	return cmd
}

func newDestroyCmd(e *env) *cobra.Command {
	var s stackFlags
	var yes bool
	cmd := &cobra.Command{
		Use:   "destroy",
		Short: "Reset the farm's phones through its Pulumi stack",
		Long: `destroy destroys the farm's Pulumi stack, which phonefarm up made: every phone
of the inventory is reset (k3s, its data and phonefarm's files go; Android
phones lose the agent). The stack and its history stay. Asks first unless
--yes.`,
		Example: "  phonefarm destroy -f farm.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			stack, err := e.farmStack(ctx, &s, nil)
			if err != nil {
				return err
			}
			if !yes {
				fmt.Fprintf(e.stderr, "This resets every phone of stack %s: k3s and its data go.\nType yes to continue: ", stack.Name())
				var answer string
				_, _ = fmt.Fscanln(e.stdin, &answer)
				if strings.TrimSpace(answer) != "yes" {
					fmt.Fprintln(e.stderr, "nothing changed")
					return exitError{code: 1}
				}
			}
			_, err = stack.Destroy(ctx, optdestroy.ProgressStreams(e.stdout), optdestroy.ErrorProgressStreams(e.stderr))
			return pulumiErr("destroy", err)
		},
	}
	s.register(cmd)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// pulumiErr shortens the Automation API's errors, which repeat the
// command's whole output (already shown as it ran).
func pulumiErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if auto.IsConcurrentUpdateError(err) {
		return fmt.Errorf("%s: another update of this stack is running", op)
	}
	msg := err.Error()
	if i := strings.Index(msg, "\ncode:"); i >= 0 {
		msg = msg[:i]
	}
	return fmt.Errorf("pulumi %s failed (its output above says why): %s", op, strings.TrimSpace(msg))
}

// farmStack opens (creating it when new) the farm's Pulumi stack, whose
// program is one Farm resource over the inventory file.
func (e *env) farmStack(ctx context.Context, s *stackFlags, skipChecks []string) (auto.Stack, error) {
	fm, err := farm.Open(s.path, e.farmOptions(0))
	if err != nil {
		return auto.Stack{}, err
	}
	printWarnings(e.stderr, fm.Warnings())
	file, err := filepath.Abs(s.path)
	if err != nil {
		return auto.Stack{}, err
	}
	// The secrets the inventory names, from the environment, into the
	// state: destroy then needs none of them.
	secrets := map[string]string{}
	for _, name := range fm.Inventory.EnvNames() {
		if v, ok := os.LookupEnv(name); ok {
			secrets[name] = v
		}
	}
	pulumiCmd, err := auto.NewPulumiCommand(nil)
	if err != nil {
		return auto.Stack{}, fmt.Errorf("phonefarm up and destroy need the pulumi CLI on PATH: %w", err)
	}
	backend, err := stateURL(s.state)
	if err != nil {
		return auto.Stack{}, err
	}
	plugins, err := pluginDir(farm.DefaultCacheDir())
	if err != nil {
		return auto.Stack{}, err
	}
	// The pulumi CLI prefers $PULUMI_BACKEND_URL to the project's backend,
	// so --state is passed that way too.
	envs := map[string]string{"PULUMI_BACKEND_URL": backend}
	if os.Getenv("PULUMI_SKIP_UPDATE_CHECK") == "" {
		envs["PULUMI_SKIP_UPDATE_CHECK"] = "true"
	}
	if os.Getenv("PULUMI_CONFIG_PASSPHRASE") == "" && os.Getenv("PULUMI_CONFIG_PASSPHRASE_FILE") == "" {
		pass, err := e.askPassphrase()
		if err != nil {
			return auto.Stack{}, err
		}
		envs["PULUMI_CONFIG_PASSPHRASE"] = pass
	}
	program := func(ctx *pulumi.Context) error {
		args := &phonefarm.FarmArgs{InventoryFile: pulumi.String(file)}
		if len(secrets) > 0 {
			args.Secrets = pulumi.ToStringMap(secrets)
		}
		if len(skipChecks) > 0 {
			args.SkipChecks = pulumi.ToStringArray(skipChecks)
		}
		f, err := phonefarm.NewFarm(ctx, "farm", args)
		if err != nil {
			return err
		}
		ctx.Export("kubeconfig", f.Kubeconfig)
		ctx.Export("phones", f.Phones)
		return nil
	}
	project := workspace.Project{
		Name:    "phonefarm",
		Runtime: workspace.NewProjectRuntimeInfo("go", nil),
		Backend: &workspace.ProjectBackend{URL: backend},
		Plugins: &workspace.Plugins{Providers: []workspace.PluginOptions{{Name: "phonefarm", Path: plugins}}},
	}
	stack, err := auto.UpsertStackInlineSource(ctx, fm.Name(), "phonefarm", program,
		auto.Pulumi(pulumiCmd), auto.Project(project), auto.SecretsProvider("passphrase"), auto.EnvVars(envs))
	if err != nil {
		return auto.Stack{}, pulumiErr("stack "+fm.Name(), err)
	}
	return stack, nil
}

// stateURL is the Pulumi backend of phonefarm up: the directory given,
// else $PULUMI_BACKEND_URL, else phonefarm's in the user's state
// directory.
func stateURL(dir string) (string, error) {
	if dir == "" {
		if u := os.Getenv("PULUMI_BACKEND_URL"); u != "" {
			return u, nil
		}
		base := os.Getenv("XDG_STATE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("no --state and no home directory: %w", err)
			}
			base = filepath.Join(home, ".local", "state")
		}
		dir = filepath.Join(base, "phonefarm", "pulumi")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("the Pulumi state directory: %w", err)
	}
	return "file://" + dir, nil
}

// pluginDir is a directory holding pulumi-resource-phonefarm, this very
// program, for the Pulumi engine to start as the provider.
func pluginDir(cacheDir string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return "", err
	}
	dir := filepath.Join(cacheDir, "pulumi-plugin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	link := filepath.Join(dir, PluginName)
	if cur, err := os.Readlink(link); err == nil && cur == self {
		return dir, nil
	}
	// Replaced atomically: another phonefarm may be using the link.
	tmp := fmt.Sprintf("%s.%d", link, os.Getpid())
	_ = os.Remove(tmp)
	if err := os.Symlink(self, tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	return dir, nil
}

// askPassphrase asks for the passphrase of the stack's secrets on the
// terminal.
func (e *env) askPassphrase() (string, error) {
	f, ok := e.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", errors.New("set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE): the stack's secrets are encrypted with it")
	}
	fmt.Fprint(e.stderr, "Passphrase of the stack's secrets (PULUMI_CONFIG_PASSPHRASE): ")
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(e.stderr)
	if err != nil {
		return "", err
	}
	if len(b) == 0 {
		return "", errors.New("an empty passphrase would leave the stack's secrets readable")
	}
	return string(b), nil
}
