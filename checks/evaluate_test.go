package checks

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/phonefarm/phonefarm/facts"
	"github.com/phonefarm/phonefarm/kernelcfg"
)

var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// goodPhone is a postmarketOS phone that passes everything.
func goodPhone() (facts.Facts, Observation) {
	f := facts.Facts{
		Arch: "arm64", Machine: "aarch64", Kernel: "6.1.10", OS: facts.OS{ID: "postmarketos"},
		Memory:   facts.Memory{Total: 4 << 30},
		Disk:     facts.Disk{Path: "/var/lib", Free: 20 << 30},
		Cgroup:   facts.Cgroup{Version: 2, Controllers: []string{"cpuset", "cpu", "io", "memory", "pids"}},
		Firewall: facts.Firewall{NftVersion: "1.0.9", IptablesVersion: "1.8.10", IptablesMode: "nf_tables"},
	}
	o := Observation{TimeUnix: now.Unix(), RootMaxKeys: 1000000, ListenTCP: []int{22}, ListenUDP: []int{68}, OOMKnown: true, OOMLower: true,
		Routes: []Route{{Iface: "wlan0", Dest: "0.0.0.0", Netmask: "0.0.0.0"}, {Iface: "wlan0", Dest: "192.168.1.0", Netmask: "255.255.255.0"}}}
	return f, o
}

func status(r Report, id string) (Status, string) {
	for _, res := range r.Results {
		if res.ID == id {
			return res.Status, res.Message
		}
	}
	return "", ""
}

func TestEvaluate(t *testing.T) {
	server := Spec{Phone: "p", OS: "postmarketos", Role: "server"}
	tests := []struct {
		name       string
		spec       Spec
		mutate     func(*facts.Facts, *Observation)
		id         string
		want       Status
		wantInMsg  string
		wantReport Status
	}{
		{name: "all good", spec: server, id: "cgroups", want: Pass, wantReport: Warn /* no kernel config */},
		{name: "unsupported arch", spec: server, mutate: func(f *facts.Facts, _ *Observation) { f.Arch, f.Machine = "riscv64", "riscv64" }, id: "arch", want: Fail, wantInMsg: "no k3s build"},
		{name: "clock far off", spec: server, mutate: func(_ *facts.Facts, o *Observation) { o.TimeUnix = now.Add(-3 * time.Hour).Unix() }, id: "clock", want: Fail, wantInMsg: "-3h0m0s"},
		{name: "clock a bit off", spec: server, mutate: func(_ *facts.Facts, o *Observation) { o.TimeUnix = now.Add(2 * time.Minute).Unix() }, id: "clock", want: Warn},
		{name: "small disk for a server", spec: server, mutate: func(f *facts.Facts, _ *Observation) { f.Disk.Free = 1 << 30 }, id: "disk", want: Fail, wantInMsg: "at least 2.0 GiB"},
		{name: "small disk fine for an agent", spec: Spec{Role: "agent"}, mutate: func(f *facts.Facts, _ *Observation) { f.Disk.Free = 1536 << 20 }, id: "disk", want: Pass},
		{name: "too little memory", spec: server, mutate: func(f *facts.Facts, _ *Observation) { f.Memory.Total = 700 << 20 }, id: "memory", want: Fail},
		{name: "little memory", spec: server, mutate: func(f *facts.Facts, _ *Observation) { f.Memory.Total = 1536 << 20 }, id: "memory", want: Warn},
		{name: "oom_score_adj can be lowered", spec: server, id: "oom-score-adj", want: Pass},
		{name: "oom_score_adj cannot be lowered", spec: server, mutate: func(_ *facts.Facts, o *Observation) { o.OOMLower = false }, id: "oom-score-adj", want: Warn, wantInMsg: "restrict_oom_score_adj"},
		{name: "k3s not installed: its CNI plugins come with it", spec: server, id: "cni-plugins", want: Skip},
		{name: "k3s installed without CNI plugins", spec: server, mutate: func(_ *facts.Facts, o *Observation) { o.K3sInstalled = true }, id: "cni-plugins", want: Fail, wantInMsg: "no host-local"},
		{name: "flannel missing", spec: server, mutate: func(_ *facts.Facts, o *Observation) {
			o.K3sInstalled, o.CNIDir, o.CNIPlugins = true, "/usr/local/bin", []string{"bridge", "host-local", "loopback", "portmap", "bandwidth"}
		}, id: "cni-plugins", want: Fail, wantInMsg: "/usr/local/bin lacks flannel"},
		{name: "every CNI plugin there", spec: server, mutate: func(_ *facts.Facts, o *Observation) {
			o.K3sInstalled, o.CNIDir, o.CNIPlugins = true, "/var/lib/rancher/k3s/data/current/bin", cniPlugins
		}, id: "cni-plugins", want: Pass},
		{name: "no pause image configured yet", spec: server, id: "pause-image", want: Skip},
		{name: "pause image present", spec: server, mutate: func(_ *facts.Facts, o *Observation) {
			o.PauseImage, o.PausePresent = "rancher/mirrored-pause:3.6", true
		}, id: "pause-image", want: Pass},
		{name: "pause image not pulled yet", spec: server, mutate: func(_ *facts.Facts, o *Observation) { o.PauseImage = "rancher/mirrored-pause:3.6" }, id: "pause-image", want: Warn, wantInMsg: "k3s.airgapImages"},
		{name: "pause image cannot be pulled", spec: server, mutate: func(_ *facts.Facts, o *Observation) {
			o.PauseImage, o.PauseError = "rancher/mirrored-pause:3.6", `failed to get sandbox image "rancher/mirrored-pause:3.6": dial tcp: lookup registry-1.docker.io: no such host`
		}, id: "pause-image", want: Fail, wantInMsg: "no such host"},
		{name: "cgroup v2 without cpuset", spec: server, mutate: func(f *facts.Facts, _ *Observation) { f.Cgroup.Controllers = []string{"cpu", "memory"} }, id: "cgroups", want: Fail, wantInMsg: "cpuset"},
		{name: "cgroup v1 without memory", spec: server, mutate: func(f *facts.Facts, _ *Observation) {
			f.Cgroup = facts.Cgroup{Version: 1, Controllers: []string{"cpuset", "cpu"}}
		}, id: "cgroups", want: Fail, wantInMsg: "memory"},
		{name: "no cgroups", spec: server, mutate: func(f *facts.Facts, _ *Observation) { f.Cgroup = facts.Cgroup{} }, id: "cgroups", want: Fail},
		{name: "swap on", spec: server, mutate: func(_ *facts.Facts, o *Observation) { o.SwapDevices = 1 }, id: "swap", want: Warn},
		{name: "broken iptables-nft", spec: server, mutate: func(f *facts.Facts, _ *Observation) { f.Firewall.IptablesVersion = "1.8.2" }, id: "iptables", want: Fail, wantInMsg: "1.8.4"},
		{name: "iptables 1.8.3 nft is broken", spec: server, mutate: func(f *facts.Facts, _ *Observation) { f.Firewall.IptablesVersion = "1.8.3" }, id: "iptables", want: Fail},
		{name: "iptables 1.8.10 nft is fine", spec: server, mutate: func(f *facts.Facts, _ *Observation) { f.Firewall.IptablesVersion = "1.8.10" }, id: "iptables", want: Pass},
		{name: "iptables 1.8.2 legacy is fine", spec: server, mutate: func(f *facts.Facts, _ *Observation) {
			f.Firewall.IptablesVersion, f.Firewall.IptablesMode = "1.8.2", "legacy"
		}, id: "iptables", want: Pass},
		{name: "api port taken", spec: server, mutate: func(_ *facts.Facts, o *Observation) { o.ListenTCP = []int{22, 6443} }, id: "ports", want: Fail, wantInMsg: "6443/tcp"},
		{name: "api port irrelevant for an agent", spec: Spec{Role: "agent"}, mutate: func(_ *facts.Facts, o *Observation) { o.ListenTCP = []int{6443} }, id: "ports", want: Pass},
		{name: "vxlan port taken", spec: Spec{Role: "agent"}, mutate: func(_ *facts.Facts, o *Observation) { o.ListenUDP = []int{8472} }, id: "ports", want: Fail, wantInMsg: "8472/udp"},
		{name: "vxlan port held by a stopped k3s's flannel.1", spec: Spec{Role: "agent"}, mutate: func(_ *facts.Facts, o *Observation) { o.ListenUDP, o.FlannelLink = []int{8472}, true }, id: "ports", want: Pass},
		{name: "kubelet port taken beside flannel.1", spec: Spec{Role: "agent"}, mutate: func(_ *facts.Facts, o *Observation) {
			o.ListenUDP, o.ListenTCP, o.FlannelLink = []int{8472}, []int{10250}, true
		}, id: "ports", want: Fail, wantInMsg: "10250/tcp"},
		{name: "ports held by running k3s", spec: server, mutate: func(f *facts.Facts, o *Observation) { o.ListenTCP = []int{6443, 10250}; f.K3s.Active = true }, id: "ports", want: Pass},
		{name: "few keys", spec: server, mutate: func(_ *facts.Facts, o *Observation) { o.RootMaxKeys = 200 }, id: "keys", want: Warn},
		{name: "route clash", spec: server, mutate: func(_ *facts.Facts, o *Observation) {
			o.Routes = append(o.Routes, Route{Iface: "eth1", Dest: "10.42.0.0", Netmask: "255.255.0.0"})
		}, id: "routes", want: Fail, wantInMsg: "10.42.0.0/16 via eth1"},
		{name: "flannel's own route is fine", spec: server, mutate: func(_ *facts.Facts, o *Observation) {
			o.Routes = append(o.Routes, Route{Iface: "cni0", Dest: "10.42.0.0", Netmask: "255.255.255.0"})
		}, id: "routes", want: Pass},
		{name: "route clash with a custom CIDR", spec: Spec{Role: "server", ClusterCIDR: "192.168.0.0/16"}, id: "routes", want: Fail, wantInMsg: "192.168.1.0/24 via wlan0"},
		{name: "apparmor without parser", spec: server, mutate: func(_ *facts.Facts, o *Observation) { o.AppArmorEnabled = true }, id: "apparmor", want: Fail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, o := goodPhone()
			if tt.mutate != nil {
				tt.mutate(&f, &o)
			}
			r := Evaluate(tt.spec, f, o, now)
			got, msg := status(r, tt.id)
			if got != tt.want {
				t.Errorf("%s: got %s (%q), want %s", tt.id, got, msg, tt.want)
			}
			if !strings.Contains(msg, tt.wantInMsg) {
				t.Errorf("%s message: got %q, want it to mention %q", tt.id, msg, tt.wantInMsg)
			}
			if tt.want == Fail && r.Status != Fail {
				t.Errorf("report status: got %s, want fail when a check fails", r.Status)
			}
			if tt.wantReport != "" && r.Status != tt.wantReport {
				t.Errorf("report status: got %s, want %s", r.Status, tt.wantReport)
			}
		})
	}
}

func TestEvaluateKernelConfig(t *testing.T) {
	profiles, err := kernelcfg.LookupProfiles("k3s")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file        string
		want        Status
		wantMissing string
	}{
		{file: "../kernelcfg/testdata/samsung-m20lte.config", want: Fail, wantMissing: "CONFIG_VETH"},
		{file: "../kernelcfg/testdata/postmarketos-stericsson.config", want: Fail, wantMissing: "CONFIG_NETFILTER_XT_MATCH_MULTIPORT"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			f, o := goodPhone()
			o.KernelConfigPath, o.KernelConfig = "/proc/config.gz", cfg
			r := Evaluate(Spec{Role: "server", Profiles: profiles}, f, o, now)
			got, msg := status(r, "kernel-config")
			if got != tt.want || !strings.Contains(msg, tt.wantMissing) {
				t.Errorf("kernel-config: got %s %q, want %s naming %s", got, msg, tt.want, tt.wantMissing)
			}
			if r.Kernel == nil || r.Kernel.Verdict != "fail" {
				t.Errorf("kernel summary: got %+v, want verdict fail", r.Kernel)
			}
		})
	}
	f, o := goodPhone()
	o.KernelConfigPath, o.KernelConfig = "/proc/config.gz", []byte("\x00\x01binary junk")
	if got, _ := status(Evaluate(Spec{Role: "agent", Profiles: profiles}, f, o, now), "kernel-config"); got != Fail {
		t.Errorf("unreadable config: got %s, want fail", got)
	}
}

func TestEvaluateAndroid(t *testing.T) {
	f := facts.Facts{Arch: "arm64", Machine: "aarch64", OS: facts.OS{ID: "android", Android: &facts.Android{Release: "11", SDK: 30, ABI: "arm64-v8a"}},
		Memory: facts.Memory{Total: 3 << 30}, Disk: facts.Disk{Path: "/data", Free: 10 << 30}}
	o := Observation{TimeUnix: now.Unix(), TmpExec: true}
	r := Evaluate(Spec{OS: "android", Role: "agent"}, f, o, now)
	if r.Status != Pass {
		t.Errorf("android phone: got %s %+v, want pass", r.Status, r.Results)
	}
	if s, _ := status(r, "cgroups"); s != "" {
		t.Errorf("android phone got a cgroups check (%s); the rootless agent does not use cgroups", s)
	}
	o.TmpExec = false
	f.OS.Android.SDK = 23
	r = Evaluate(Spec{OS: "android", Role: "agent"}, f, o, now)
	for _, id := range []string{"android-exec", "android-sdk"} {
		if s, _ := status(r, id); s != Fail {
			t.Errorf("%s: got %s, want fail", id, s)
		}
	}
}

// Android's Linux terminal VM is behind its phone: other phones reach it
// only over a tailnet.
func TestEvaluateAndroidTerminal(t *testing.T) {
	f, o := goodPhone()
	f.OS = facts.OS{ID: "debian", Version: "12", AndroidTerminal: true}
	f.Kernel = "6.1.0-34-avf-arm64"
	for _, tt := range []struct {
		name string
		spec Spec
		want Status
	}{
		{"in a farm, no tailnet", Spec{Role: "agent", Peers: 2}, Fail},
		{"in a farm on a tailnet", Spec{Role: "agent", Peers: 2, Tailnet: true}, Pass},
		{"a one-phone cluster", Spec{Role: "server"}, Pass},
	} {
		r := Evaluate(tt.spec, f, o, now)
		if s, msg := status(r, "android-terminal-network"); s != tt.want {
			t.Errorf("%s: android-terminal-network %s (%s), want %s", tt.name, s, msg, tt.want)
		}
		if s, msg := status(r, "android-terminal"); s != Pass || !strings.Contains(msg, "closing the app stops the VM") {
			t.Errorf("%s: android-terminal %s %q", tt.name, s, msg)
		}
	}
	// Any other Linux phone gets neither check.
	f.OS.AndroidTerminal = false
	if s, _ := status(Evaluate(Spec{Role: "agent", Peers: 2}, f, o, now), "android-terminal-network"); s != "" {
		t.Errorf("a Debian phone got the Android terminal check (%s)", s)
	}
}

func TestParseObservation(t *testing.T) {
	out := "time.unix=1795000000\nswap.devices=0\nkeys.root_maxkeys=1000000\nlisten.tcp=0016 1A0B 0016 \nlisten.udp=2118 \nflannel.link=1\n" +
		"route=eth0 0000630A 00FFFFFF\noom.lower=0\nk3s.installed=1\ncni.dir=/usr/local/bin\ncni.plugins= bridge host-local\n" +
		"pause.image=rancher/mirrored-pause:3.6\npause.error=failed to get sandbox image: 401\n" +
		"kconfig.path=/proc/config.gz\nkconfig.begin\nQ09ORklHX1ZFVEg9eQo=\nkconfig.end\nend=1\n"
	o, err := parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.ListenTCP; len(got) != 2 || got[0] != 22 || got[1] != 6667 {
		t.Errorf("tcp ports: got %v, want [22 6667]", got)
	}
	if got := o.ListenUDP; len(got) != 1 || got[0] != 8472 {
		t.Errorf("udp ports: got %v, want [8472]", got)
	}
	if !o.FlannelLink {
		t.Error("flannel.link=1 did not set FlannelLink")
	}
	if len(o.Routes) != 1 || o.Routes[0].Dest != "10.99.0.0" || o.Routes[0].Netmask != "255.255.255.0" {
		t.Errorf("routes: got %+v, want 10.99.0.0/255.255.255.0", o.Routes)
	}
	pods := Observation{OOMKnown: true, K3sInstalled: true, CNIDir: "/usr/local/bin", CNIPlugins: []string{"bridge", "host-local"},
		PauseImage: "rancher/mirrored-pause:3.6", PauseError: "failed to get sandbox image: 401"}
	if o.OOMKnown != pods.OOMKnown || o.OOMLower || o.K3sInstalled != pods.K3sInstalled || o.CNIDir != pods.CNIDir ||
		strings.Join(o.CNIPlugins, " ") != "bridge host-local" || o.PauseImage != pods.PauseImage || o.PauseError != pods.PauseError || o.PausePresent {
		t.Errorf("pod blockers: got %+v", o)
	}
	if string(o.KernelConfig) != "CONFIG_VETH=y\n" {
		t.Errorf("kernel config: got %q", o.KernelConfig)
	}
	if _, err := parse("time.unix=1\n"); err == nil {
		t.Error("truncated output: got no error")
	}
}
