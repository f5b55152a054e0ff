package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/phonefarm/phonefarm/devicedb"
	"github.com/phonefarm/phonefarm/internal/connect"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport/ssh"
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

// load reads and validates the inventory, adding the device database's
// warnings (unknown or archived codenames).
func (f *farmFlag) load() (*inventory.Farm, error) {
	farm, err := inventory.Load(f.path)
	if err != nil {
		return nil, err
	}
	for i, p := range farm.Phones {
		if p.Device == "" {
			continue
		}
		d, ok := devicedb.Lookup(p.Device)
		path := fmt.Sprintf("phones[%d].device", i)
		switch {
		case !ok:
			msg := fmt.Sprintf("unknown postmarketOS device %q; phonefarm devices %s lists similar ones", p.Device, searchHint(p.Device))
			farm.Warnf(path, "%s", msg)
		case d.Category == devicedb.Archived:
			farm.Warnf(path, "device %q (%s) is archived in postmarketOS: no longer maintained, images may not build", p.Device, d.Name)
		}
	}
	return farm, nil
}

// loadPhones loads the inventory, prints its warnings to stderr and selects
// the named phones (all when none are named).
func (f *farmFlag) loadPhones(e *env, names []string) (*inventory.Farm, []*inventory.Phone, error) {
	farm, err := f.load()
	if err != nil {
		return nil, nil, err
	}
	printWarnings(e.stderr, farm)
	phones, err := farm.Select(names)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return farm, phones, nil
}

func searchHint(codename string) string {
	vendor, _, _ := strings.Cut(codename, "-")
	return vendor
}

// printWarnings writes the inventory's warnings to w.
func printWarnings(w io.Writer, farm *inventory.Farm) {
	for _, p := range farm.Warnings() {
		fmt.Fprintln(w, p.String())
	}
}

// connector opens phones for a command; it asks passphrases on the
// terminal when there is one.
func (e *env) connector(farm *inventory.Farm) *connect.Connector {
	d := &ssh.Dialer{Log: e.log}
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		d.Passphrase = func(file string) ([]byte, error) {
			fmt.Fprintf(e.stderr, "Passphrase for %s: ", file)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(e.stderr)
			return b, err
		}
	}
	return &connect.Connector{Farm: farm, SSH: d, Log: e.log}
}
