package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/phonefarm/phonefarm/kernelcfg"
)

func newKernelcfgCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kernelcfg",
		Short: "Check kernel configs for what k3s and containers need",
		Long: `kernelcfg checks Linux kernel configurations (.config, config.gz or the
bytes of /proc/config.gz) against profiles of the options k3s, containers,
nftables, WireGuard and Tailscale need. It works on config files alone, so CI
for a device kernel can run it without a phone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fmt.Errorf("%w: kernelcfg needs a subcommand (check, profiles)", errUsage)
		},
	}
	cmd.AddCommand(newKernelcfgCheckCmd(e), newKernelcfgProfilesCmd(e))
	return cmd
}

type kernelcfgCheckFlags struct {
	profiles      string
	kernelVersion string
	arch          string
	fragment      string
	all           bool
	out           outputFlag
}

func newKernelcfgCheckCmd(e *env) *cobra.Command {
	var f kernelcfgCheckFlags
	cmd := &cobra.Command{
		Use:   "check [flags] CONFIG...",
		Short: "Check kernel configs against profiles",
		Long: `check reads each CONFIG (a .config, a gzip'd config, or - for standard
input), checks it against the selected profiles and prints the verdicts,
then a summary table. Version and architecture gates use the kernel version
and architecture in each config's header comment, or --kernel-version and
--arch when given.

Profiles (combine with commas, or "all"):
  k3s         what k3s's check-config.sh checks
  containers  postmarketOS's containers category (pmbootstrap kconfig check)
  nftables    what iptables-nft needs from an nftables-only kernel
  wireguard   flannel's wireguard-native backend
  tailscale   tailscaled with a kernel TUN device

Output formats: text (coloured on a terminal), json, junit, sarif, github
(workflow annotations). With github the summary table goes to standard error
(the job's log); json, junit and sarif leave standard error to errors.

Exit status: 0 when no required option is missing, 1 when one is, 2 when a
config cannot be read or the command line is wrong.`,
		Example: `  # Is this phone's kernel ready for k3s?
  phonefarm kernelcfg check /proc/config.gz

  # Many configs, several profiles, SARIF for code scanning
  phonefarm kernelcfg check --profile k3s,nftables -o sarif arch/arm64/configs/*_defconfig > kernelcfg.sarif

  # A config without a header comment
  phonefarm kernelcfg check --kernel-version 4.4.153 --arch arm64 .config

  # Write a fragment that enables everything missing, then merge it
  phonefarm kernelcfg check --fragment k3s.config .config
  scripts/kconfig/merge_config.sh .config k3s.config`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("%w: give at least one kernel config to check (or - for standard input)", errUsage)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKernelcfgCheck(e, f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.profiles, "profile", "p", "k3s", "profiles to check, comma-separated: "+strings.Join(kernelcfg.ProfileNames(), ", ")+", or all")
	fl.StringVar(&f.kernelVersion, "kernel-version", "", "kernel version to assume instead of the config's header (e.g. 4.4.153)")
	fl.StringVar(&f.arch, "arch", "", "architecture to assume instead of the config's header (arm64, arm, x86_64, ...)")
	fl.StringVar(&f.fragment, "fragment", "", "write a Kconfig fragment enabling every missing option to `FILE`")
	fl.BoolVar(&f.all, "all", false, "text output: list satisfied options too")
	_ = cmd.RegisterFlagCompletionFunc("profile", cobra.FixedCompletions(append(kernelcfg.ProfileNames(), "all"), cobra.ShellCompDirectiveNoFileComp))
	f.out.register(cmd, "text", "json", "junit", "sarif", "github")
	return cmd
}

func runKernelcfgCheck(e *env, f kernelcfgCheckFlags, paths []string) error {
	profiles, err := kernelcfg.LookupProfiles(f.profiles)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if f.kernelVersion != "" {
		if _, err := kernelcfg.ParseVersion(f.kernelVersion); err != nil {
			return fmt.Errorf("%w: --kernel-version: %v", errUsage, err)
		}
	}
	if f.arch != "" && !kernelcfg.KnownArch(f.arch) {
		return fmt.Errorf("%w: --arch %q is not an architecture phonefarm knows; want one of: %s (or aarch64, amd64, armhf, ...)", errUsage, f.arch, strings.Join(kernelcfg.Arches, ", "))
	}
	stdinUsed := false
	var reports []kernelcfg.Report
	var readErrs []error
	for _, path := range paths {
		cfg, err := readKernelConfig(e, path, f, &stdinUsed)
		if err != nil {
			readErrs = append(readErrs, err)
			continue
		}
		if e.log != nil {
			e.log.Debug("checked kernel config", "config", path, "version", cfg.Version.String(), "arch", cfg.Arch, "ignored_lines", len(cfg.Warnings))
		}
		for _, w := range cfg.Warnings {
			fmt.Fprintf(e.stderr, "phonefarm: %s: line %d: ignoring %q (neither an option nor a comment)\n", path, w.Line, w.Text)
		}
		reports = append(reports, kernelcfg.Check(cfg, profiles...))
	}
	for _, err := range readErrs {
		fmt.Fprintf(e.stderr, "phonefarm: %v\n", err)
	}

	if err := writeKernelcfgReports(e, f.out.format, f.all, reports); err != nil {
		return err
	}
	if f.fragment != "" && len(reports) > 0 {
		if err := writeFragmentFile(f.fragment, reports); err != nil {
			fmt.Fprintf(e.stderr, "phonefarm: %v\n", err)
			return exitError{code: 2}
		}
	}

	switch {
	case len(readErrs) > 0:
		return exitError{code: 2}
	case anyFail(reports):
		return exitError{code: 1}
	}
	return nil
}

func readKernelConfig(e *env, path string, f kernelcfgCheckFlags, stdinUsed *bool) (*kernelcfg.Config, error) {
	opts := kernelcfg.ParseOptions{Name: path, Version: f.kernelVersion, Arch: f.arch}
	if path == "-" {
		if *stdinUsed {
			return nil, errors.New("standard input (-) given more than once")
		}
		*stdinUsed = true
		opts.Name = "<stdin>"
		return kernelcfg.Read(e.stdin, opts)
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read kernel config: %w", err)
	}
	defer file.Close()
	if st, err := file.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("read kernel config %s: is a directory", path)
	}
	return kernelcfg.Read(file, opts)
}

func writeKernelcfgReports(e *env, format string, all bool, reports []kernelcfg.Report) error {
	var err error
	switch format {
	case "json":
		err = kernelcfg.WriteJSON(e.stdout, reports)
	case "junit":
		err = kernelcfg.WriteJUnit(e.stdout, reports)
	case "sarif":
		err = kernelcfg.WriteSARIF(e.stdout, reports, kernelcfg.SARIFOptions{ToolVersion: buildVersion().Version})
	case "github":
		err = kernelcfg.WriteGitHub(e.stdout, reports)
	default:
		if len(reports) > 0 {
			if err = kernelcfg.WriteText(e.stdout, reports, kernelcfg.TextOptions{Color: isTTY(e.stdout), All: all}); err == nil {
				_, err = io.WriteString(e.stdout, "\n")
			}
		}
		if err == nil {
			err = kernelcfg.WriteSummary(e.stdout, reports)
		}
		return err
	}
	if err != nil || format != "github" {
		// json, junit and sarif are read by programs: stderr is left to
		// errors.
		return err
	}
	// GitHub shows a job's stderr as its log, beside the annotations.
	return kernelcfg.WriteSummary(e.stderr, reports)
}

// writeFragmentFile writes the fragment atomically: a temporary file in the
// same directory, renamed into place.
func writeFragmentFile(path string, reports []kernelcfg.Report) error {
	var b bytes.Buffer
	if err := kernelcfg.WriteFragment(&b, reports, kernelcfg.FragmentOptions{}); err != nil {
		return fmt.Errorf("write fragment %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kernelcfg-fragment-*")
	if err != nil {
		return fmt.Errorf("write fragment %s: %w", path, err)
	}
	_, werr := tmp.Write(b.Bytes())
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write fragment %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write fragment %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write fragment %s: %w", path, err)
	}
	return nil
}

func anyFail(reports []kernelcfg.Report) bool {
	for _, r := range reports {
		if r.Verdict() == kernelcfg.Fail {
			return true
		}
	}
	return false
}

func newKernelcfgProfilesCmd(e *env) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "profiles [NAME...]",
		Short: "List the kernel config profiles and their rules",
		Example: `  phonefarm kernelcfg profiles
  phonefarm kernelcfg profiles k3s -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			profiles := kernelcfg.Profiles()
			if len(args) > 0 {
				var err error
				if profiles, err = kernelcfg.LookupProfiles(strings.Join(args, ",")); err != nil {
					return fmt.Errorf("%w: %v", errUsage, err)
				}
			}
			if out.format == "json" {
				return writeJSON(e.stdout, profiles)
			}
			tw := newTable(e.stdout)
			fmt.Fprintln(tw, "PROFILE\tOPTION\tSEVERITY\tKERNEL\tARCH\tREASON")
			for _, p := range profiles {
				for _, r := range p.Rules {
					arch := "any"
					if len(r.Arches) > 0 {
						arch = strings.Join(r.Arches, ",")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, r.ID(), r.Severity, r.Versions, arch, r.Reason)
				}
			}
			return tw.Flush()
		},
	}
	out.register(cmd, "table", "json")
	return cmd
}
