package kernelcfg

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Severity is how much a missing option matters.
type Severity int

const (
	// Recommended options are reported as warnings.
	Recommended Severity = iota
	// Required options fail the check when missing.
	Required
)

func (s Severity) String() string {
	if s == Required {
		return "required"
	}
	return "recommended"
}

// MarshalText renders the severity as "required" or "recommended".
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads "required" or "recommended".
func (s *Severity) UnmarshalText(b []byte) error {
	switch string(b) {
	case "required":
		*s = Required
	case "recommended":
		*s = Recommended
	default:
		return fmt.Errorf("unknown severity %q: want required or recommended", b)
	}
	return nil
}

// Rule is one line of a profile: options of which any one must be enabled
// (=y or =m), on the kernel versions and architectures the rule covers.
type Rule struct {
	// Options lists option names without the CONFIG_ prefix; any one
	// enabled satisfies the rule.
	Options  []string `json:"options"`
	Severity Severity `json:"severity"`
	// Reason says in one line why the option is needed.
	Reason   string `json:"reason"`
	Versions Range  `json:"versions,omitzero"`
	// Arches limits the rule to these architectures (NormalizeArch names);
	// empty means every architecture.
	Arches []string `json:"arches,omitempty"`
}

// ID names the rule in reports: CONFIG_X, or CONFIG_X|CONFIG_Y for any-of.
func (r Rule) ID() string {
	ids := make([]string, len(r.Options))
	for i, o := range r.Options {
		ids[i] = configPrefix + o
	}
	return strings.Join(ids, "|")
}

// Profile is a named table of rules.
type Profile struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Rules       []Rule `json:"rules"`
}

// ProfileNames lists the built-in profiles in their canonical order.
func ProfileNames() []string {
	return []string{"k3s", "containers", "nftables", "wireguard", "tailscale"}
}

// Profiles returns fresh copies of every built-in profile.
func Profiles() []Profile {
	return []Profile{k3sProfile(), containersProfile(), nftablesProfile(), wireguardProfile(), tailscaleProfile()}
}

// LookupProfiles resolves a comma-separated list of profile names
// ("k3s,nftables"); "all" selects every profile. Duplicates are dropped.
func LookupProfiles(list string) ([]Profile, error) {
	all := Profiles()
	var out []Profile
	seen := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			continue
		}
		if name == "all" {
			for _, p := range all {
				if !seen[p.Name] {
					seen[p.Name] = true
					out = append(out, p)
				}
			}
			continue
		}
		i := slices.IndexFunc(all, func(p Profile) bool { return p.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("unknown profile %q (valid: %s, all)", name, strings.Join(ProfileNames(), ", "))
		}
		if !seen[name] {
			seen[name] = true
			out = append(out, all[i])
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no profile given (valid: %s, all)", strings.Join(ProfileNames(), ", "))
	}
	return out, nil
}

// MarshalJSON renders versions as strings.
func (v Version) MarshalJSON() ([]byte, error) { return json.Marshal(v.String()) }

// UnmarshalJSON reads a version written by MarshalJSON.
func (v *Version) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s == "" {
		*v = Version{}
		return nil
	}
	parsed, err := ParseVersion(s)
	if err != nil {
		return err
	}
	*v = parsed
	return nil
}

// IsZero lets omitzero drop unknown versions.
func (v Version) IsZero() bool { return !v.Known() }

// rule builders for the tables below.

func req(reason string, opts ...string) Rule {
	return Rule{Options: opts, Severity: Required, Reason: reason}
}

func rec(reason string, opts ...string) Rule {
	return Rule{Options: opts, Severity: Recommended, Reason: reason}
}

// from limits r to kernels >= v.
func (r Rule) from(v string) Rule { r.Versions.From = mustVersion(v); return r }

// below limits r to kernels < v.
func (r Rule) below(v string) Rule { r.Versions.Below = mustVersion(v); return r }

// on limits r to architectures.
func (r Rule) on(arches ...string) Rule { r.Arches = arches; return r }

// k3sProfile holds what k3s's check-config.sh checks. The script's
// "Generally Necessary" options are required, its optional ones
// recommended. DEVPTS_MULTIPLE_INSTANCES, which the script lists with the
// necessary options but only warns about, is required: containers need a
// private /dev/pts on kernels before 4.8.
func k3sProfile() Profile {
	ipsec := "encrypted overlay networks (IPsec)"
	return Profile{
		Name:        "k3s",
		Description: "what k3s's check-config.sh checks; version gates use the checked kernel's version",
		Rules: []Rule{
			req("namespaces, the base of every container", "NAMESPACES"),
			req("network namespaces give each pod its own network stack", "NET_NS"),
			req("PID namespaces isolate container process trees", "PID_NS"),
			req("IPC namespaces isolate System V IPC between pods", "IPC_NS"),
			req("UTS namespaces give each pod its own hostname", "UTS_NS"),
			req("control groups account and limit pod resources", "CGROUPS"),
			req("the pids controller limits processes per pod", "CGROUP_PIDS"),
			req("the cpuacct controller reports CPU usage per container", "CGROUP_CPUACCT"),
			req("the devices controller restricts device access from containers", "CGROUP_DEVICE"),
			req("the freezer controller pauses and stops containers", "CGROUP_FREEZER"),
			req("the CPU controller enforces CPU shares", "CGROUP_SCHED"),
			req("the cpuset controller places pods on CPUs and memory nodes", "CPUSETS"),
			req("the memory controller enforces pod memory limits", "MEMCG"),
			req("seccomp filters the system calls containers may make", "SECCOMP"),
			req("kernel keyrings, used by the container runtime", "KEYS"),
			req("veth pairs connect pods to the node's network", "VETH"),
			req("the bridge joins pod interfaces on the node (cni0)", "BRIDGE"),
			req("br_netfilter lets iptables see bridged pod traffic", "BRIDGE_NETFILTER"),
			req("the iptables filter table, used by kube-proxy and network policy", "IP_NF_FILTER"),
			req("MASQUERADE, source NAT for pod traffic leaving the node", "IP_NF_TARGET_MASQUERADE"),
			req("REJECT, used by kube-proxy for services without endpoints", "IP_NF_TARGET_REJECT"),
			req("addrtype match, used by kube-proxy for node-local traffic", "NETFILTER_XT_MATCH_ADDRTYPE"),
			req("conntrack match, used by kube-proxy and flannel", "NETFILTER_XT_MATCH_CONNTRACK"),
			req("ipvs match, used by kube-proxy", "NETFILTER_XT_MATCH_IPVS"),
			req("comment match, on every rule kube-proxy writes", "NETFILTER_XT_MATCH_COMMENT"),
			req("multiport match, used by network policy", "NETFILTER_XT_MATCH_MULTIPORT"),
			req("statistic match, kube-proxy's load balancing across endpoints", "NETFILTER_XT_MATCH_STATISTIC"),
			req("the iptables nat table, for service and pod NAT", "IP_NF_NAT"),
			req("netfilter NAT core", "NF_NAT"),
			req("POSIX message queues inside containers", "POSIX_MQUEUE"),
			req("a private /dev/pts per container (always on from 4.8)", "DEVPTS_MULTIPLE_INSTANCES").below("4.8"),

			rec("user namespaces, for rootless containers", "USER_NS"),
			rec("kernel memory accounting in the memory controller", "MEMCG_KMEM").below("4.6"),
			rec("resource counters behind the memory controller", "RESOURCE_COUNTERS").below("3.19"),
			rec("block I/O controller", "BLK_CGROUP"),
			rec("block I/O throttling per pod", "BLK_DEV_THROTTLING"),
			rec("perf events per cgroup", "CGROUP_PERF"),
			rec("huge page limits per pod", "CGROUP_HUGETLB"),
			rec("network classifier cgroup", "NET_CLS_CGROUP"),
			rec("network priority cgroup", "NETPRIO_CGROUP").below("3.14"),
			rec("network priority cgroup", "CGROUP_NET_PRIO").from("3.14"),
			rec("CPU quotas, which enforce pod CPU limits", "CFS_BANDWIDTH"),
			rec("CPU shares between pods", "FAIR_GROUP_SCHED"),
			rec("real-time scheduling in cgroups", "RT_GROUP_SCHED"),
			rec("REDIRECT target", "IP_NF_TARGET_REDIRECT"),
			rec("IP sets, used by network policy", "IP_SET"),
			rec("IPVS, for kube-proxy's ipvs mode", "IP_VS"),
			rec("IPVS connection tracking", "IP_VS_NFCT"),
			rec("IPVS TCP load balancing", "IP_VS_PROTO_TCP"),
			rec("IPVS UDP load balancing", "IP_VS_PROTO_UDP"),
			rec("IPVS round-robin scheduler", "IP_VS_RR"),
			rec("ext4, when k3s data lives on ext4", "EXT4_FS"),
			rec("ext4 POSIX ACLs, when k3s data lives on ext4", "EXT4_FS_POSIX_ACL"),
			rec("ext4 security labels, when k3s data lives on ext4", "EXT4_FS_SECURITY"),
			rec("VXLAN, flannel's default backend", "VXLAN"),
			rec(ipsec, "CRYPTO"),
			rec(ipsec, "CRYPTO_AEAD"),
			rec(ipsec, "CRYPTO_GCM"),
			rec(ipsec, "CRYPTO_SEQIV"),
			rec(ipsec, "CRYPTO_GHASH"),
			rec(ipsec, "XFRM"),
			rec(ipsec, "XFRM_USER"),
			rec(ipsec, "XFRM_ALGO"),
			rec(ipsec, "INET_ESP"),
			rec(ipsec, "INET_XFRM_MODE_TRANSPORT"),
			rec("overlayfs, containerd's default snapshotter", "OVERLAY_FS"),
		},
	}
}

// containersProfile holds the options postmarketOS's `pmbootstrap kconfig
// check` demands for its containers category (lxc, docker, podman), with
// the same version and architecture gates; that check fails on any of them,
// so all are required here. A few options container networking commonly
// needs beyond that list follow as recommendations.
func containersProfile() Profile {
	return Profile{
		Name:        "containers",
		Description: "postmarketOS's containers category (pmbootstrap kconfig check): lxc, docker, podman",
		Rules: []Rule{
			req("namespaces, the base of every container", "NAMESPACES"),
			req("network namespaces", "NET_NS"),
			req("PID namespaces", "PID_NS"),
			req("IPC namespaces", "IPC_NS"),
			req("UTS namespaces", "UTS_NS"),
			req("cpuacct controller", "CGROUP_CPUACCT"),
			req("devices controller", "CGROUP_DEVICE"),
			req("freezer controller", "CGROUP_FREEZER"),
			req("CPU controller", "CGROUP_SCHED"),
			req("cpuset controller", "CPUSETS"),
			req("kernel keyrings", "KEYS"),
			req("veth pairs for container networking", "VETH"),
			req("bridge for container networking", "BRIDGE"),
			req("br_netfilter for filtering bridged traffic", "BRIDGE_NETFILTER"),
			req("iptables filter table", "IP_NF_FILTER"),
			req("MASQUERADE for outbound container traffic", "IP_NF_TARGET_MASQUERADE"),
			req("addrtype match", "NETFILTER_XT_MATCH_ADDRTYPE"),
			req("conntrack match", "NETFILTER_XT_MATCH_CONNTRACK"),
			req("ipvs match", "NETFILTER_XT_MATCH_IPVS"),
			req("mark target and match", "NETFILTER_XT_MARK"),
			req("CHECKSUM target, needed by lxc", "NETFILTER_XT_TARGET_CHECKSUM"),
			req("iptables nat table", "IP_NF_NAT"),
			req("netfilter NAT core", "NF_NAT"),
			req("POSIX message queues", "POSIX_MQUEUE"),
			req("multiple devices driver, needed by device mapper", "MD"),
			req("device mapper, for container storage drivers", "BLK_DEV_DM"),
			req("dummy network interfaces", "DUMMY"),
			req("block I/O controller", "BLK_CGROUP"),
			req("block I/O throttling", "BLK_DEV_THROTTLING"),
			req("perf events per cgroup", "CGROUP_PERF"),
			req("packet scheduling, needed by the network classifier cgroup", "NET_SCHED"),
			req("network classifier cgroup", "NET_CLS_CGROUP"),
			req("CPU shares between groups", "FAIR_GROUP_SCHED"),
			req("REDIRECT target", "IP_NF_TARGET_REDIRECT"),
			req("IPVS load balancing", "IP_VS"),
			req("IPVS connection tracking", "IP_VS_NFCT"),
			req("IPVS TCP load balancing", "IP_VS_PROTO_TCP"),
			req("IPVS UDP load balancing", "IP_VS_PROTO_UDP"),
			req("IPVS round-robin scheduler", "IP_VS_RR"),
			req("ext4 POSIX ACLs", "EXT4_FS_POSIX_ACL"),
			req("ext4 security labels", "EXT4_FS_SECURITY"),
			req("CPU quotas", "CFS_BANDWIDTH").from("3.2"),
			req("checkpoint/restore support, needed by lxc", "CHECKPOINT_RESTORE").from("3.3"),
			req("memory controller", "MEMCG").from("3.6"),
			req("thin provisioning, for the devicemapper storage driver", "DM_THIN_PROVISIONING").from("3.6"),
			req("swap support", "SWAP").from("3.6"),
			req("huge pages", "HUGETLB_PAGE").from("3.6").on("x86", "x86_64"),
			req("huge page limits per group", "CGROUP_HUGETLB").from("3.6").on("x86", "x86_64"),
			req("swap accounting in the memory controller", "MEMCG_SWAP").from("3.6").below("6.1-rc1"),
			req("IPv4 NAT, needed by lxc", "NF_NAT_IPV4").from("3.7").below("5.0"),
			req("IPv6 NAT, needed by lxc", "NF_NAT_IPV6").from("3.7").below("5.0"),
			req("VXLAN overlay networks", "VXLAN").from("3.7"),
			req("IPv6 MASQUERADE, needed by lxc", "IP6_NF_TARGET_MASQUERADE").from("3.7"),
			req("VLAN filtering on bridges", "BRIDGE_VLAN_FILTERING").from("3.9"),
			req("macvlan networks", "MACVLAN").from("3.9"),
			req("xtables matches and targets in nftables (iptables-nft)", "NFT_COMPAT").from("3.13"),
			req("network priority cgroup", "CGROUP_NET_PRIO").from("3.14"),
			req("overlayfs storage driver", "OVERLAY_FS").from("3.18"),
			req("ipvlan networks", "IPVLAN").from("3.19"),
			req("seccomp system call filtering", "SECCOMP").from("3.19"),
			req("pids controller", "CGROUP_PIDS").from("4.4"),

			rec("BPF programs on cgroups, used by runc's device filter on cgroup v2", "CGROUP_BPF"),
			rec("iptables mangle table, used by CNI plugins", "IP_NF_MANGLE"),
			rec("iptables raw table, used to skip conntrack", "IP_NF_RAW"),
			rec("ip6tables, for IPv6 container networking", "IP6_NF_IPTABLES"),
			rec("ip6tables filter table", "IP6_NF_FILTER"),
			rec("ip6tables nat table", "IP6_NF_NAT").from("3.7"),
			rec("ip6tables mangle table", "IP6_NF_MANGLE"),
			rec("nftables, for container runtimes that write nft rules", "NF_TABLES").from("3.13"),
		},
	}
}

// nftablesProfile holds what an nft-only kernel needs to run k3s with
// iptables-nft, which writes xtables rules as nftables with counters.
func nftablesProfile() Profile {
	return Profile{
		Name:        "nftables",
		Description: "what k3s's iptables-nft needs from an nftables-only kernel",
		Rules: []Rule{
			req("nf_tables, the nftables core (kernel 3.13 or newer)", "NF_TABLES"),
			req("IPv4 nftables tables", "NF_TABLES_IPV4"),
			req("xtables matches and targets inside nftables, used by iptables-nft", "NFT_COMPAT"),
			req("ct expression, connection state in rules", "NFT_CT"),
			req("counter expression, on every rule iptables-nft writes (built in from 5.17)", "NFT_COUNTER").below("5.17"),
			req("nat expression, for service and pod NAT", "NFT_NAT"),
			req("IPv4 nat chain type (part of NFT_NAT from 5.1)", "NFT_CHAIN_NAT_IPV4", "NFT_CHAIN_NAT").below("5.1"),
			req("masquerade expression, source NAT for pod traffic", "NFT_MASQ").from("3.18"),
			req("IPv4 masquerade (part of NFT_MASQ from 5.1)", "NFT_MASQ_IPV4").from("3.18").below("5.1"),
			req("fib expression for IPv4, used for node-local address checks", "NFT_FIB_IPV4").from("4.10"),
			rec("IPv6 nftables tables, for dual-stack clusters", "NF_TABLES_IPV6"),
			rec("inet tables covering IPv4 and IPv6 together", "NF_TABLES_INET").from("3.14"),
			rec("fib expression for IPv6", "NFT_FIB_IPV6").from("4.10"),
			rec("reject expression", "NFT_REJECT"),
			rec("limit expression", "NFT_LIMIT"),
			rec("log expression", "NFT_LOG"),
			rec("redirect expression", "NFT_REDIR").from("3.19"),
			rec("connection tracking", "NF_CONNTRACK"),
		},
	}
}

// wireguardProfile holds what flannel's wireguard-native backend needs.
func wireguardProfile() Profile {
	return Profile{
		Name:        "wireguard",
		Description: "flannel's wireguard-native backend",
		Rules: []Rule{
			req("WireGuard, in the kernel from 5.6 (older kernels need it backported)", "WIREGUARD"),
			rec("policy routing, used to route around the tunnel", "IP_ADVANCED_ROUTER"),
			rec("multiple routing tables", "IP_MULTIPLE_TABLES"),
		},
	}
}

// tailscaleProfile holds what tailscaled needs in kernel TUN mode.
func tailscaleProfile() Profile {
	return Profile{
		Name:        "tailscale",
		Description: "tailscaled with a kernel TUN device",
		Rules: []Rule{
			req("TUN devices, tailscaled's network interface", "TUN"),
			rec("policy routing, for tailscale's routing table", "IP_ADVANCED_ROUTER"),
			rec("multiple routing tables, for tailscale's routing table", "IP_MULTIPLE_TABLES"),
			rec("IPv6 multiple routing tables", "IPV6_MULTIPLE_TABLES"),
			rec("mark match, for tailscale's firewall rules", "NETFILTER_XT_MARK"),
		},
	}
}
