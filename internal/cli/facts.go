package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/phonefarm/phonefarm/facts"
	"github.com/phonefarm/phonefarm/farm"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport"
)

// phoneFacts is one phone's line of `phonefarm facts`.
type phoneFacts struct {
	Phone     string                 `json:"phone"`
	Reachable bool                   `json:"reachable"`
	Error     string                 `json:"error,omitempty"`
	Transport *transport.Description `json:"transport,omitempty"`
	Facts     *facts.Facts           `json:"facts,omitempty"`
}

// gatherFacts reads the phones' facts (farm.Facts) as facts' lines.
func gatherFacts(ctx context.Context, fm *farm.Farm, phones []*inventory.Phone, parallelism int) ([]phoneFacts, error) {
	got, err := fm.Facts(ctx, phones, parallelism)
	res := make([]phoneFacts, len(got))
	for i, g := range got {
		res[i] = phoneFacts{Phone: phones[i].Name, Reachable: g.Facts != nil, Transport: g.Transport, Facts: g.Facts}
		if g.Err != nil {
			res[i].Error = g.Err.Error()
		}
	}
	return res, err
}

func newFactsCmd(e *env) *cobra.Command {
	var farmF farmFlag
	var out outputFlag
	var par int
	cmd := &cobra.Command{
		Use:   "facts [PHONE...]",
		Short: "Show what each phone is: OS, arch, kernel, init, resources, firewall, k3s",
		Long: `Facts connects to the phones (all, or the ones named) in parallel and reads,
in one round trip each, their OS, architecture, kernel, init system, CPUs,
memory, free disk, cgroup version, nftables/iptables, installed k3s and
tailscale, battery, temperature and thermal throttling. An unreachable phone is reported with
the reason and does not stop the others; the exit status is 1 when any
phone could not be read.`,
		Example: `  phonefarm facts -f farm.yaml
  phonefarm facts -f farm.yaml dumpling -o json`,
		ValidArgsFunction: phoneNames(&farmF),
		RunE: func(cmd *cobra.Command, args []string) error {
			fm, phones, err := farmF.openPhones(e, args, par)
			if err != nil {
				return err
			}
			res, gatherErr := gatherFacts(cmd.Context(), fm, phones, par)
			if out.format == "json" {
				if err := writeJSON(e.stdout, res); err != nil {
					return err
				}
			} else {
				writeFactsTable(e.stdout, res)
			}
			if gatherErr != nil {
				if errors.Is(gatherErr, context.Canceled) {
					return gatherErr
				}
				return exitError{code: 1}
			}
			return nil
		},
	}
	farmF.register(cmd)
	out.register(cmd)
	cmd.Flags().IntVar(&par, "parallel", 10, "phones to contact at once")
	return cmd
}

// phoneNames completes phone names from the inventory.
func phoneNames(f *farmFlag) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		farm, err := inventory.Load(f.path)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, p := range farm.Phones {
			names = append(names, p.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

func writeFactsTable(w io.Writer, res []phoneFacts) {
	tw := newTable(w)
	fmt.Fprintln(tw, "PHONE\tVIA\tOS\tARCH\tKERNEL\tINIT\tCPUS\tMEMORY\tDISK FREE\tCGROUP\tFIREWALL\tK3S\tBATTERY")
	var failed []phoneFacts
	for _, r := range res {
		if !r.Reachable {
			failed = append(failed, r)
			fmt.Fprintf(tw, "%s\t-\tunreachable\t\t\t\t\t\t\t\t\t\t\n", r.Phone)
			continue
		}
		f := r.Facts
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.Phone, r.Transport.Transport, osLabel(f), f.Arch, f.Kernel, f.Init, f.CPUs,
			bytesLabel(f.Memory.Total), bytesLabel(f.Disk.Free), cgroupLabel(f), firewallLabel(f), k3sLabel(f), batteryLabel(f))
	}
	tw.Flush()
	for _, r := range failed {
		fmt.Fprintf(w, "\n%s: %s\n", r.Phone, r.Error)
	}
}

func osLabel(f *facts.Facts) string {
	if f.OS.Android != nil {
		return fmt.Sprintf("android %s (sdk %d)", f.OS.Android.Release, f.OS.Android.SDK)
	}
	s := strings.TrimSpace(f.OS.ID + " " + f.OS.Version)
	if f.OS.AndroidTerminal {
		s += " (Android terminal)"
	}
	return s
}

func cgroupLabel(f *facts.Facts) string {
	if f.Cgroup.Version == 0 {
		return "-"
	}
	return "v" + strconv.Itoa(f.Cgroup.Version)
}

func firewallLabel(f *facts.Facts) string {
	var parts []string
	if f.Firewall.NftVersion != "" {
		parts = append(parts, "nft "+f.Firewall.NftVersion)
	}
	if f.Firewall.IptablesVersion != "" {
		parts = append(parts, "iptables "+f.Firewall.IptablesVersion+" ("+f.Firewall.IptablesMode+")")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func k3sLabel(f *facts.Facts) string {
	switch {
	case f.K3s.Version == "":
		return "-"
	case f.K3s.Service == "":
		return f.K3s.Version
	case f.K3s.Active:
		return f.K3s.Version + " " + f.K3s.Service + " running"
	}
	return f.K3s.Version + " " + f.K3s.Service + " stopped"
}

func batteryLabel(f *facts.Facts) string {
	if f.Battery == nil {
		return "-"
	}
	return fmt.Sprintf("%d%% %s", f.Battery.CapacityPercent, strings.ToLower(f.Battery.Status))
}

func bytesLabel(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
