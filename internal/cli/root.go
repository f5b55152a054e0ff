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
	"strings"
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
	defer strictGroups(root)
	root.SetHelpCommand(newHelpCmd(root))
	root.AddCommand(
		newVersionCmd(e),
		newInitCmd(e),
		newInventoryCmd(e),
		newFactsCmd(e),
		newCheckCmd(e),
		newPlanCmd(e),
		newApplyCmd(e),
		newKubeconfigCmd(e),
		newResetCmd(e),
		newNodesCmd(e),
		newUpCmd(e),
		newDestroyCmd(e),
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

// strictGroups makes every command that only groups others refuse an
// argument it does not know (cobra prints the group's help and exits 0),
// as an unknown flag is refused: with a usage error, exit status 2.
func strictGroups(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		strictGroups(c)
	}
	if !cmd.HasSubCommands() {
		return
	}
	run := cmd.RunE
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return unknownCommand(c, args[0])
		}
		if run != nil {
			return run(c, args)
		}
		return c.Help()
	}
	if !cmd.HasParent() {
		// Bare phonefarm on a terminal is the wizard.
		help := cmd.RunE
		cmd.RunE = func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				if init, _, err := c.Find([]string{"init"}); err == nil && init != c && stdioTTY(c) {
					return init.RunE(init, nil)
				}
			}
			return help(c, args)
		}
	}
}

func unknownCommand(c *cobra.Command, name string) error {
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2
	}
	msg := fmt.Sprintf("unknown command %q for %q", name, c.CommandPath())
	if s := c.SuggestionsFor(name); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, ", "))
	}
	var names []string
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() {
			names = append(names, sub.Name())
		}
	}
	return fmt.Errorf("%w: %s; %s has: %s", errUsage, msg, c.CommandPath(), strings.Join(names, ", "))
}

// newHelpCmd is help that says so when it has no topic by that name.
func newHelpCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				name := strings.Join(args, " ")
				return fmt.Errorf("%w: no help topic %q; phonefarm help lists the commands", errUsage, name)
			}
			cmd.InitDefaultHelpFlag()
			return cmd.Help()
		},
	}
}

// stdioTTY: the command's input and output are a terminal.
func stdioTTY(c *cobra.Command) bool {
	in, ok := c.InOrStdin().(*os.File)
	return ok && isTTY(in) && isTTY(c.OutOrStdout())
}
