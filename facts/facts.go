// Package facts gathers what a phone is, as observed: OS, architecture,
// kernel, init system, resources, cgroups, firewall tools, an installed k3s
// and tailscale, battery and temperature. Facts are read in one round trip
// per phone and never written back into the inventory; planning reads them.
package facts

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"strings"

	"github.com/phonefarm/phonefarm/transport"
)

//go:embed facts.sh
var script string

// Facts is a phone's observed state.
type Facts struct {
	Phone    string `json:"phone"`
	Hostname string `json:"hostname,omitempty"`
	OS       OS     `json:"os"`
	// Arch is the machine in k3s's terms: arm64, arm, amd64 (or the raw
	// uname -m when k3s has no build for it).
	Arch    string `json:"arch"`
	Machine string `json:"machine"`
	Kernel  string `json:"kernel"`
	// Init is "openrc", "systemd", "android" or the name of PID 1.
	Init      string    `json:"init"`
	CPUs      int       `json:"cpus"`
	Memory    Memory    `json:"memory"`
	Disk      Disk      `json:"disk"`
	Cgroup    Cgroup    `json:"cgroup"`
	Firewall  Firewall  `json:"firewall"`
	K3s       K3s       `json:"k3s"`
	Tailscale Tailscale `json:"tailscale"`
	Battery   *Battery  `json:"battery,omitempty"`
	// UptimeSeconds is how long the phone has run since it booted.
	UptimeSeconds int64 `json:"uptimeSeconds,omitempty"`
	// ThermalMaxC is the hottest thermal zone in degrees Celsius.
	ThermalMaxC float64 `json:"thermalMaxC,omitempty"`
	// Throttled lists the thermal cooling devices in use, as
	// "type:state/max" (e.g. "thermal-cpufreq-0:3/10"): the kernel is
	// holding the CPU or GPU back to cool the phone.
	Throttled []string `json:"throttled,omitempty"`
}

// OS identifies the operating system.
type OS struct {
	ID      string   `json:"id"` // os-release ID: postmarketos, debian, ...; "android"
	Version string   `json:"version,omitempty"`
	Name    string   `json:"name,omitempty"`
	Android *Android `json:"android,omitempty"`
	// AndroidTerminal: this is Android's Linux terminal, the Debian VM the
	// Android Virtualization Framework runs on a stock phone (Android 15
	// QPR2 and later), recognised by its kernel (-avf-) or its port
	// forwarder (forwarder_guest_launcher).
	AndroidTerminal bool `json:"androidTerminal,omitempty"`
}

// Android holds what getprop says about a stock Android phone.
type Android struct {
	Release string `json:"release"`
	SDK     int    `json:"sdk"`
	ABI     string `json:"abi"`
	Model   string `json:"model,omitempty"`
	Device  string `json:"device,omitempty"`
	// Rooted: su is on the phone's PATH. The rootless agent needs no
	// root; this is for people to know.
	Rooted bool `json:"rooted,omitempty"`
}

// Memory in bytes.
type Memory struct {
	Total     uint64 `json:"total"`
	Available uint64 `json:"available"`
	SwapTotal uint64 `json:"swapTotal"`
}

// Disk is the free space where k3s keeps its data.
type Disk struct {
	Path string `json:"path"`
	Free uint64 `json:"free"`
}

// Cgroup describes the cgroup hierarchy.
type Cgroup struct {
	Version     int      `json:"version,omitempty"` // 1 or 2; 0 unknown
	Controllers []string `json:"controllers,omitempty"`
}

// Firewall says which packet-filter tools are there.
type Firewall struct {
	NftVersion      string `json:"nftVersion,omitempty"`
	IptablesVersion string `json:"iptablesVersion,omitempty"`
	// IptablesMode is "nf_tables" or "legacy" when iptables is present.
	IptablesMode string `json:"iptablesMode,omitempty"`
}

// K3s is an installed k3s.
type K3s struct {
	Version string `json:"version,omitempty"` // e.g. v1.32.0+k3s1
	Service string `json:"service,omitempty"` // k3s (server) or k3s-agent
	Active  bool   `json:"active"`
}

// Tailscale is an installed tailscale.
type Tailscale struct {
	Version string `json:"version,omitempty"`
	IPv4    string `json:"ipv4,omitempty"`
}

// Battery of the phone.
type Battery struct {
	CapacityPercent int    `json:"capacityPercent"`
	Status          string `json:"status,omitempty"` // Charging, Discharging, Full, Not charging
	// External: a charger (mains, USB, wireless) is online.
	External bool `json:"external,omitempty"`
	// ChargeLimitFile is the kernel's charge_control_end_threshold of the
	// battery, "" when the phone has none; ChargeLimit is its value.
	ChargeLimitFile string `json:"chargeLimitFile,omitempty"`
	ChargeLimit     int    `json:"chargeLimit,omitempty"`
}

// OnBattery reports whether the phone runs on its battery: discharging,
// or no charger online where the kernel says.
func (b *Battery) OnBattery() bool {
	return b != nil && (b.Status == "Discharging" || (b.Status == "" && !b.External))
}

// Gather reads the facts of one phone in a single command.
func Gather(ctx context.Context, h transport.Runner) (Facts, error) {
	out, err := transport.RunScript(ctx, h, "", script)
	if err != nil {
		return Facts{Phone: h.Name()}, fmt.Errorf("gather facts on %s: %w", h.Name(), err)
	}
	f, err := Parse(out)
	f.Phone = h.Name()
	if err != nil {
		return f, fmt.Errorf("gather facts on %s: %w", h.Name(), err)
	}
	return f, nil
}

// Parse reads the key=value output of the facts script.
func Parse(out string) (Facts, error) {
	kv := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = strings.TrimSpace(v)
		}
	}
	if kv["end"] != "1" {
		return Facts{}, fmt.Errorf("facts output is incomplete (%d bytes); the phone's shell stopped early", len(out))
	}
	f := Facts{
		Hostname: kv["hostname"],
		Kernel:   kv["kernel"],
		Machine:  kv["machine"],
		Arch:     Arch(kv["machine"]),
		OS:       OS{ID: kv["os.id"], Version: kv["os.version"], Name: kv["os.name"], AndroidTerminal: kv["os.avf"] != ""},
		CPUs:     atoi(kv["cpus"]),
		Memory: Memory{
			Total: kib(kv["mem.total.kb"]), Available: kib(kv["mem.available.kb"]), SwapTotal: kib(kv["swap.total.kb"]),
		},
		Disk:      Disk{Path: kv["disk.path"], Free: kib(kv["disk.free.kb"])},
		Cgroup:    Cgroup{Version: atoi(kv["cgroup.version"]), Controllers: strings.Fields(kv["cgroup.controllers"])},
		Tailscale: Tailscale{Version: kv["tailscale.version"], IPv4: kv["tailscale.ipv4"]},
		K3s:       K3s{Service: kv["k3s.service"], Active: kv["k3s.active"] == "active"},
	}
	if sdk := kv["android.sdk"]; sdk != "" {
		f.OS.Android = &Android{Release: kv["android.release"], SDK: atoi(sdk), ABI: kv["android.abi"], Model: kv["android.model"], Device: kv["android.device"], Rooted: kv["android.su"] == "1"}
		// getprop answering is what makes a system Android, whatever
		// else its file system holds.
		f.OS.ID = "android"
		f.OS.Version = f.OS.Android.Release
		f.OS.Name = "Android " + f.OS.Android.Release
		if abi := f.OS.Android.ABI; abi != "" {
			f.Arch = Arch(abi)
		}
	}
	switch {
	case kv["init.systemd"] == "1":
		f.Init = "systemd"
	case kv["init.openrc"] == "1" && (kv["init.comm"] == "openrc-init" || kv["init.comm"] == "init"):
		f.Init = "openrc"
	case f.OS.Android != nil:
		f.Init = "android"
	default:
		f.Init = kv["init.comm"]
	}
	if v := kv["nft.version"]; v != "" {
		f.Firewall.NftVersion = version(v)
	}
	if v := kv["iptables.version"]; v != "" {
		f.Firewall.IptablesVersion = version(v)
		f.Firewall.IptablesMode = "legacy"
		if strings.Contains(v, "nf_tables") {
			f.Firewall.IptablesMode = "nf_tables"
		}
	}
	if v := kv["k3s.version"]; v != "" {
		// "k3s version v1.32.0+k3s1 (cca8faca)"
		for _, w := range strings.Fields(v) {
			if strings.HasPrefix(w, "v") && strings.Contains(w, "+k3s") {
				f.K3s.Version = w
			}
		}
	}
	if c := kv["battery.capacity"]; c != "" {
		f.Battery = &Battery{CapacityPercent: atoi(c), Status: kv["battery.status"], External: kv["power.external"] == "1",
			ChargeLimitFile: kv["battery.limit.file"], ChargeLimit: atoi(kv["battery.limit"])}
	}
	if u, _, _ := strings.Cut(kv["uptime.seconds"], "."); u != "" {
		f.UptimeSeconds, _ = strconv.ParseInt(u, 10, 64)
	}
	if t := kv["thermal.max.millicelsius"]; t != "" {
		f.ThermalMaxC = float64(atoi(t)) / 1000
	}
	f.Throttled = strings.Fields(kv["thermal.throttled"])
	return f, nil
}

// Arch maps uname -m or an Android ABI to k3s's architecture names.
func Arch(machine string) string {
	switch machine {
	case "aarch64", "arm64", "arm64-v8a", "armv8l":
		return "arm64"
	case "armv7l", "armv7", "armv6l", "armeabi-v7a", "armhf":
		return "arm"
	case "x86_64", "amd64", "x86-64":
		return "amd64"
	}
	return machine
}

// version picks the version number out of a tool's --version line, e.g.
// "nftables v1.0.6 (Lester Gooch #5)" -> "1.0.6".
func version(line string) string {
	for _, w := range strings.Fields(line) {
		w = strings.TrimPrefix(w, "v")
		if w != "" && w[0] >= '0' && w[0] <= '9' && strings.Contains(w, ".") {
			return w
		}
	}
	return line
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func kib(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n * 1024
}
