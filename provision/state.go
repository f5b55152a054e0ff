package provision

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/phonefarm/phonefarm/transport"
)

//go:embed state.sh
var stateScript string

// Paths of what phonefarm manages on a phone.
const (
	BinaryPath = "/usr/local/bin/k3s"
	ConfigPath = "/etc/rancher/k3s/config.yaml"
	TokenPath  = "/etc/rancher/k3s/phonefarm-token"
	// VPNAuthPath holds k3s's tailscale credentials (vpn-auth-file) in
	// tailscale.k3sMode k3s-integrated.
	VPNAuthPath     = "/etc/rancher/k3s/phonefarm-vpn-auth"
	NftFragmentPath = "/etc/nftables.d/70_phonefarm-k3s.nft"
	ServerTokenPath = "/var/lib/rancher/k3s/server/token"
	KubeconfigPath  = "/etc/rancher/k3s/k3s.yaml"
	// hashCache is the phone's cache of file hashes (see state.sh).
	hashCache = "/var/lib/phonefarm/hashes"
)

// File is a managed file as found on the phone.
type File struct {
	SHA256 string
	Mtime  int64 // unix seconds
}

// State is what provisioning needs to know about a phone beyond its facts:
// the managed files, the running k3s, addresses and the firewall layout.
type State struct {
	Files map[string]File
	// HealthRunning: the phone-health reporter (phonefarm-agent health)
	// runs.
	HealthRunning bool
	// K3sStarted is when the running k3s process started (unix seconds),
	// 0 when none runs.
	K3sStarted int64
	// EtcdIP is the node-ip of the config a server's embedded etcd data
	// was last started with; "" when the phone has no etcd data.
	EtcdIP string
	// Enabled services (k3s, k3s-agent) in the default runlevel / systemd.
	Enabled map[string]bool
	// Addrs maps IPv4 addresses to their interfaces.
	Addrs []Addr
	// NftDir: /etc/nftables.d exists; NftService: an nftables service is
	// installed; NftLoaded: phonefarm's rules are in the loaded ruleset.
	NftDir, NftService, NftLoaded bool
	Tailscale                     TailscaleState
	// Managed lists files that carry phonefarm's header: phonefarm wrote
	// them and may remove them.
	Managed map[string]bool
	// AirgapOwned are the tarballs in AirgapImagesDir phonefarm uploaded.
	AirgapOwned []string
	// OOMRestricted: root cannot lower its oom_score_adj, which runc does
	// for every pod sandbox (no CAP_SYS_RESOURCE).
	OOMRestricted bool
}

// TailscaleState is what tailscale says about the phone.
type TailscaleState struct {
	Installed string // path of the tailscale command; "" when absent
	Running   bool   // tailscaled runs
	// From tailscale status: "Running" when logged in and connected.
	BackendState string
	HostName     string
	DNSName      string   // MagicDNS name, with a trailing dot
	IPs          []string // tailnet addresses, IPv4 first
	// From tailscale debug prefs.
	ControlURL string
}

// IPv4 is the phone's tailnet IPv4 address, or "".
func (t TailscaleState) IPv4() string {
	for _, ip := range t.IPs {
		if !strings.Contains(ip, ":") {
			return ip
		}
	}
	return ""
}

// Addr is an IPv4 address of the phone.
type Addr struct {
	Iface string
	IP    string
}

// Observe reads a phone's provisioning state in one round trip.
func Observe(ctx context.Context, h transport.Host) (State, error) {
	out, err := transport.RunScript(ctx, h, "", stateScript)
	if err != nil {
		return State{}, fmt.Errorf("read provisioning state of %s: %w", h.Name(), err)
	}
	s, err := parseState(out)
	if err != nil {
		return s, fmt.Errorf("read provisioning state of %s: %w", h.Name(), err)
	}
	return s, nil
}

func parseState(out string) (State, error) {
	s := State{Files: map[string]File{}, Enabled: map[string]bool{}, Managed: map[string]bool{}}
	ended := false
	var block string
	var status, prefs strings.Builder
	for _, line := range strings.Split(out, "\n") {
		switch line {
		case "ts.status.begin", "ts.prefs.begin":
			block = line
			continue
		}
		// An end marker may follow the block's last line directly when the
		// command printed no final newline.
		if before, ok := strings.CutSuffix(line, block[:max(len(block)-len("begin"), 0)]+"end"); ok && block != "" {
			if block == "ts.status.begin" {
				status.WriteString(before)
			} else {
				prefs.WriteString(before)
			}
			block = ""
			continue
		}
		switch block {
		case "ts.status.begin":
			status.WriteString(line + "\n")
			continue
		case "ts.prefs.begin":
			prefs.WriteString(line + "\n")
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(k, "file:"):
			sum, mt, _ := strings.Cut(v, " ")
			m, _ := strconv.ParseInt(strings.TrimSpace(mt), 10, 64)
			s.Files[strings.TrimPrefix(k, "file:")] = File{SHA256: sum, Mtime: m}
		case strings.HasPrefix(k, "managed:"):
			s.Managed[strings.TrimPrefix(k, "managed:")] = true
		case k == "airgap.owned":
			s.AirgapOwned = append(s.AirgapOwned, v)
		case k == "oom.restricted":
			s.OOMRestricted = true
		case strings.HasPrefix(k, "service:"):
			s.Enabled[strings.TrimPrefix(k, "service:")] = v == "enabled"
		case k == "k3s.etcd.ip":
			s.EtcdIP = v
		case k == "health.running":
			s.HealthRunning = true
		case k == "k3s.started":
			s.K3sStarted, _ = strconv.ParseInt(v, 10, 64)
		case k == "addr":
			if iface, ip, ok := strings.Cut(v, " "); ok && !strings.HasPrefix(ip, "127.") {
				s.Addrs = append(s.Addrs, Addr{Iface: iface, IP: ip})
			}
		case k == "nft.dir":
			s.NftDir = true
		case k == "nft.service":
			s.NftService = true
		case k == "nft.loaded":
			s.NftLoaded = true
		case k == "ts.running":
			s.Tailscale.Running = true
		case k == "ts.installed":
			s.Tailscale.Installed = v
		case k == "end":
			ended = v == "1"
		}
	}
	if !ended {
		return s, fmt.Errorf("state output is incomplete (%d bytes)", len(out))
	}
	ts := parseTailscale(status.String(), prefs.String())
	ts.Installed, ts.Running = s.Tailscale.Installed, s.Tailscale.Running
	s.Tailscale = ts
	return s, nil
}

// parseTailscale reads tailscale status --json and tailscale debug prefs;
// what either leaves out stays empty.
func parseTailscale(status, prefs string) TailscaleState {
	var t TailscaleState
	var st struct {
		BackendState string
		Self         *struct {
			HostName     string
			DNSName      string
			TailscaleIPs []string
		}
	}
	if json.Unmarshal([]byte(status), &st) == nil {
		t.BackendState = st.BackendState
		if st.Self != nil {
			t.HostName, t.DNSName, t.IPs = st.Self.HostName, st.Self.DNSName, st.Self.TailscaleIPs
		}
	}
	var pr struct{ ControlURL string }
	if json.Unmarshal([]byte(prefs), &pr) == nil {
		t.ControlURL = pr.ControlURL
	}
	return t
}
