// Package cli is phonefarm's command line. Run builds the command tree for one
// invocation; every command takes its streams from env, never from os.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// env is what every command needs from the outside world.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time
	log    *slog.Logger
	// verbose is bound to the persistent --verbose flag.
	verbose bool
}

// exitError carries a specific exit status out of a command; its message
// has already been printed (or there is none).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Run executes phonefarm with args (without the program name) and returns
// the process exit status.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, now: time.Now}
	root := newRootCmd(e)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(stderr, "phonefarm: %v\n", err)
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

var errUsage = errors.New("usage")

func newRootCmd(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "phonefarm",
		Short: "Turn a drawer of old phones into a k3s cluster",
		Long: `phonefarm turns old phones into a Kubernetes (k3s) cluster, declaratively.

An inventory file (farm.yaml) describes the phones: how to reach them (SSH or
adb), their role in the cluster and their labels. phonefarm gathers facts about
each phone, checks it, and converges it to what the inventory says.`,
		Example: `  phonefarm inventory validate -f farm.yaml
  phonefarm facts -f farm.yaml
  phonefarm facts -f farm.yaml pixel3 -o json`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			level := slog.LevelWarn
			if e.verbose {
				level = slog.LevelDebug
			}
			e.log = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
		},
	}
	root.PersistentFlags().BoolVarP(&e.verbose, "verbose", "v", false, "log what phonefarm does to standard error")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w: %v", errUsage, err)
	})
	root.AddCommand(
		newVersionCmd(e),
		newInventoryCmd(e),
		newFactsCmd(e),
		newCheckCmd(e),
		newPlanCmd(e),
		newApplyCmd(e),
		newKubeconfigCmd(e),
		newResetCmd(e),
		newDemoCmd(e),
		newKernelcfgCmd(e),
		newDevicesCmd(e),
		newFlashCmd(e),
	)
	return root
}

// isTTY reports whether w is a terminal, for choosing tables and colour.
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
