package kernelcfg_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/phonefarm/phonefarm/kernelcfg"
)

func profile(t *testing.T, name string) kernelcfg.Profile {
	t.Helper()
	ps, err := kernelcfg.LookupProfiles(name)
	if err != nil {
		t.Fatal(err)
	}
	return ps[0]
}

// TestK3sProfile pins the k3s profile to check-config.sh's lists.
func TestK3sProfile(t *testing.T) {
	p := profile(t, "k3s")
	type gated struct {
		ID       string
		Severity string
		Versions string
	}
	var got []gated
	for _, r := range p.Rules {
		if strings.TrimSpace(r.Reason) == "" || strings.Contains(r.Reason, "\n") {
			t.Errorf("%s: got reason %q, want one non-empty line", r.ID(), r.Reason)
		}
		got = append(got, gated{r.ID(), r.Severity.String(), r.Versions.String()})
	}
	var want []gated
	for _, o := range strings.Fields(`NAMESPACES NET_NS PID_NS IPC_NS UTS_NS CGROUPS CGROUP_PIDS CGROUP_CPUACCT
		CGROUP_DEVICE CGROUP_FREEZER CGROUP_SCHED CPUSETS MEMCG SECCOMP KEYS VETH BRIDGE BRIDGE_NETFILTER
		IP_NF_FILTER IP_NF_TARGET_MASQUERADE IP_NF_TARGET_REJECT NETFILTER_XT_MATCH_ADDRTYPE
		NETFILTER_XT_MATCH_CONNTRACK NETFILTER_XT_MATCH_IPVS NETFILTER_XT_MATCH_COMMENT
		NETFILTER_XT_MATCH_MULTIPORT NETFILTER_XT_MATCH_STATISTIC IP_NF_NAT NF_NAT POSIX_MQUEUE`) {
		want = append(want, gated{"CONFIG_" + o, "required", "any"})
	}
	want = append(want,
		gated{"CONFIG_DEVPTS_MULTIPLE_INSTANCES", "required", "< 4.8"},
		gated{"CONFIG_USER_NS", "recommended", "any"},
		gated{"CONFIG_MEMCG_KMEM", "recommended", "< 4.6"},
		gated{"CONFIG_RESOURCE_COUNTERS", "recommended", "< 3.19"},
	)
	for _, o := range strings.Fields("BLK_CGROUP BLK_DEV_THROTTLING CGROUP_PERF CGROUP_HUGETLB NET_CLS_CGROUP") {
		want = append(want, gated{"CONFIG_" + o, "recommended", "any"})
	}
	want = append(want,
		gated{"CONFIG_NETPRIO_CGROUP", "recommended", "< 3.14"},
		gated{"CONFIG_CGROUP_NET_PRIO", "recommended", ">= 3.14"},
	)
	for _, o := range strings.Fields(`CFS_BANDWIDTH FAIR_GROUP_SCHED RT_GROUP_SCHED IP_NF_TARGET_REDIRECT IP_SET
		IP_VS IP_VS_NFCT IP_VS_PROTO_TCP IP_VS_PROTO_UDP IP_VS_RR EXT4_FS EXT4_FS_POSIX_ACL EXT4_FS_SECURITY
		VXLAN CRYPTO CRYPTO_AEAD CRYPTO_GCM CRYPTO_SEQIV CRYPTO_GHASH XFRM XFRM_USER XFRM_ALGO INET_ESP
		INET_XFRM_MODE_TRANSPORT OVERLAY_FS`) {
		want = append(want, gated{"CONFIG_" + o, "recommended", "any"})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("k3s profile differs from check-config.sh (-want +got):\n%s", diff)
	}
}

func TestProfilesWellFormed(t *testing.T) {
	names := map[string]bool{}
	for _, p := range kernelcfg.Profiles() {
		names[p.Name] = true
		seen := map[string]bool{}
		for _, r := range p.Rules {
			key := r.ID() + " " + r.Versions.String() + " " + strings.Join(r.Arches, ",")
			if seen[key] {
				t.Errorf("%s: rule %s listed twice", p.Name, key)
			}
			seen[key] = true
			if len(r.Options) == 0 || r.Reason == "" || strings.Contains(r.Reason, "\n") {
				t.Errorf("%s: rule %+v: want options and a one-line reason", p.Name, r)
			}
			for _, o := range r.Options {
				if strings.HasPrefix(o, "CONFIG_") || strings.ToUpper(o) != o {
					t.Errorf("%s: option %q: want an upper-case name without CONFIG_", p.Name, o)
				}
			}
		}
	}
	if diff := cmp.Diff(kernelcfg.ProfileNames(), keys(names)); diff != "" {
		t.Errorf("profile names differ (-want +got):\n%s", diff)
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for _, n := range kernelcfg.ProfileNames() {
		if m[n] {
			out = append(out, n)
		}
	}
	return out
}

func TestLookupProfiles(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "k3s", want: []string{"k3s"}},
		{in: "k3s,nftables", want: []string{"k3s", "nftables"}},
		{in: " K3S , k3s,tailscale", want: []string{"k3s", "tailscale"}},
		{in: "all", want: kernelcfg.ProfileNames()},
		{in: "k3s,docker", wantErr: `unknown profile "docker"`},
		{in: ",", wantErr: "no profile given"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ps, err := kernelcfg.LookupProfiles(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, p.Name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("profiles differ (-want +got):\n%s", diff)
			}
		})
	}
}

// missing lists the IDs of the unsatisfied rules of a report.
func missing(rep kernelcfg.Report) (required, recommended []string) {
	for _, r := range rep.MissingRequired() {
		required = append(required, r.ID)
	}
	for _, r := range rep.MissingRecommended() {
		recommended = append(recommended, r.ID)
	}
	return required, recommended
}

func TestCheckVersionGates(t *testing.T) {
	k3s := profile(t, "k3s")
	tests := []struct {
		name        string
		version     string
		wantGated   []string // version-gated rules that apply
		wantVerdict kernelcfg.Verdict
	}{
		{"3.10", "3.10.108", []string{"CONFIG_DEVPTS_MULTIPLE_INSTANCES", "CONFIG_MEMCG_KMEM", "CONFIG_RESOURCE_COUNTERS", "CONFIG_NETPRIO_CGROUP"}, kernelcfg.Fail},
		{"3.18", "3.18.140", []string{"CONFIG_DEVPTS_MULTIPLE_INSTANCES", "CONFIG_MEMCG_KMEM", "CONFIG_RESOURCE_COUNTERS", "CONFIG_CGROUP_NET_PRIO"}, kernelcfg.Fail},
		{"4.4", "4.4.177", []string{"CONFIG_DEVPTS_MULTIPLE_INSTANCES", "CONFIG_MEMCG_KMEM", "CONFIG_CGROUP_NET_PRIO"}, kernelcfg.Fail},
		{"4.7", "4.7.10", []string{"CONFIG_DEVPTS_MULTIPLE_INSTANCES", "CONFIG_CGROUP_NET_PRIO"}, kernelcfg.Fail},
		{"4.8-rc1", "4.8.0-rc1", []string{"CONFIG_CGROUP_NET_PRIO"}, kernelcfg.Warn},
		{"6.6", "6.6.1", []string{"CONFIG_CGROUP_NET_PRIO"}, kernelcfg.Warn},
	}
	gatedIDs := map[string]bool{}
	for _, r := range k3s.Rules {
		if !r.Versions.Unbounded() {
			gatedIDs[r.ID()] = true
		}
	}
	// Every unconditional required option, none of the gated ones.
	var b strings.Builder
	b.WriteString("# Linux/arm64 VERSION Kernel Configuration\n")
	for _, r := range k3s.Rules {
		if r.Severity == kernelcfg.Required && r.Versions.Unbounded() {
			b.WriteString("CONFIG_" + r.Options[0] + "=y\n")
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := strings.Replace(b.String(), "VERSION", tt.version, 1)
			cfg, err := kernelcfg.Parse([]byte(text), kernelcfg.ParseOptions{Name: tt.name})
			if err != nil {
				t.Fatal(err)
			}
			rep := kernelcfg.Check(cfg, k3s)
			var gated []string
			for _, r := range rep.Results {
				if gatedIDs[r.ID] {
					gated = append(gated, r.ID)
				}
			}
			if diff := cmp.Diff(tt.wantGated, gated); diff != "" {
				t.Errorf("gated rules differ (-want +got):\n%s", diff)
			}
			if got := rep.Verdict(); got != tt.wantVerdict {
				t.Errorf("got verdict %s, want %s", got, tt.wantVerdict)
			}
		})
	}
}

func TestCheckStatesAndMerging(t *testing.T) {
	cfg, err := kernelcfg.Parse([]byte(`# Linux/x86_64 4.19.1 Kernel Configuration
CONFIG_X86_64=y
CONFIG_VXLAN=m
# CONFIG_OVERLAY_FS is not set
CONFIG_TUN=y
CONFIG_NFT_CHAIN_NAT=m
CONFIG_IP_MULTIPLE_TABLES=n
`), kernelcfg.ParseOptions{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := kernelcfg.LookupProfiles("k3s,containers,nftables,tailscale")
	if err != nil {
		t.Fatal(err)
	}
	rep := kernelcfg.Check(cfg, ps...)
	byID := map[string]kernelcfg.Result{}
	for _, r := range rep.Results {
		if _, dup := byID[r.ID]; dup {
			t.Errorf("rule %s reported twice", r.ID)
		}
		byID[r.ID] = r
	}
	tests := []struct {
		id           string
		wantState    kernelcfg.State
		wantSeverity kernelcfg.Severity
		wantProfiles []string
		wantLine     int
	}{
		{"CONFIG_VXLAN", kernelcfg.StateModule, kernelcfg.Required, []string{"k3s", "containers"}, 3},
		{"CONFIG_OVERLAY_FS", kernelcfg.StateDisabled, kernelcfg.Required, []string{"k3s", "containers"}, 4},
		{"CONFIG_TUN", kernelcfg.StateBuiltin, kernelcfg.Required, []string{"tailscale"}, 5},
		{"CONFIG_NFT_CHAIN_NAT_IPV4|CONFIG_NFT_CHAIN_NAT", kernelcfg.StateModule, kernelcfg.Required, []string{"nftables"}, 6},
		{"CONFIG_IP_MULTIPLE_TABLES", kernelcfg.StateDisabled, kernelcfg.Recommended, []string{"tailscale"}, 7},
		{"CONFIG_NAMESPACES", kernelcfg.StateAbsent, kernelcfg.Required, []string{"k3s", "containers"}, 0},
		{"CONFIG_HUGETLB_PAGE", kernelcfg.StateAbsent, kernelcfg.Required, []string{"containers"}, 0}, // x86_64 only
	}
	for _, tt := range tests {
		r, ok := byID[tt.id]
		if !ok {
			t.Errorf("%s: not checked, want it checked", tt.id)
			continue
		}
		if r.State != tt.wantState || r.Severity != tt.wantSeverity || r.Line != tt.wantLine {
			t.Errorf("%s: got %s/%s line %d, want %s/%s line %d", tt.id, r.State, r.Severity, r.Line, tt.wantState, tt.wantSeverity, tt.wantLine)
		}
		if diff := cmp.Diff(tt.wantProfiles, r.Profiles); diff != "" {
			t.Errorf("%s: profiles differ (-want +got):\n%s", tt.id, diff)
		}
	}
	// NF_NAT_IPV4 applies from 3.7 to before 5.0: checked at 4.19.
	if _, ok := byID["CONFIG_NF_NAT_IPV4"]; !ok {
		t.Errorf("CONFIG_NF_NAT_IPV4 not checked on 4.19, want it checked")
	}
	if _, ok := byID["CONFIG_MEMCG_SWAP"]; !ok {
		t.Errorf("CONFIG_MEMCG_SWAP not checked on 4.19, want it checked")
	}

	// The same config on arm64 skips the x86-only rules.
	cfg.Arch = "arm64"
	for _, r := range kernelcfg.Check(cfg, ps...).Results {
		if r.ID == "CONFIG_HUGETLB_PAGE" {
			t.Errorf("got CONFIG_HUGETLB_PAGE checked on arm64, want it x86-only")
		}
	}
}

func TestCheckUnknownVersion(t *testing.T) {
	cfg, err := kernelcfg.Parse([]byte("CONFIG_NAMESPACES=y\n"), kernelcfg.ParseOptions{Name: "bare"})
	if err != nil {
		t.Fatal(err)
	}
	rep := kernelcfg.Check(cfg, profile(t, "k3s"))
	var ids []string
	for _, u := range rep.Unevaluated {
		ids = append(ids, u.ID+" "+u.Why)
	}
	want := []string{
		"CONFIG_DEVPTS_MULTIPLE_INSTANCES kernel version unknown",
		"CONFIG_MEMCG_KMEM kernel version unknown",
		"CONFIG_RESOURCE_COUNTERS kernel version unknown",
		"CONFIG_NETPRIO_CGROUP kernel version unknown",
		"CONFIG_CGROUP_NET_PRIO kernel version unknown",
	}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("unevaluated rules differ (-want +got):\n%s", diff)
	}
	req, _ := missing(rep)
	if len(req) != 29 {
		t.Errorf("got %d required missing, want 29 (all unconditional ones but NAMESPACES)", len(req))
	}
}

// TestCheckTestdata pins the verdicts of the configs copied into testdata,
// so the core tests do not depend on the shared configs.
func TestCheckTestdata(t *testing.T) {
	tests := []struct {
		file        string
		wantVersion string
		wantVerdict kernelcfg.Verdict
		wantMissing []string
	}{
		{"fairphone-fp1.config", "3.4.5", kernelcfg.Fail, strings.Fields(`CONFIG_NAMESPACES CONFIG_NET_NS CONFIG_PID_NS CONFIG_IPC_NS
			CONFIG_UTS_NS CONFIG_CGROUP_PIDS CONFIG_CGROUP_DEVICE CONFIG_CGROUP_FREEZER CONFIG_CPUSETS CONFIG_MEMCG
			CONFIG_SECCOMP CONFIG_KEYS CONFIG_VETH CONFIG_NETFILTER_XT_MATCH_ADDRTYPE CONFIG_NETFILTER_XT_MATCH_CONNTRACK
			CONFIG_NETFILTER_XT_MATCH_IPVS CONFIG_NETFILTER_XT_MATCH_COMMENT CONFIG_IP_NF_NAT CONFIG_POSIX_MQUEUE`)},
		{"samsung-m20lte.config", "4.4.177", kernelcfg.Fail, strings.Fields(`CONFIG_CGROUP_PIDS CONFIG_CGROUP_DEVICE CONFIG_VETH
			CONFIG_BRIDGE CONFIG_BRIDGE_NETFILTER CONFIG_NETFILTER_XT_MATCH_ADDRTYPE CONFIG_NETFILTER_XT_MATCH_IPVS
			CONFIG_NETFILTER_XT_MATCH_MULTIPORT CONFIG_POSIX_MQUEUE`)},
		{"postmarketos-stericsson.config", "6.18.2", kernelcfg.Fail, []string{"CONFIG_NETFILTER_XT_MATCH_MULTIPORT", "CONFIG_NETFILTER_XT_MATCH_STATISTIC"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg := loadTestdata(t, tt.file)
			rep := kernelcfg.Check(cfg, profile(t, "k3s"))
			if rep.Version != tt.wantVersion {
				t.Errorf("got version %q, want %q", rep.Version, tt.wantVersion)
			}
			if got := rep.Verdict(); got != tt.wantVerdict {
				t.Errorf("got verdict %s, want %s", got, tt.wantVerdict)
			}
			req, _ := missing(rep)
			if diff := cmp.Diff(tt.wantMissing, req); diff != "" {
				t.Errorf("missing required options differ (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLeaf keeps kernelcfg a leaf package: it imports nothing of phonefarm.
func TestLeaf(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("go tool not on PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/phonefarm/phonefarm/") && dep != "github.com/phonefarm/phonefarm/kernelcfg" {
			t.Errorf("kernelcfg imports %s; want a leaf package", dep)
		}
		if !strings.Contains(strings.SplitN(dep, "/", 2)[0], ".") {
			continue // standard library
		}
		if !strings.HasPrefix(dep, "github.com/phonefarm/phonefarm/") {
			t.Errorf("kernelcfg imports %s; want the standard library only", dep)
		}
	}
}
