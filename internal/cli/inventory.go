package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/phonefarm/phonefarm/inventory"
)

func newInventoryCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Validate the inventory and print its schema",
	}
	cmd.AddCommand(newInventoryValidateCmd(e), newInventorySchemaCmd(e))
	return cmd
}

type validateResult struct {
	File     string              `json:"file"`
	Valid    bool                `json:"valid"`
	Phones   int                 `json:"phones"`
	Problems []inventory.Problem `json:"problems"`
}

func newInventoryValidateCmd(e *env) *cobra.Command {
	var farmF farmFlag
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check an inventory file and report every problem in it",
		Long: `Validate reads the inventory strictly: unknown fields, wrong types and
invalid values are errors, each reported with file:line:column, the field
path and what would be valid. Warnings (unknown or archived device
codenames) do not fail validation.`,
		Example: `  phonefarm inventory validate -f farm.yaml
  phonefarm inventory validate -f farm.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fm, err := farmF.open(e)
			res := validateResult{File: farmF.path, Valid: err == nil, Problems: []inventory.Problem{}}
			var ve *inventory.ValidationError
			switch {
			case errors.As(err, &ve):
				res.Problems = ve.Problems
			case err != nil:
				return err
			default:
				res.Phones = len(fm.Inventory.Phones)
				res.Problems = append(res.Problems, fm.Warnings()...)
			}
			if out.format == "json" {
				if err := writeJSON(e.stdout, res); err != nil {
					return err
				}
			} else {
				for _, p := range res.Problems {
					fmt.Fprintln(e.stdout, p.String())
				}
				if res.Valid {
					fmt.Fprintf(e.stdout, "%s: valid, %d phones\n", res.File, res.Phones)
				} else {
					fmt.Fprintf(e.stdout, "%s: %d problems\n", res.File, len(res.Problems))
				}
			}
			if !res.Valid {
				return exitError{code: 1}
			}
			return nil
		},
	}
	farmF.register(cmd)
	out.register(cmd, "text", "json")
	return cmd
}

func newInventorySchemaCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the inventory file",
		Long: `Schema prints a JSON Schema generated from phonefarm's inventory types.
Point your editor's YAML language server at it to validate while typing.`,
		Example: `  phonefarm inventory schema > farm.schema.json
  # then, first line of farm.yaml:
  # yaml-language-server: $schema=./farm.schema.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := inventory.Schema()
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "%s\n", b)
			return err
		},
	}
}
