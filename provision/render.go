package provision

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport"
)

const managedHeader = "# Managed by phonefarm from the farm inventory; local changes are overwritten.\n"

// k3sConfig is /etc/rancher/k3s/config.yaml. Field order is file order.
type k3sConfig struct {
	NodeName         string   `yaml:"node-name"`
	NodeIP           string   `yaml:"node-ip,omitempty"`
	AdvertiseAddress string   `yaml:"advertise-address,omitempty"`
	FlannelIface     string   `yaml:"flannel-iface,omitempty"`
	Server           string   `yaml:"server,omitempty"`
	ClusterInit      bool     `yaml:"cluster-init,omitempty"`
	TokenFile        string   `yaml:"token-file,omitempty"`
	TLSSAN           []string `yaml:"tls-san,omitempty"`
	ClusterCIDR      string   `yaml:"cluster-cidr,omitempty"`
	ServiceCIDR      string   `yaml:"service-cidr,omitempty"`
	Disable          []string `yaml:"disable,omitempty"`
	VPNAuthFile      string   `yaml:"vpn-auth-file,omitempty"`
}

// nodeRole is where a phone stands in the cluster.
type nodeRole int

const (
	firstServer nodeRole = iota // initialises the cluster
	joinServer                  // joins the first server's etcd
	agent
)

func (r nodeRole) service() string {
	if r == agent {
		return "k3s-agent"
	}
	return "k3s"
}

func (r nodeRole) command() string {
	if r == agent {
		return "agent"
	}
	return "server"
}

// renderConfig returns the k3s config of a phone. Labels and taints are not
// in it: they are reconciled through the API, so changing one does not
// restart k3s. serverURL is the first
// server's API for joiners; tokenFile is set when the phone reads the join
// token from phonefarm's token file.
//
// On a tailnet, nodeIP is the phone's tailnet address, iface tailscale0 and
// dnsName its MagicDNS name: servers advertise the tailnet address, and
// flannel's VXLAN runs over tailscale0, taking its MTU from tailscale0's
// 1280 so it fits inside WireGuard.
func renderConfig(farm *inventory.Farm, p *inventory.Phone, role nodeRole, nodeIP, iface, serverURL string, tokenFile bool, dnsName string) []byte {
	c := k3sConfig{NodeName: p.Name, NodeIP: nodeIP, FlannelIface: iface}
	if role != firstServer {
		c.Server = serverURL
	}
	if tokenFile {
		c.TokenFile = TokenPath
	}
	if role != agent {
		c.ClusterInit = role == firstServer
		c.TLSSAN = []string{nodeIP, p.Name}
		if nodeIP == "" {
			c.TLSSAN = []string{p.Name}
		}
		// With k3s-integrated the MagicDNS name is known only after k3s
		// has started (and k3s adds the tailnet address itself); adding
		// it then would rewrite the config on the next apply.
		if dnsName != "" && !integrated(farm) {
			c.TLSSAN = append(c.TLSSAN, strings.TrimSuffix(dnsName, "."))
		}
		if farm.Tailscale != nil && !integrated(farm) {
			c.AdvertiseAddress = nodeIP
		}
		c.ClusterCIDR = farm.K3s.ClusterCIDR
		c.ServiceCIDR = farm.K3s.ServiceCIDR
		c.Disable = farm.K3s.Disable
	}
	if integrated(farm) {
		// k3s joins the tailnet itself and then uses the tailnet
		// address for the node and the API; node-ip stays the LAN
		// address, which k3s keeps for etcd.
		c.VPNAuthFile = VPNAuthPath
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		panic(err) // a fixed struct of strings always marshals
	}
	return append([]byte(managedHeader), b...)
}

// integrated: k3s's own tailscale integration (vpn-auth) joins the phones.
func integrated(farm *inventory.Farm) bool {
	return farm.Tailscale != nil && farm.Tailscale.K3sMode == "k3s-integrated"
}

// extraArgs are the farm's and the phone's extra k3s arguments.
func extraArgs(farm *inventory.Farm, p *inventory.Phone) []string {
	return append(append([]string{}, farm.K3s.ExtraArgs...), p.K3sArgs...)
}

// renderOpenRC returns the OpenRC service script for role. On a tailnet k3s
// needs tailscaled: OpenRC then restarts k3s whenever tailscaled restarts,
// which brings back flannel's routes over the new tailscale0.
func renderOpenRC(role nodeRole, args []string, tailnet bool) []byte {
	dep := "after net firewall"
	if tailnet {
		dep = "need tailscale\n\tafter net firewall"
	}
	name := role.service()
	return []byte(fmt.Sprintf(`#!/sbin/openrc-run
%sdescription="k3s %s"
supervisor=supervise-daemon
command=%s
command_args="%s"
output_log=/var/log/%s.log
error_log=/var/log/%s.log
pidfile=/run/%s.pid
respawn_delay=5
respawn_max=0

depend() {
	%s
}

start_pre() {
	for m in br_netfilter overlay; do modprobe "$m" 2>/dev/null || true; done
}
`, managedHeader, role.command(), BinaryPath, strings.ReplaceAll(transport.QuoteArgs(append([]string{role.command()}, args...)...), `"`, `\"`), name, name, name, dep))
}

// renderSystemd returns the systemd unit for role. On a tailnet the unit is
// part of tailscaled's, so it restarts with it (see renderOpenRC).
func renderSystemd(role nodeRole, args []string, tailnet bool) []byte {
	after := "Wants=network-online.target\nAfter=network-online.target"
	if tailnet {
		after = "Wants=network-online.target\nRequires=tailscaled.service\nPartOf=tailscaled.service\nAfter=network-online.target tailscaled.service"
	}
	line := []string{BinaryPath, role.command()}
	for _, a := range args {
		if strings.ContainsAny(a, " \t\"'\\$%") {
			a = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `$$`, `%`, `%%`).Replace(a) + `"`
		}
		line = append(line, a)
	}
	return []byte(fmt.Sprintf(`%s[Unit]
Description=k3s %s
Documentation=https://docs.k3s.io
%s

[Service]
Type=notify
EnvironmentFile=-/etc/default/%%N
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=%s

[Install]
WantedBy=multi-user.target
`, managedHeader, role.command(), after, strings.Join(line, " ")))
}

// renderNftables returns the fragment that opens postmarketOS's
// drop-by-default firewall for k3s and flannel. It sorts before
// 99_drop_log.nft, so its accepts come before the final drop.
func renderNftables(farm *inventory.Farm, role nodeRole) []byte {
	pods := or(farm.K3s.ClusterCIDR, inventory.DefaultClusterCIDR)
	svcs := or(farm.K3s.ServiceCIDR, inventory.DefaultServiceCIDR)
	var b strings.Builder
	b.WriteString("#!/usr/sbin/nft -f\n")
	b.WriteString(managedHeader)
	b.WriteString("table inet filter {\n\tchain input {\n")
	if role != agent {
		b.WriteString("\t\ttcp dport 6443 accept comment \"phonefarm: k3s API server\"\n")
		b.WriteString("\t\ttcp dport 2379-2380 accept comment \"phonefarm: k3s etcd between servers\"\n")
	}
	b.WriteString("\t\ttcp dport 10250 accept comment \"phonefarm: k3s kubelet\"\n")
	b.WriteString("\t\tudp dport 8472 accept comment \"phonefarm: k3s flannel vxlan\"\n")
	b.WriteString("\t\tudp dport 51820-51821 accept comment \"phonefarm: k3s flannel wireguard-native\"\n")
	b.WriteString("\t\tiifname { \"cni0\", \"flannel*\" } accept comment \"phonefarm: k3s pod traffic to the node\"\n")
	if farm.Tailscale != nil {
		b.WriteString("\t\tudp dport 41641 accept comment \"phonefarm: k3s tailscale direct connections\"\n")
	}
	b.WriteString("\t}\n\tchain forward {\n")
	fmt.Fprintf(&b, "\t\tip saddr %s accept comment \"phonefarm: k3s pods\"\n", pods)
	fmt.Fprintf(&b, "\t\tip daddr %s accept comment \"phonefarm: k3s pods\"\n", pods)
	fmt.Fprintf(&b, "\t\tip daddr %s accept comment \"phonefarm: k3s services\"\n", svcs)
	b.WriteString("\t\tiifname { \"cni0\", \"flannel*\" } accept comment \"phonefarm: k3s pod network\"\n")
	b.WriteString("\t\toifname { \"cni0\", \"flannel*\" } accept comment \"phonefarm: k3s pod network\"\n")
	b.WriteString("\t}\n}\n")
	return []byte(b.String())
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
