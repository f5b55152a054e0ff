package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// outputFlag is the -o flag every data-printing command has.
type outputFlag struct{ format string }

func (o *outputFlag) register(cmd *cobra.Command, formats ...string) {
	if len(formats) == 0 {
		formats = []string{"table", "json"}
	}
	cmd.Flags().StringVarP(&o.format, "output", "o", formats[0], "output format: "+strings.Join(formats, ", "))
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
	valid := formats
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		for _, f := range valid {
			if o.format == f {
				if prev != nil {
					return prev(c, args)
				}
				return nil
			}
		}
		return fmt.Errorf("%w: unknown output format %q (valid: %s)", errUsage, o.format, strings.Join(valid, ", "))
	}
}

// writeJSON writes v as indented JSON followed by a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable returns a tabwriter for aligned columns; call Flush when done.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}
