package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/phonefarm/phonefarm/farm"
	"github.com/phonefarm/phonefarm/inventory"
)

// farmFlag is the -f flag of every command that reads an inventory.
type farmFlag struct{ path string }

func (f *farmFlag) register(cmd *cobra.Command) {
	def := os.Getenv("PHONEFARM_INVENTORY")
	if def == "" {
		def = "farm.yaml"
	}
	cmd.Flags().StringVarP(&f.path, "file", "f", def, "inventory file (default $PHONEFARM_INVENTORY or farm.yaml)")
	_ = cmd.MarkFlagFilename("file", "yaml", "yml")
}

// open opens the farm with this invocation's options. Its warnings are
// the caller's to print.
func (f *farmFlag) open(e *env) (*farm.Farm, error) {
	return farm.Open(f.path, e.farmOptions(0))
}

// openPhones opens the farm to work on parallel phones at once, prints
// its warnings to stderr and selects the named phones (all when none are
// named).
func (f *farmFlag) openPhones(e *env, names []string, parallel int) (*farm.Farm, []*inventory.Phone, error) {
	fm, err := farm.Open(f.path, e.farmOptions(parallel))
	if err != nil {
		return nil, nil, err
	}
	printWarnings(e.stderr, fm.Warnings())
	phones, err := fm.Select(names)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return fm, phones, nil
}

// printWarnings writes an inventory's warnings to w.
func printWarnings(w io.Writer, ps []inventory.Problem) {
	for _, p := range ps {
		fmt.Fprintln(w, p.String())
	}
}

// farmOptions are the engine's options for this invocation: its logger
// and clock, how many phones to work on at once (the engine's default
// when 0), and passphrases asked on the terminal when there is one.
func (e *env) farmOptions(parallel int) farm.Options {
	o := farm.Options{Log: e.log, Now: e.now, Parallel: parallel}
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		o.Passphrase = func(file string) ([]byte, error) {
			fmt.Fprintf(e.stderr, "Passphrase for %s: ", file)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(e.stderr)
			return b, err
		}
	}
	return o
}
