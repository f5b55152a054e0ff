// Package kernelcfg reads Linux kernel configurations (.config files, gzip'd
// configs and the bytes of /proc/config.gz) and checks them against profiles:
// data tables of the options k3s, containers, nftables, WireGuard and
// Tailscale need, each with a severity, a one-line reason, and the kernel
// versions and architectures it applies to.
//
// The package is a leaf: it imports nothing else of phonefarm, never talks to
// a phone and never prints on its own, so CI systems can use it alone. A
// typical use is
//
//	cfg, err := kernelcfg.Parse(data, kernelcfg.ParseOptions{Name: path})
//	profiles, err := kernelcfg.LookupProfiles("k3s,nftables")
//	report := kernelcfg.Check(cfg, profiles...)
//	err = kernelcfg.WriteSARIF(w, []kernelcfg.Report{report}, kernelcfg.SARIFOptions{})
//
// Version and architecture gates are evaluated against the kernel version and
// architecture of the configuration being checked (from its header comment or
// an explicit override), never against the machine running the check.
package kernelcfg
