package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/phonefarm/phonefarm/devicedb"
)

func newDevicesCmd(e *env) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "devices [QUERY...]",
		Short: "Search the postmarketOS device database",
		Long: `devices lists the phones and other devices postmarketOS supports, from the
database built into phonefarm (generated from pmaports). A device matches when
its codename contains every word of QUERY or a word of its name, manufacturer
or architecture starts with it. The codename is what an inventory's device:
field takes.

Categories: main and community are maintained, testing works partly,
downstream runs a vendor kernel, archived is no longer built. The flash method
says how the device is installed; phonefarm flash drives fastboot and
heimdall.

Exit status: 0 when something matches, 1 when nothing does.`,
		Example: `  phonefarm devices oneplus
  phonefarm devices pixel 3a
  phonefarm devices -o json enchilada`,
		RunE: func(cmd *cobra.Command, args []string) error {
			query := strings.Join(args, " ")
			found := devicedb.Search(query)
			if len(found) == 0 {
				fmt.Fprintf(e.stderr, "no device matches %q; try a manufacturer or model name\n", query)
				return exitError{code: 1}
			}
			if out.format == "json" {
				return writeJSON(e.stdout, found)
			}
			tw := newTable(e.stdout)
			fmt.Fprintln(tw, "CODENAME\tNAME\tYEAR\tARCH\tCATEGORY\tFLASH")
			for _, d := range found {
				year := "-"
				if d.Year > 0 {
					year = strconv.Itoa(d.Year)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Codename, d.Name, year, d.Arch, d.Category, d.FlashMethod)
			}
			return tw.Flush()
		},
	}
	out.register(cmd)
	return cmd
}
