package facts

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want Facts
	}{
		{
			name: "postmarketOS phone",
			out: `hostname=dumpling
kernel=6.1.10-postmarketos-qcom-msm8998
machine=aarch64
os.id=postmarketos
os.version=v24.06
os.name=postmarketOS v24.06
init.comm=init
init.openrc=1
cpus=8
mem.total.kb=5741120
mem.available.kb=4000000
swap.total.kb=0
disk.path=/var/lib
disk.free.kb=50000000
cgroup.version=2
cgroup.controllers=cpuset cpu io memory pids
nft.version=nftables v1.0.9 (Old Doc Yak #3)
iptables.version=iptables v1.8.10 (nf_tables)
k3s.version=k3s version v1.32.0+k3s1 (cca8faca)
k3s.service=k3s
k3s.active=active
battery.capacity=87
battery.status=Charging
battery.limit.file=/sys/class/power_supply/battery/charge_control_end_threshold
battery.limit=80
power.external=1
thermal.max.millicelsius=41500
thermal.throttled=thermal-cpufreq-0:3/10 thermal-devfreq-0:1/4
uptime.seconds=86412.57
end=1
`,
			want: Facts{
				Hostname: "dumpling", Kernel: "6.1.10-postmarketos-qcom-msm8998", Machine: "aarch64", Arch: "arm64",
				OS: OS{ID: "postmarketos", Version: "v24.06", Name: "postmarketOS v24.06"}, Init: "openrc", CPUs: 8,
				Memory:   Memory{Total: 5741120 * 1024, Available: 4000000 * 1024},
				Disk:     Disk{Path: "/var/lib", Free: 50000000 * 1024},
				Cgroup:   Cgroup{Version: 2, Controllers: []string{"cpuset", "cpu", "io", "memory", "pids"}},
				Firewall: Firewall{NftVersion: "1.0.9", IptablesVersion: "1.8.10", IptablesMode: "nf_tables"},
				K3s:      K3s{Version: "v1.32.0+k3s1", Service: "k3s", Active: true},
				Battery: &Battery{CapacityPercent: 87, Status: "Charging", External: true,
					ChargeLimitFile: "/sys/class/power_supply/battery/charge_control_end_threshold", ChargeLimit: 80}, ThermalMaxC: 41.5, UptimeSeconds: 86412,
				Throttled: []string{"thermal-cpufreq-0:3/10", "thermal-devfreq-0:1/4"},
			},
		},
		{
			name: "systemd laptop with legacy iptables",
			out:  "machine=x86_64\nos.id=debian\ninit.comm=systemd\ninit.systemd=1\ninit.openrc=1\niptables.version=iptables v1.8.7 (legacy)\ncgroup.version=1\nend=1\n",
			want: Facts{Machine: "x86_64", Arch: "amd64", OS: OS{ID: "debian"}, Init: "systemd", Cgroup: Cgroup{Version: 1},
				Firewall: Firewall{IptablesVersion: "1.8.7", IptablesMode: "legacy"}},
		},
		{
			// Android 16's Linux terminal on a Pixel: Debian 12 in a VM,
			// Debian's kernel in its avf flavour, the port forwarder.
			name: "android terminal",
			out:  "hostname=localhost\nkernel=6.1.0-34-avf-arm64\nmachine=aarch64\nos.avf=kernel\nos.avf=forwarder\nos.id=debian\nos.version=12\nos.name=Debian GNU/Linux 12 (bookworm)\ninit.comm=systemd\ninit.systemd=1\ncgroup.version=2\nend=1\n",
			want: Facts{Hostname: "localhost", Kernel: "6.1.0-34-avf-arm64", Machine: "aarch64", Arch: "arm64", Init: "systemd", Cgroup: Cgroup{Version: 2},
				OS: OS{ID: "debian", Version: "12", Name: "Debian GNU/Linux 12 (bookworm)", AndroidTerminal: true}},
		},
		{
			name: "stock android",
			out:  "machine=armv8l\ninit.comm=init\nandroid.release=9\nandroid.sdk=28\nandroid.abi=armeabi-v7a\nandroid.model=Nexus 5X\nend=1\n",
			want: Facts{Machine: "armv8l", Arch: "arm", Init: "android",
				OS: OS{ID: "android", Version: "9", Name: "Android 9", Android: &Android{Release: "9", SDK: 28, ABI: "armeabi-v7a", Model: "Nexus 5X"}}},
		},
		{
			name: "rooted android",
			out:  "machine=aarch64\ninit.comm=init\nandroid.release=14\nandroid.sdk=34\nandroid.abi=arm64-v8a\nandroid.su=1\nend=1\n",
			want: Facts{Machine: "aarch64", Arch: "arm64", Init: "android",
				OS: OS{ID: "android", Version: "14", Name: "Android 14", Android: &Android{Release: "14", SDK: 34, ABI: "arm64-v8a", Rooted: true}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.out)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseTruncated(t *testing.T) {
	_, err := Parse("hostname=x\nkernel=6.1\n")
	if err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("got %v, want an error saying the output is incomplete", err)
	}
}
