// Package checks decides whether a phone can run k3s (or, for stock
// Android, phonefarm's rootless agent) before anything is installed: its
// kernel config against the kernelcfg profiles, and its running system
// (cgroups, swap, iptables, ports, keys, routes, AppArmor, disk, memory,
// clock, architecture). Observe reads a phone in one round trip over any
// transport; Evaluate is a pure function of what was read.
package checks

import (
	"context"
	_ "embed"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/phonefarm/phonefarm/transport"
)

//go:embed checks.sh
var script string

// Observation is a phone's run-time state as read by Observe.
type Observation struct {
	TimeUnix        int64
	SwapDevices     int
	RootMaxKeys     int // 0 when unknown
	AppArmorEnabled bool
	AppArmorParser  bool
	ListenTCP       []int
	ListenUDP       []int
	// FlannelLink: flannel's VXLAN device (flannel.1) exists, left by a
	// k3s that ran here; its kernel socket holds the VXLAN port.
	FlannelLink bool
	Routes      []Route
	// KernelConfigPath is where the config was read from; "" when the
	// phone exposes none.
	KernelConfigPath string
	KernelConfig     []byte
	// Android only.
	TmpExec bool
	// What blocks pods once k3s runs (Linux phones). OOMLower: root can
	// lower its oom_score_adj; OOMKnown: that was tested.
	OOMLower, OOMKnown bool
	// K3sInstalled: /usr/local/bin/k3s exists.
	K3sInstalled bool
	// CNIDir is where k3s finds its CNI plugins ("" when no host-local is
	// found), CNIPlugins those of k3s's default network found there.
	CNIDir     string
	CNIPlugins []string
	// PauseImage is containerd's sandbox image once k3s has configured it;
	// PausePresent says it is in containerd's store, PauseError is k3s's
	// last failure to get it.
	PauseImage   string
	PausePresent bool
	PauseError   string
}

// Route is one IPv4 route of the phone.
type Route struct {
	Iface   string
	Dest    string // dotted quad
	Netmask string
}

// Observe reads the phone's run-time state. kernelConfig is the path given
// in the inventory, tried before /proc/config.gz and /boot/config-*.
func Observe(ctx context.Context, h transport.Runner, kernelConfig string) (Observation, error) {
	env := ""
	if kernelConfig != "" {
		env = "PHONEFARM_KCONFIG=" + transport.Quote(kernelConfig)
	}
	out, err := transport.RunScript(ctx, h, env, script)
	if err != nil {
		return Observation{}, fmt.Errorf("check %s: %w", h.Name(), err)
	}
	o, err := parse(out)
	if err != nil {
		return o, fmt.Errorf("check %s: %w", h.Name(), err)
	}
	return o, nil
}

func parse(out string) (Observation, error) {
	var o Observation
	var cfg strings.Builder
	inConfig, ended := false, false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case line == "kconfig.begin":
			inConfig = true
			continue
		case line == "kconfig.end":
			inConfig = false
			continue
		case inConfig:
			cfg.WriteString(line)
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "time.unix":
			o.TimeUnix, _ = strconv.ParseInt(v, 10, 64)
		case "swap.devices":
			o.SwapDevices, _ = strconv.Atoi(v)
		case "keys.root_maxkeys":
			o.RootMaxKeys, _ = strconv.Atoi(v)
		case "apparmor.enabled":
			o.AppArmorEnabled = v == "Y"
		case "apparmor.parser":
			o.AppArmorParser = true
		case "listen.tcp":
			o.ListenTCP = hexPorts(v)
		case "listen.udp":
			o.ListenUDP = hexPorts(v)
		case "route":
			if f := strings.Fields(v); len(f) == 3 {
				o.Routes = append(o.Routes, Route{Iface: f[0], Dest: hexIPv4(f[1]), Netmask: hexIPv4(f[2])})
			}
		case "kconfig.path":
			o.KernelConfigPath = v
		case "android.tmpexec":
			o.TmpExec = v == "ok"
		case "oom.lower":
			o.OOMKnown, o.OOMLower = true, v == "1"
		case "k3s.installed":
			o.K3sInstalled = true
		case "flannel.link":
			o.FlannelLink = true
		case "cni.dir":
			o.CNIDir = v
		case "cni.plugins":
			o.CNIPlugins = strings.Fields(v)
		case "pause.image":
			o.PauseImage = v
		case "pause.present":
			o.PausePresent = true
		case "pause.error":
			o.PauseError = v
		case "end":
			ended = v == "1"
		}
	}
	if !ended {
		return o, fmt.Errorf("check output is incomplete (%d bytes); the phone's shell stopped early", len(out))
	}
	if cfg.Len() > 0 {
		b, err := base64.StdEncoding.DecodeString(cfg.String())
		if err != nil {
			return o, fmt.Errorf("kernel config from %s arrived damaged: %w", o.KernelConfigPath, err)
		}
		o.KernelConfig = b
	}
	return o, nil
}

func hexPorts(s string) []int {
	seen := map[int]bool{}
	var ports []int
	for _, f := range strings.Fields(s) {
		p, err := strconv.ParseUint(f, 16, 16)
		if err == nil && !seen[int(p)] {
			seen[int(p)] = true
			ports = append(ports, int(p))
		}
	}
	return ports
}

// hexIPv4 converts /proc/net/route's little-endian hex to a dotted quad.
func hexIPv4(h string) string {
	n, err := strconv.ParseUint(h, 16, 32)
	if err != nil {
		return h
	}
	return fmt.Sprintf("%d.%d.%d.%d", n&0xff, n>>8&0xff, n>>16&0xff, n>>24&0xff)
}
