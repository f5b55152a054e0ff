package checks

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/phonefarm/phonefarm/facts"
	"github.com/phonefarm/phonefarm/kernelcfg"
)

// Status of one check or of a whole phone.
type Status string

const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
	Skip Status = "skip"
)

func worse(a, b Status) Status {
	rank := map[Status]int{Skip: 0, Pass: 1, Warn: 2, Fail: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// Spec is what the inventory wants of a phone, as far as checks care.
type Spec struct {
	Phone       string
	OS          string // inventory os: postmarketos, linux, android
	Role        string // server, agent or ""
	ClusterCIDR string
	ServiceCIDR string
	// Profiles are the kernel profiles the phone's config must meet.
	Profiles []kernelcfg.Profile
	// Tailnet: the farm runs k3s over its tailnet.
	Tailnet bool
	// Peers are the farm's other phones with a role.
	Peers int
}

// Result is one check on one phone.
type Result struct {
	ID      string `json:"id"`
	Status  Status `json:"status"`
	Message string `json:"message"`
}

// Report is every check on one phone.
type Report struct {
	Phone   string         `json:"phone"`
	Status  Status         `json:"status"`
	Results []Result       `json:"results"`
	Kernel  *KernelSummary `json:"kernel,omitempty"`
}

// KernelSummary is the kernel-config verdict of a phone.
type KernelSummary struct {
	Path               string   `json:"path"`
	Version            string   `json:"version,omitempty"`
	Verdict            string   `json:"verdict"`
	MissingRequired    []string `json:"missingRequired,omitempty"`
	MissingRecommended []string `json:"missingRecommended,omitempty"`
}

// Thresholds a phone must meet for its role.
const (
	minDiskServer  = 2 << 30
	minDiskAgent   = 1 << 30
	minMemServer   = 1 << 30
	minMemAgent    = 512 << 20
	goodMemServer  = 2 << 30
	goodMemAgent   = 1 << 30
	clockWarnSkew  = 30 * time.Second
	clockFailSkew  = 10 * time.Minute
	minAndroidSDK  = 24 // Android 7.0: adb shell protocol v2
	minRootMaxKeys = 10000
	defaultPodCIDR = "10.42.0.0/16"
	defaultSvcCIDR = "10.43.0.0/16"
	flannelVXLAN   = 8472
	flannelWireGrd = 51820
	apiServerPort  = 6443
	kubeletPort    = 10250
)

// Evaluate judges a phone from its facts and observation; now is the
// controller's clock, for the clock-skew check.
func Evaluate(spec Spec, f facts.Facts, o Observation, now time.Time) Report {
	r := Report{Phone: spec.Phone, Status: Pass}
	add := func(id string, s Status, format string, args ...any) {
		r.Results = append(r.Results, Result{ID: id, Status: s, Message: fmt.Sprintf(format, args...)})
		r.Status = worse(r.Status, s)
	}
	android := spec.OS == "android" || f.OS.Android != nil

	switch f.Arch {
	case "arm64", "arm", "amd64":
		add("arch", Pass, "%s (%s) has k3s builds", f.Arch, f.Machine)
	default:
		add("arch", Fail, "%s has no k3s build; k3s runs on arm64, arm (armv7) and amd64", f.Machine)
	}
	clock(add, o, now)
	resources(add, spec, f, android)
	if android {
		androidChecks(add, f, o)
		return r
	}
	if f.OS.AndroidTerminal {
		androidTerminal(add, spec, f)
	}
	r.Kernel = kernel(add, spec, f, o)
	cgroups(add, f)
	if o.SwapDevices > 0 {
		add("swap", Warn, "swap is enabled on %d device(s); the kubelet k3s runs expects it off (swapoff -a, or accept the kubelet's swap warning)", o.SwapDevices)
	} else {
		add("swap", Pass, "off")
	}
	iptables(add, f)
	ports(add, spec, f, o)
	if o.RootMaxKeys > 0 && o.RootMaxKeys <= minRootMaxKeys {
		add("keys", Warn, "kernel.keys.root_maxkeys is %d; containers each take a key, raise it above %d (sysctl kernel.keys.root_maxkeys=1000000)", o.RootMaxKeys, minRootMaxKeys)
	} else if o.RootMaxKeys > 0 {
		add("keys", Pass, "root_maxkeys %d", o.RootMaxKeys)
	}
	routes(add, spec, o)
	pods(add, f, o)
	switch {
	case o.AppArmorEnabled && !o.AppArmorParser:
		add("apparmor", Fail, "AppArmor is enabled but apparmor_parser is missing; k3s cannot load container profiles (install apparmor)")
	case o.AppArmorEnabled:
		add("apparmor", Pass, "enabled, apparmor_parser present")
	default:
		add("apparmor", Pass, "not enabled")
	}
	return r
}

type addFunc func(id string, s Status, format string, args ...any)

func clock(add addFunc, o Observation, now time.Time) {
	if o.TimeUnix == 0 {
		add("clock", Warn, "could not read the phone's clock")
		return
	}
	skew := time.Unix(o.TimeUnix, 0).Sub(now.Truncate(time.Second))
	abs := skew.Abs()
	switch {
	case abs > clockFailSkew:
		add("clock", Fail, "the phone's clock is off by %s; TLS certificates will not validate (set the time, or enable NTP)", skew.Round(time.Second))
	case abs > clockWarnSkew:
		add("clock", Warn, "the phone's clock is off by %s; enable NTP", skew.Round(time.Second))
	default:
		add("clock", Pass, "within %s of this machine", clockWarnSkew)
	}
}

func resources(add addFunc, spec Spec, f facts.Facts, android bool) {
	minDisk, minMem, goodMem := uint64(minDiskAgent), uint64(minMemAgent), uint64(goodMemAgent)
	if spec.Role == "server" {
		minDisk, minMem, goodMem = minDiskServer, minMemServer, goodMemServer
	}
	role := spec.Role
	if role == "" {
		role = "agent"
	}
	if android {
		role = "rootless agent"
	}
	switch {
	case f.Disk.Free == 0:
		add("disk", Warn, "could not read free disk space")
	case f.Disk.Free < minDisk:
		add("disk", Fail, "%s free on %s; a %s needs at least %s", gib(f.Disk.Free), f.Disk.Path, role, gib(minDisk))
	default:
		add("disk", Pass, "%s free on %s", gib(f.Disk.Free), f.Disk.Path)
	}
	switch {
	case f.Memory.Total == 0:
		add("memory", Warn, "could not read memory size")
	case f.Memory.Total < minMem:
		add("memory", Fail, "%s of memory; a %s needs at least %s", gib(f.Memory.Total), role, gib(minMem))
	case f.Memory.Total < goodMem:
		add("memory", Warn, "%s of memory; a %s runs better with %s", gib(f.Memory.Total), role, gib(goodMem))
	default:
		add("memory", Pass, "%s", gib(f.Memory.Total))
	}
}

// Advisory lists the checks whose failure does not stop k3s from being
// installed, and which installing may resolve (a mirror or an air-gap
// tarball for the pause image, a k3s release's own CNI plugins): apply
// notes them instead of blocking the phone.
var Advisory = []string{"cni-plugins", "pause-image"}

// cniPlugins are the plugins of k3s's default pod network: flannel, which
// delegates to bridge and host-local, loopback, and the portmap and
// bandwidth plugins of its chain.
var cniPlugins = []string{"flannel", "bridge", "host-local", "loopback", "portmap", "bandwidth"}

// pods judges what blocks pods once k3s runs: lowering oom_score_adj, the
// CNI plugins, the pause image.
func pods(add addFunc, f facts.Facts, o Observation) {
	switch {
	case !o.OOMKnown:
		add("oom-score-adj", Warn, "could not test whether root can lower oom_score_adj")
	case o.OOMLower:
		add("oom-score-adj", Pass, "root can lower oom_score_adj, as runc does for every pod")
	default:
		add("oom-score-adj", Warn, "root cannot lower oom_score_adj here (no CAP_SYS_RESOURCE, as in containers and some VMs), so runc would fail every pod sandbox; phonefarm apply gives k3s v1.32's containerd restrict_oom_score_adj on this phone")
	}
	switch {
	case o.CNIDir == "" && !o.K3sInstalled && !f.K3s.Active:
		add("cni-plugins", Skip, "k3s is not installed yet; a k3s release brings its CNI plugins in /var/lib/rancher/k3s/data")
	case o.CNIDir == "":
		add("cni-plugins", Fail, "k3s finds no CNI plugins (no host-local in /var/lib/rancher/k3s/data/current/bin or on PATH): pods get no network; a k3s release carries them, a k3s built from source needs the standard CNI plugins and flannel's installed")
	default:
		var missing []string
		for _, p := range cniPlugins {
			if !slices.Contains(o.CNIPlugins, p) {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			add("cni-plugins", Fail, "k3s's CNI plugin directory %s lacks %s: pods get no network", o.CNIDir, strings.Join(missing, ", "))
		} else {
			add("cni-plugins", Pass, "%s has k3s's CNI plugins (%s)", o.CNIDir, strings.Join(cniPlugins, ", "))
		}
	}
	switch {
	case o.PauseImage == "":
		add("pause-image", Skip, "k3s has not configured containerd yet")
	case o.PausePresent:
		add("pause-image", Pass, "the pause image %s is on the phone", o.PauseImage)
	case o.PauseError != "":
		add("pause-image", Fail, "the pause image %s is not on the phone and could not be pulled (%s): mirror its registry in k3s.registries or ship it in k3s.airgapImages", o.PauseImage, shorten(o.PauseError, 300))
	default:
		add("pause-image", Warn, "the pause image %s is not on the phone yet; the first pod pulls it, which needs a registry: a phone without one needs it in k3s.airgapImages", o.PauseImage)
	}
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

func androidChecks(add addFunc, f facts.Facts, o Observation) {
	a := f.OS.Android
	if a == nil {
		add("android", Fail, "the inventory says android but getprop does not answer")
		return
	}
	if a.SDK < minAndroidSDK {
		add("android-sdk", Fail, "Android %s (SDK %d) is too old; the rootless agent needs Android 7.0 (SDK %d) or newer", a.Release, a.SDK, minAndroidSDK)
	} else {
		add("android-sdk", Pass, "Android %s (SDK %d), ABI %s", a.Release, a.SDK, a.ABI)
	}
	if o.TmpExec {
		add("android-exec", Pass, "/data/local/tmp can run programs")
	} else {
		add("android-exec", Fail, "/data/local/tmp cannot run programs; the rootless agent is deployed there")
	}
}

// androidTerminal judges Android's Linux terminal (the Debian VM the
// Android Virtualization Framework runs on Android 15 QPR2 and later) as a
// k3s phone: the VM sits behind its phone, which forwards only ports the
// user allows, to its own loopback.
func androidTerminal(add addFunc, spec Spec, f facts.Facts) {
	add("android-terminal", Pass, "Android's Linux terminal (a Debian VM on the phone, kernel %s): it runs while the Terminal app is open; closing the app stops the VM and k3s with it", f.Kernel)
	switch {
	case spec.Role == "":
	case spec.Tailnet:
		add("android-terminal-network", Pass, "the farm's other phones reach the VM over the tailnet")
	case spec.Peers > 0:
		add("android-terminal-network", Fail, "the VM is behind its phone, which forwards ports only to its own loopback (Terminal > Port control): the farm's %d other phone(s) cannot reach its kubelet or flannel; run the farm on a tailnet (tailscale: in the inventory)", spec.Peers)
	default:
		add("android-terminal-network", Pass, "a one-phone cluster: allow port 6443 in the Terminal's Port control and reach the API through adb forward tcp:6443 tcp:6443")
	}
}

func kernel(add addFunc, spec Spec, f facts.Facts, o Observation) *KernelSummary {
	if o.KernelConfigPath == "" || len(o.KernelConfig) == 0 {
		add("kernel-config", Warn, "the phone exposes no kernel config (/proc/config.gz or /boot/config-%s); enable CONFIG_IKCONFIG_PROC or set kernelConfig in the inventory", f.Kernel)
		return nil
	}
	cfg, err := kernelcfg.Parse(o.KernelConfig, kernelcfg.ParseOptions{Name: o.KernelConfigPath, Version: f.Kernel, Arch: f.Machine})
	if err != nil {
		add("kernel-config", Fail, "%s is not a readable kernel config: %v", o.KernelConfigPath, err)
		return nil
	}
	rep := kernelcfg.Check(cfg, spec.Profiles...)
	sum := &KernelSummary{Path: o.KernelConfigPath, Version: rep.Version, Verdict: rep.Verdict().String()}
	for _, m := range rep.MissingRequired() {
		sum.MissingRequired = append(sum.MissingRequired, m.ID)
	}
	for _, m := range rep.MissingRecommended() {
		sum.MissingRecommended = append(sum.MissingRecommended, m.ID)
	}
	names := strings.Join(rep.Profiles, ",")
	switch rep.Verdict() {
	case kernelcfg.Fail:
		add("kernel-config", Fail, "%s lacks %d option(s) %s requires: %s", o.KernelConfigPath, len(sum.MissingRequired), names, strings.Join(sum.MissingRequired, " "))
	case kernelcfg.Warn:
		add("kernel-config", Warn, "%s has every required %s option; %d recommended missing: %s", o.KernelConfigPath, names, len(sum.MissingRecommended), strings.Join(sum.MissingRecommended, " "))
	default:
		add("kernel-config", Pass, "%s meets %s", o.KernelConfigPath, names)
	}
	return sum
}

func cgroups(add addFunc, f facts.Facts) {
	have := func(c string) bool { return slices.Contains(f.Cgroup.Controllers, c) }
	switch f.Cgroup.Version {
	case 2:
		var missing []string
		for _, c := range []string{"cpu", "cpuset", "memory"} {
			if !have(c) {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			add("cgroups", Fail, "cgroup v2 without the %s controller(s); enable them in the kernel (CONFIG_CPUSETS, CONFIG_MEMCG, CONFIG_CGROUP_SCHED)", strings.Join(missing, ", "))
			return
		}
		add("cgroups", Pass, "v2 with cpu, cpuset, memory")
	case 1:
		var missing []string
		for _, c := range []string{"cpuset", "memory"} {
			if !have(c) {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			add("cgroups", Fail, "cgroup v1 without the %s controller(s) enabled (check /proc/cgroups; memory may need cgroup_enable=memory on the kernel command line)", strings.Join(missing, ", "))
			return
		}
		add("cgroups", Pass, "v1 with cpuset and memory")
	default:
		add("cgroups", Fail, "no cgroup hierarchy found; the kernel needs CONFIG_CGROUPS")
	}
}

func iptables(add addFunc, f facts.Facts) {
	v := f.Firewall.IptablesVersion
	switch {
	case v == "":
		add("iptables", Pass, "no iptables on the phone; k3s uses its bundled iptables")
	case f.Firewall.IptablesMode == "nf_tables" && brokenIptablesNft(v):
		add("iptables", Fail, "iptables %s in nf_tables mode is broken for Kubernetes; upgrade iptables to 1.8.4 or newer, or switch to iptables-legacy", v)
	default:
		add("iptables", Pass, "iptables %s (%s)", v, f.Firewall.IptablesMode)
	}
	if f.Firewall.NftVersion != "" {
		add("nftables", Pass, "nft %s: phonefarm adds k3s's rules to the nftables firewall", f.Firewall.NftVersion)
	} else {
		add("nftables", Skip, "no nft on the phone")
	}
}

// brokenIptablesNft reports iptables 1.8.0 to 1.8.3, whose nf_tables mode
// mishandles the rules Kubernetes writes.
func brokenIptablesNft(v string) bool {
	var major, minor, patch int
	if n, _ := fmt.Sscanf(v, "%d.%d.%d", &major, &minor, &patch); n < 3 {
		return false
	}
	return major == 1 && minor == 8 && patch <= 3
}

func ports(add addFunc, spec Spec, f facts.Facts, o Observation) {
	type port struct {
		n     int
		proto string
		what  string
	}
	need := []port{{kubeletPort, "tcp", "kubelet"}, {flannelVXLAN, "udp", "flannel vxlan"}, {flannelWireGrd, "udp", "flannel wireguard"}}
	if spec.Role == "server" {
		need = append([]port{{apiServerPort, "tcp", "Kubernetes API"}}, need...)
	}
	if f.K3s.Active {
		add("ports", Pass, "k3s is running and holds its ports")
		return
	}
	var busy []string
	for _, p := range need {
		list := o.ListenTCP
		if p.proto == "udp" {
			list = o.ListenUDP
		}
		if p.n == flannelVXLAN && o.FlannelLink {
			// The kernel socket of flannel.1, left by a stopped k3s: k3s's
			// own, and its flannel takes it back when it starts.
			continue
		}
		if slices.Contains(list, p.n) {
			busy = append(busy, fmt.Sprintf("%d/%s (%s)", p.n, p.proto, p.what))
		}
	}
	if len(busy) > 0 {
		add("ports", Fail, "in use by another program: %s", strings.Join(busy, ", "))
		return
	}
	add("ports", Pass, "%d port(s) k3s needs are free", len(need))
}

func routes(add addFunc, spec Spec, o Observation) {
	var clashes []string
	for _, c := range []struct{ name, cidr string }{{"pod network", or(spec.ClusterCIDR, defaultPodCIDR)}, {"service network", or(spec.ServiceCIDR, defaultSvcCIDR)}} {
		_, want, err := net.ParseCIDR(c.cidr)
		if err != nil {
			continue
		}
		for _, rt := range o.Routes {
			if rt.Iface == "cni0" || strings.HasPrefix(rt.Iface, "flannel") || rt.Dest == "0.0.0.0" {
				continue
			}
			dst := &net.IPNet{IP: net.ParseIP(rt.Dest).To4(), Mask: net.IPMask(net.ParseIP(rt.Netmask).To4())}
			if dst.IP == nil || dst.Mask == nil {
				continue
			}
			if want.Contains(dst.IP) || dst.Contains(want.IP) {
				ones, _ := dst.Mask.Size()
				clashes = append(clashes, fmt.Sprintf("%s/%d via %s overlaps the %s %s", rt.Dest, ones, rt.Iface, c.name, c.cidr))
			}
		}
	}
	if len(clashes) > 0 {
		add("routes", Fail, "%s; choose other k3s.clusterCIDR/serviceCIDR in the inventory", strings.Join(clashes, "; "))
		return
	}
	add("routes", Pass, "no route clashes with the pod and service networks")
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func gib(n uint64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%d MiB", n>>20)
}
