package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/phonefarm/phonefarm/checks"
	"github.com/phonefarm/phonefarm/facts"
	"github.com/phonefarm/phonefarm/farm"
	"github.com/phonefarm/phonefarm/internal/parallel"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/kernelcfg"
)

// checkProfiles picks the kernel profiles a farm needs: k3s always,
// tailscale's when the farm joins a tailnet.
func checkProfiles(inv *inventory.Farm, override string) ([]kernelcfg.Profile, error) {
	list := override
	if list == "" {
		list = "k3s"
		if inv.Tailscale != nil {
			list += ",tailscale"
		}
	}
	return kernelcfg.LookupProfiles(list)
}

// checkPhones runs the preflight checks on phones in parallel. A phone that
// cannot be reached gets a failed report saying why.
func (e *env) checkPhones(ctx context.Context, fm *farm.Farm, phones []*inventory.Phone, profiles []kernelcfg.Profile, par int) []checks.Report {
	inv := fm.Inventory
	reports := make([]checks.Report, len(phones))
	_ = parallel.Each(ctx, len(phones), par, func(ctx context.Context, i int) error {
		p := phones[i]
		fail := func(err error) error {
			reports[i] = checks.Report{Phone: p.Name, Status: checks.Fail,
				Results: []checks.Result{{ID: "reach", Status: checks.Fail, Message: err.Error()}}}
			return err
		}
		h, err := fm.Connect(ctx, p)
		if err != nil {
			return fail(err)
		}
		defer h.Close()
		f, err := facts.Gather(ctx, h)
		if err != nil {
			return fail(err)
		}
		o, err := checks.Observe(ctx, h, p.KernelConfig)
		if err != nil {
			return fail(err)
		}
		spec := checks.Spec{Phone: p.Name, OS: p.OS, Role: p.Role, ClusterCIDR: inv.K3s.ClusterCIDR, ServiceCIDR: inv.K3s.ServiceCIDR, Profiles: profiles,
			Tailnet: inv.Tailscale != nil, Peers: inv.OthersWithRole(p.Name)}
		reports[i] = checks.Evaluate(spec, f, o, e.now())
		return nil
	})
	return reports
}

func newCheckCmd(e *env) *cobra.Command {
	var farmF farmFlag
	var out outputFlag
	var par int
	var profile string
	cmd := &cobra.Command{
		Use:   "check [PHONE...]",
		Short: "Check whether each phone can run k3s, before anything is installed",
		Long: `Check reads each phone's kernel config (/proc/config.gz, /boot/config-*, or
kernelConfig from the inventory) and its running system, and reports what
would stop k3s: missing kernel options, cgroups, swap, a broken iptables,
busy ports, low key quotas, clashing routes, AppArmor without its parser,
too little disk or memory for the phone's role, a wrong clock, an
unsupported architecture. Stock Android phones are checked for phonefarm's
rootless agent instead (SDK level, ABI, an executable /data/local/tmp,
root). The exit status is 1 when any phone fails.`,
		Example: `  phonefarm check -f farm.yaml
  phonefarm check -f farm.yaml enchilada -o json
  phonefarm check -f farm.yaml --profile k3s,nftables`,
		ValidArgsFunction: phoneNames(&farmF),
		RunE: func(cmd *cobra.Command, args []string) error {
			fm, phones, err := farmF.openPhones(e, args, par)
			if err != nil {
				return err
			}
			profiles, err := checkProfiles(fm.Inventory, profile)
			if err != nil {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
			reports := e.checkPhones(cmd.Context(), fm, phones, profiles, par)
			if err := cmd.Context().Err(); err != nil {
				return err
			}
			if out.format == "json" {
				if err := writeJSON(e.stdout, reports); err != nil {
					return err
				}
			} else {
				writeCheckTable(e.stdout, reports)
			}
			for _, r := range reports {
				if r.Status == checks.Fail {
					return exitError{code: 1}
				}
			}
			return nil
		},
	}
	farmF.register(cmd)
	out.register(cmd)
	cmd.Flags().IntVar(&par, "parallel", 10, "phones to check at once")
	cmd.Flags().StringVar(&profile, "profile", "", "kernel profiles to check (default k3s, plus tailscale when the farm uses it): "+strings.Join(kernelcfg.ProfileNames(), ", "))
	return cmd
}

func writeCheckTable(w io.Writer, reports []checks.Report) {
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s: %s\n", r.Phone, strings.ToUpper(string(r.Status)))
		tw := newTable(w)
		for _, res := range r.Results {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", res.ID, res.Status, res.Message)
		}
		tw.Flush()
	}
}
