package provision

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/phonefarm/phonefarm/facts"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport/transporttest"
)

var update = flag.Bool("update", false, "rewrite golden files")

const testFarm = `apiVersion: phonefarm.dev/v1alpha1
kind: Farm
name: drawer
k3s:
  version: v1.32.0+k3s1
  disable: [traefik]
phones:
  - name: enchilada
    os: postmarketos
    role: server
    ssh: {host: 10.0.0.11}
    labels: {zone: kitchen}
  - name: fajita
    os: postmarketos
    role: agent
    ssh: {host: 10.0.0.12}
    taints: ["slow=yes:PreferNoSchedule"]
    k3sArgs: [--snapshotter=native]
  - name: thinkpad
    os: linux
    role: agent
    ssh: {host: 10.0.0.13}
  - name: pixel
    os: android
    role: agent
    adb: {serial: X}
  - name: spare
    os: postmarketos
    ssh: {host: 10.0.0.14}
`

func farm(t *testing.T) *inventory.Farm {
	t.Helper()
	f, err := inventory.Parse("farm.yaml", []byte(testFarm))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

var art = Artifact{Arch: "arm64", Version: "v1.32.0+k3s1", Path: "/cache/k3s-arm64", SHA256: strings.Repeat("a", 64), Size: 60 << 20}

// freshInput is the farm with nothing installed yet.
func freshInput(t *testing.T) Input {
	f := farm(t)
	in := Input{Farm: f, Artifacts: map[string]Artifact{"arm64": art}}
	for i := range f.Phones {
		p := &f.Phones[i]
		fa := facts.Facts{Arch: "arm64", Init: "openrc", Firewall: facts.Firewall{NftVersion: "1.0.9"}}
		st := State{Files: map[string]File{}, Enabled: map[string]bool{}, NftDir: true, NftService: true}
		if p.SSH != nil {
			st.Addrs = []Addr{{Iface: "wlan0", IP: p.SSH.Host}}
		}
		if p.Name == "thinkpad" {
			fa = facts.Facts{Arch: "arm64", Init: "systemd", Firewall: facts.Firewall{IptablesVersion: "1.8.9", IptablesMode: "nf_tables"}}
			st.NftDir = false
		}
		if p.OS == inventory.OSAndroid {
			fa = facts.Facts{Arch: "arm64", Init: "android", OS: facts.OS{ID: "android"}}
		}
		in.Phones = append(in.Phones, PhoneInput{Phone: p, Facts: fa, State: st})
	}
	return in
}

// converge returns in as it is after a successful apply of plan: files as
// rendered, k3s running since after they were written, nodes Ready with
// phonefarm's labels.
func converge(t *testing.T, in Input) Input {
	plan := Compute(in)
	in.TokenSHA256 = strings.Repeat("b", 64)
	in.Cluster = &ClusterFacts{Nodes: map[string]NodeFacts{}}
	for i, pi := range in.Phones {
		var pp *PhonePlan
		for j := range plan.Phones {
			if plan.Phones[j].Phone == pi.Phone.Name {
				pp = &plan.Phones[j]
			}
		}
		if pp == nil || pp.Blocked != nil {
			continue
		}
		st := pi.State
		st.Files = maps.Clone(st.Files)
		st.Enabled = maps.Clone(st.Enabled)
		for _, s := range pp.Steps {
			switch s := s.(type) {
			case *fileStep:
				st.Files[s.path] = File{SHA256: sha(s.content), Mtime: 100}
			case *nftStep:
				st.Files[NftFragmentPath] = File{SHA256: sha(s.content), Mtime: 100}
				st.NftLoaded = true
			case *binaryStep:
				st.Files[BinaryPath] = File{SHA256: s.art.SHA256, Mtime: 100}
			case *imageStep:
				st.Files[s.img.PhonePath()] = File{SHA256: s.img.SHA256, Mtime: 100}
				st.AirgapOwned = append(slices.Clip(st.AirgapOwned), s.img.Name)
			case *removeStep:
				delete(st.Files, s.path)
				delete(st.Managed, s.path)
			case *tokenStep:
				st.Files[TokenPath] = File{SHA256: in.TokenSHA256, Mtime: 100}
			case *restartStep:
				if s.service == HealthService {
					st.HealthRunning = true
				} else {
					st.K3sStarted = 200
				}
				st.Enabled[s.service] = true
			case *uploadStep:
				st.Files[s.path] = File{SHA256: s.art.SHA256, Mtime: 100}
			case *healthCredsStep:
				st.Files[HealthKubeconfigPath] = File{SHA256: strings.Repeat("c", 64), Mtime: 100}
			case *tsBinaryStep:
				st.Files[TailscaledPath] = File{SHA256: s.art.Tailscaled.SHA256, Mtime: 100}
				st.Files[TailscalePath] = File{SHA256: s.art.Tailscale.SHA256, Mtime: 100}
			case *tsStartStep:
				st.Tailscale.Running = true
				st.Enabled[s.init.TailscaledName()] = true
			case *chargeLimitStep:
				b := *in.Phones[i].Facts.Battery
				b.ChargeLimit = s.limit
				in.Phones[i].Facts.Battery = &b
			}
		}
		in.Phones[i].State = st
		in.Phones[i].Facts.K3s.Version = art.Version
		p := pi.Phone
		in.Cluster.Nodes[p.Name] = NodeFacts{Ready: true, Labels: p.Labels, ManagedLabels: sortedKeys(p.Labels), Taints: p.Taints, ManagedTaints: p.Taints}
	}
	return in
}

func titles(pp PhonePlan) []string {
	var out []string
	for _, s := range pp.Steps {
		out = append(out, s.Title())
	}
	return out
}

func phonePlan(t *testing.T, p *Plan, name string) PhonePlan {
	t.Helper()
	for _, pp := range p.Phones {
		if pp.Phone == name {
			return pp
		}
	}
	t.Fatalf("no plan for %s", name)
	return PhonePlan{}
}

func TestPlanFresh(t *testing.T) {
	plan := Compute(freshInput(t))
	var order []string
	for _, pp := range plan.Phones {
		order = append(order, pp.Phone)
	}
	if diff := cmp.Diff([]string{"enchilada", "fajita", "thinkpad", "pixel"}, order); diff != "" {
		t.Errorf("apply order (-want +got), spare has no role:\n%s", diff)
	}
	if plan.ServerURL != "https://10.0.0.11:6443" {
		t.Errorf("server URL: got %q", plan.ServerURL)
	}
	want := map[string][]string{
		"enchilada": {
			"open the firewall for k3s " + NftFragmentPath, "upload k3s v1.32.0+k3s1 (arm64, 60 MB)",
			"write k3s config " + ConfigPath, "write openrc service k3s /etc/init.d/k3s", "restart k3s",
			"wait for node enchilada to be Ready", "set labels and taints of node enchilada",
		},
		"fajita": {
			"open the firewall for k3s " + NftFragmentPath, "upload k3s v1.32.0+k3s1 (arm64, 60 MB)",
			"write k3s config " + ConfigPath, "write openrc service k3s-agent /etc/init.d/k3s-agent", "write join token " + TokenPath, "restart k3s-agent",
			"wait for node fajita to be Ready", "set labels and taints of node fajita",
		},
		"thinkpad": {
			"upload k3s v1.32.0+k3s1 (arm64, 60 MB)", "write k3s config " + ConfigPath,
			"write systemd service k3s-agent /etc/systemd/system/k3s-agent.service", "write join token " + TokenPath, "restart k3s-agent", "wait for node thinkpad to be Ready",
		},
	}
	for name, w := range want {
		if diff := cmp.Diff(w, titles(phonePlan(t, plan, name))); diff != "" {
			t.Errorf("%s steps (-want +got):\n%s", name, diff)
		}
	}
	if pp := phonePlan(t, plan, "thinkpad"); len(pp.Notes) != 1 || !strings.Contains(pp.Notes[0], "no nftables") {
		t.Errorf("thinkpad notes: got %q, want a note that phonefarm does not manage its firewall", pp.Notes)
	}
	if pp := phonePlan(t, plan, "pixel"); !strings.Contains(errText(pp.Blocked), "no phonefarm-agent for arm64: set android.agent.arm64") {
		t.Errorf("pixel: got blocked %q, want the missing agent binary named", pp.Blocked)
	}
}

func TestPlanConvergedHasNoChanges(t *testing.T) {
	in := converge(t, freshInput(t))
	plan := Compute(in)
	for _, pp := range plan.Phones {
		if len(pp.Steps) != 0 {
			t.Errorf("%s: got steps %q, want none on a converged farm", pp.Phone, titles(pp))
		}
	}
}

func TestPlanChanges(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(in *Input)
		phone string
		want  []string
	}{
		{
			name:  "a label changes",
			edit:  func(in *Input) { in.Farm.Phones[0].Labels = map[string]string{"zone": "hall"} },
			phone: "enchilada", want: []string{"set labels and taints of node enchilada"},
		},
		{
			name:  "a label is removed",
			edit:  func(in *Input) { in.Farm.Phones[0].Labels = nil },
			phone: "enchilada", want: []string{"set labels and taints of node enchilada"},
		},
		{
			name:  "the config was edited on the phone",
			edit:  func(in *Input) { in.Phones[1].State.Files[ConfigPath] = File{SHA256: "edited", Mtime: 300} },
			phone: "fajita", want: []string{"write k3s config " + ConfigPath, "restart k3s-agent", "wait for node fajita to be Ready"},
		},
		{
			name: "apply was cut off after writing, before restarting",
			edit: func(in *Input) {
				f := in.Phones[1].State.Files[ConfigPath]
				f.Mtime = 300
				in.Phones[1].State.Files[ConfigPath] = f
			},
			phone: "fajita", want: []string{"restart k3s-agent", "wait for node fajita to be Ready"},
		},
		{
			name: "k3s started within a second of writing its files",
			edit: func(in *Input) {
				f := in.Phones[1].State.Files[ConfigPath]
				f.Mtime = 201
				in.Phones[1].State.Files[ConfigPath] = f
			},
			phone: "fajita", want: nil,
		},
		{
			name:  "k3s stopped",
			edit:  func(in *Input) { in.Phones[2].State.K3sStarted = 0 },
			phone: "thinkpad", want: []string{"restart k3s-agent", "wait for node thinkpad to be Ready"},
		},
		{
			name:  "the firewall was reloaded without the fragment",
			edit:  func(in *Input) { in.Phones[0].State.NftLoaded = false },
			phone: "enchilada", want: []string{"open the firewall for k3s " + NftFragmentPath},
		},
		{
			name: "node NotReady",
			edit: func(in *Input) {
				n := in.Cluster.Nodes["fajita"]
				n.Ready = false
				in.Cluster.Nodes["fajita"] = n
			},
			phone: "fajita", want: []string{"wait for node fajita to be Ready"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := converge(t, freshInput(t))
			tt.edit(&in)
			plan := Compute(in)
			if diff := cmp.Diff(tt.want, titles(phonePlan(t, plan, tt.phone))); diff != "" {
				t.Errorf("%s steps (-want +got):\n%s", tt.phone, diff)
			}
			for _, pp := range plan.Phones {
				if pp.Phone != tt.phone && len(pp.Steps) != 0 {
					t.Errorf("%s: got steps %q, want none (only %s changed)", pp.Phone, titles(pp), tt.phone)
				}
			}
		})
	}
}

func TestPlanUpgradeRolls(t *testing.T) {
	in := converge(t, freshInput(t))
	newArt := art
	newArt.Version, newArt.SHA256 = "v1.33.1+k3s1", strings.Repeat("c", 64)
	in.Artifacts["arm64"] = newArt
	plan := Compute(in)
	if !plan.Rolling {
		t.Error("upgrade: got Rolling false, want true")
	}
	got := phonePlan(t, plan, "fajita")
	if got.Steps[0].Why() != "installed v1.32.0+k3s1, want v1.33.1+k3s1" {
		t.Errorf("upgrade reason: got %q", got.Steps[0].Why())
	}
}

func TestPlanBlocked(t *testing.T) {
	tests := []struct {
		name, phone, want string
		kind              error
		edit              func(in *Input)
	}{
		{"unreachable", "fajita", "unreachable: dial: no route", ErrUnreachable, func(in *Input) { in.Phones[1].Err = errors.New("dial: no route") }},
		{"failed preflight", "fajita", "preflight failed: cgroups: none", ErrPreflight, func(in *Input) { in.Phones[1].Preflight = "cgroups: none" }},
		{"unsupported init", "fajita", `init system "runit" is not supported`, ErrBlocked, func(in *Input) { in.Phones[1].Facts.Init = "runit" }},
		{"no binary", "fajita", "no k3s binary for riscv64", ErrBlocked, func(in *Input) { in.Phones[1].Facts.Arch = "riscv64" }},
		{"first server down", "fajita", "the first server enchilada is not reachable", ErrBlocked, func(in *Input) { in.Phones[0].Err = errors.New("timeout") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := freshInput(t)
			tt.edit(&in)
			pp := phonePlan(t, Compute(in), tt.phone)
			if !strings.Contains(errText(pp.Blocked), tt.want) || len(pp.Steps) != 0 {
				t.Errorf("got blocked %q with %d steps, want %q and no steps", pp.Blocked, len(pp.Steps), tt.want)
			}
			if !errors.Is(pp.Blocked, ErrBlocked) || !errors.Is(pp.Blocked, tt.kind) {
				t.Errorf("blocked %v: want ErrBlocked and %v", pp.Blocked, tt.kind)
			}
			for _, other := range []error{ErrUnreachable, ErrPreflight} {
				if other != tt.kind && errors.Is(pp.Blocked, other) {
					t.Errorf("blocked %v: errors.Is(%v) is true", pp.Blocked, other)
				}
			}
		})
	}
}

func TestPlanTokenNeverInPlan(t *testing.T) {
	t.Setenv("PF_TEST_TOKEN", "very-secret-token")
	f := farm(t)
	f.K3s.Token = "env:PF_TEST_TOKEN"
	in := freshInput(t)
	in.Farm = f
	plan := Compute(in)
	for _, pp := range plan.Phones {
		for _, s := range pp.Steps {
			if strings.Contains(s.Title()+s.Why(), "very-secret") {
				t.Errorf("%s: step %q / %q reveals the token", pp.Phone, s.Title(), s.Why())
			}
			if fs, ok := s.(*fileStep); ok && strings.Contains(string(fs.content), "very-secret") {
				t.Errorf("%s: %s holds the token; it belongs only in the token file", pp.Phone, fs.path)
			}
		}
	}
	// The first server also reads the inventory's token from the file.
	if got := titles(phonePlan(t, plan, "enchilada")); !strings.Contains(strings.Join(got, "|"), "write join token") {
		t.Errorf("first server with an inventory token: got %q, want a token step", got)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

func TestRenderGolden(t *testing.T) {
	f := farm(t)
	golden(t, "config-first-server", renderConfig(f, &f.Phones[0], firstServer, "10.0.0.11", "wlan0", "", false, ""))
	golden(t, "config-agent", renderConfig(f, &f.Phones[1], agent, "10.0.0.12", "wlan0", "https://10.0.0.11:6443", true, ""))
	golden(t, "openrc-agent", renderOpenRC(agent, extraArgs(f, &f.Phones[1]), false))
	golden(t, "systemd-server", renderSystemd(firstServer, []string{"--kubelet-arg=eviction-hard=memory.available<100Mi", "--node-label=a b"}, false))
	tf := tailnetFarm(t)
	golden(t, "config-first-server-tailnet", renderConfig(tf, &tf.Phones[0], firstServer, "100.64.0.1", "tailscale0", "", false, "enchilada.farm.test."))
	golden(t, "openrc-agent-tailnet", renderOpenRC(agent, nil, true))
	golden(t, "systemd-agent-tailnet", renderSystemd(agent, nil, true))
	golden(t, "tailscaled-openrc", renderTailscaledOpenRC(TailscaledPath, tf.Tailscale.Env))
	golden(t, "tailscaled-systemd", renderTailscaledSystemd(packageTailscaled, tf.Tailscale.Env))
	golden(t, "nftables-server-tailnet", renderNftables(tf, firstServer))
	golden(t, "nftables-server", renderNftables(f, firstServer))
	golden(t, "nftables-agent", renderNftables(f, agent))
}

func TestVerifyInputChain(t *testing.T) {
	tests := []struct {
		file    string
		wantErr string
	}{
		{file: "nft-input-converged.json"},
		{file: "nft-input-without-fragment.json", wantErr: "not in the loaded input chain"},
		{file: "nft-input-drop-first.json", wantErr: "drops everything at rule"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			err = verifyInputChain(b)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func tailnetFarm(t *testing.T) *inventory.Farm {
	t.Helper()
	src := strings.Replace(testFarm, "phones:", `tailscale:
  loginServer: http://10.0.0.1:8081
  apiKey: env:PF_HEADSCALE_KEY
  env: {TS_DEBUG_USE_DERP_HTTP: "1"}
  binaries: {arm64: ./ts}
phones:`, 1)
	f, err := inventory.Parse("farm.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func tailnetInput(t *testing.T) Input {
	in := freshInput(t)
	in.Farm = tailnetFarm(t)
	for i := range in.Phones {
		in.Phones[i].Phone = &in.Farm.Phones[i]
	}
	in.Tailscale = map[string]TailscaleArtifact{"arm64": {
		Tailscale:  Artifact{Arch: "arm64", Path: "/ts/tailscale", SHA256: strings.Repeat("d", 64)},
		Tailscaled: Artifact{Arch: "arm64", Path: "/ts/tailscaled", SHA256: strings.Repeat("e", 64)},
	}}
	return in
}

func TestPlanTailnetFresh(t *testing.T) {
	plan := Compute(tailnetInput(t))
	if plan.ServerURL != "" {
		t.Errorf("server URL before the first server joined the tailnet: got %q, want it resolved during apply", plan.ServerURL)
	}
	want := []string{
		"open the firewall for k3s " + NftFragmentPath,
		"upload tailscale and tailscaled (arm64)",
		"write openrc service tailscale /etc/init.d/tailscale",
		"restart tailscaled",
		"join the tailnet at http://10.0.0.1:8081 as fajita",
		"upload k3s v1.32.0+k3s1 (arm64, 60 MB)",
		"write k3s config " + ConfigPath,
		"write openrc service k3s-agent /etc/init.d/k3s-agent",
		"write join token " + TokenPath,
		"restart k3s-agent",
		"wait for node fajita to be Ready",
		"set labels and taints of node fajita",
	}
	pp := phonePlan(t, plan, "fajita")
	if diff := cmp.Diff(want, titles(pp)); diff != "" {
		t.Errorf("fajita on a tailnet (-want +got):\n%s", diff)
	}
	// The config waits for the tailnet address, so it runs in stage order.
	if _, ok := pp.Steps[6].(*tailnetConfigStep); !ok {
		t.Errorf("config step: got %T, want *tailnetConfigStep", pp.Steps[6])
	}
	if got := titles(phonePlan(t, plan, "thinkpad")); !slices.Contains(got, "write systemd service tailscaled /etc/systemd/system/tailscaled.service") {
		t.Errorf("thinkpad (systemd): got %q, want tailscaled as a systemd unit", got)
	}
}

func TestPlanTailnetConverged(t *testing.T) {
	in := tailnetInput(t)
	for i := range in.Phones {
		p := in.Phones[i].Phone
		if p.SSH == nil {
			continue
		}
		in.Phones[i].State.Tailscale = TailscaleState{Installed: TailscalePath, Running: true, BackendState: "Running",
			HostName: p.Name, DNSName: p.Name + ".farm.test.", IPs: []string{fmt.Sprintf("100.64.0.%d", i+1)}, ControlURL: "http://10.0.0.1:8081"}
	}
	in = converge(t, in)
	plan := Compute(in)
	if plan.ServerURL != "https://100.64.0.1:6443" {
		t.Errorf("server URL: got %q, want the first server's tailnet address", plan.ServerURL)
	}
	for _, pp := range plan.Phones {
		if len(pp.Steps) != 0 {
			t.Errorf("%s on a converged tailnet farm: got %q, want no steps (no key minted, no re-login)", pp.Phone, titles(pp))
		}
	}
	// Logged in to another tailnet: only the join is redone.
	in.Phones[1].State.Tailscale.ControlURL = "https://controlplane.tailscale.com"
	pp := phonePlan(t, Compute(in), "fajita")
	if diff := cmp.Diff([]string{"join the tailnet at http://10.0.0.1:8081 as fajita"}, titles(pp)); diff != "" || pp.Steps[0].Why() != "logged in to https://controlplane.tailscale.com" {
		t.Errorf("fajita logged in elsewhere (-want +got), why %q:\n%s", pp.Steps[0].Why(), diff)
	} else if !pp.Steps[0].(*tsUpStep).forceReauth {
		t.Error("leaving another control server needs tailscale up --force-reauth")
	}
	// Known under another name on this tailnet: a plain re-login.
	in.Phones[1].State.Tailscale.ControlURL = "http://10.0.0.1:8081"
	in.Phones[1].State.Tailscale.HostName = "old-fajita"
	pp = phonePlan(t, Compute(in), "fajita")
	if len(pp.Steps) != 1 || pp.Steps[0].Why() != "logged in as old-fajita" || pp.Steps[0].(*tsUpStep).forceReauth {
		t.Errorf("fajita under another name: got %q, want one re-login without --force-reauth", titles(pp))
	}
	// On another tailnet and reached through it: moving it would cut
	// phonefarm off, so it is blocked with what to do instead.
	in.Phones[1].State.Tailscale.HostName = "fajita"
	in.Phones[1].State.Tailscale.ControlURL = "https://controlplane.tailscale.com"
	in.Phones[1].Phone.SSH.Host = in.Phones[1].State.Tailscale.IPs[0]
	pp = phonePlan(t, Compute(in), "fajita")
	if !strings.Contains(errText(pp.Blocked), "would cut phonefarm off") || !strings.Contains(errText(pp.Blocked), "tailscale logout") {
		t.Errorf("fajita reached over the tailnet it must leave: blocked %q, want the reason and what to do", pp.Blocked)
	}
}

func TestPlanServerAddressChange(t *testing.T) {
	in := converge(t, freshInput(t))
	in.Phones[0].State.EtcdIP = "10.0.0.11" // enchilada's etcd, at its current address
	if pp := phonePlan(t, Compute(in), "enchilada"); len(pp.Steps) != 0 {
		t.Fatalf("server whose etcd is at its address: got %q, want no steps", titles(pp))
	}

	// enchilada gets a new address: the member moves before the new
	// config is written, then k3s restarts; agents follow the new URL.
	in.Phones[0].Phone.SSH.Host = "10.0.1.11"
	in.Phones[0].State.Addrs = []Addr{{Iface: "wlan0", IP: "10.0.1.11"}}
	plan := Compute(in)
	got := titles(phonePlan(t, plan, "enchilada"))
	want := []string{"move the etcd member from 10.0.0.11 to 10.0.1.11", "write k3s config " + ConfigPath, "restart k3s", "wait for node enchilada to be Ready"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("one server with a new address (-want +got):\n%s", diff)
	}
	if plan.ServerURL != "https://10.0.1.11:6443" {
		t.Errorf("server URL: %q", plan.ServerURL)
	}

	// With a second server, etcd cannot be reset to one member: blocked,
	// naming both addresses.
	in.Farm.Phones[1].Role = inventory.RoleServer
	pp := phonePlan(t, Compute(in), "enchilada")
	if !strings.Contains(errText(pp.Blocked), "moves from 10.0.0.11 to 10.0.1.11") || !strings.Contains(errText(pp.Blocked), "one of 2 etcd members") {
		t.Errorf("two servers: blocked %q, want the move refused with both addresses", pp.Blocked)
	}
	if pp := phonePlan(t, Compute(in), "thinkpad"); errText(pp.Blocked) != "the first server enchilada is blocked" || len(pp.Steps) != 0 {
		t.Errorf("agent of a blocked first server: blocked %q, steps %q; want it held", pp.Blocked, titles(pp))
	}
}

func TestPlanTailnetK3sIntegrated(t *testing.T) {
	in := tailnetInput(t)
	in.Farm.Tailscale.K3sMode = "k3s-integrated"
	plan := Compute(in)
	want := []string{
		"open the firewall for k3s " + NftFragmentPath,
		"upload tailscale and tailscaled (arm64)",
		"write openrc service tailscale /etc/init.d/tailscale",
		"restart tailscaled",
		"upload k3s v1.32.0+k3s1 (arm64, 60 MB)",
		"write k3s's tailscale credentials " + VPNAuthPath,
		"write k3s config " + ConfigPath,
		"write openrc service k3s /etc/init.d/k3s",
		"restart k3s",
		"wait for node enchilada to be Ready",
		"set labels and taints of node enchilada",
	}
	pp := phonePlan(t, plan, "enchilada")
	if diff := cmp.Diff(want, titles(pp)); diff != "" {
		t.Errorf("first server, k3s-integrated (-want +got):\n%s", diff)
	}
	// k3s joins the tailnet itself: no tailscale up by phonefarm, and the
	// config keeps the LAN address (k3s keeps it for etcd) and names the
	// credentials file.
	for _, s := range pp.Steps {
		if _, ok := s.(*tsUpStep); ok {
			t.Error("k3s-integrated: phonefarm runs tailscale up itself")
		}
		if f, ok := s.(*fileStep); ok && f.path == ConfigPath {
			cfg := string(f.content)
			if !strings.Contains(cfg, "node-ip: 10.0.0.11") || !strings.Contains(cfg, "vpn-auth-file: "+VPNAuthPath) || strings.Contains(cfg, "advertise-address") {
				t.Errorf("k3s-integrated config:\n%s", cfg)
			}
		}
	}
	// Agents wait for the first server's tailnet address.
	if _, ok := phonePlan(t, plan, "fajita").Steps[6].(*tailnetConfigStep); !ok {
		t.Errorf("fajita's config step: got %q, want it written once the server's tailnet address is known", titles(phonePlan(t, plan, "fajita")))
	}

	// Converged: logged in under its name, credentials written.
	for i := range in.Phones {
		p := in.Phones[i].Phone
		if p.SSH == nil {
			continue
		}
		in.Phones[i].State.Tailscale = TailscaleState{Installed: TailscalePath, Running: true, BackendState: "Running",
			HostName: p.Name, IPs: []string{fmt.Sprintf("100.64.0.%d", i+1)}, ControlURL: "http://10.0.0.1:8081"}
		in.Phones[i].State.Files[VPNAuthPath] = File{SHA256: strings.Repeat("c", 64), Mtime: 100}
	}
	in = converge(t, in)
	in.Phones[0].State.EtcdIP = "10.0.0.11"
	plan = Compute(in)
	for _, pp := range plan.Phones {
		if len(pp.Steps) != 0 {
			t.Errorf("%s converged, k3s-integrated: got %q, want no steps (no key minted)", pp.Phone, titles(pp))
		}
	}
	if plan.ServerURL != "https://100.64.0.1:6443" {
		t.Errorf("server URL %q: want the first server's tailnet address", plan.ServerURL)
	}
	// On another tailnet: k3s's tailscale up cannot leave it.
	in.Phones[1].State.Tailscale.ControlURL = "https://controlplane.tailscale.com"
	if pp := phonePlan(t, Compute(in), "fajita"); !strings.Contains(errText(pp.Blocked), "tailscale logout") {
		t.Errorf("fajita on another tailnet, k3s-integrated: blocked %q, want what to do", pp.Blocked)
	}
}

// An Android phone gets the rootless agent: uploads, token, config, start
// and the wait for its node; once converged, nothing; a label change
// rewrites the config and restarts the agent.
func TestPlanAndroidAgent(t *testing.T) {
	in := freshInput(t)
	in.Farm.Android = &inventory.Android{Dir: "/data/local/tmp/pf"}
	in.Agents = map[string]AgentBinaries{"arm64": {
		Agent: Artifact{Arch: "arm64", Path: "agent", SHA256: strings.Repeat("a", 64), Size: 50 << 20},
		Proot: Artifact{Arch: "arm64", Path: "proot", SHA256: strings.Repeat("c", 64), Size: 1 << 20},
	}}
	var pixel *PhoneInput
	for i := range in.Phones {
		if in.Phones[i].Phone.Name == "pixel" {
			pixel = &in.Phones[i]
		}
	}
	if pixel == nil {
		t.Fatal("freshInput has no pixel")
	}
	pixel.Facts.OS.Android = &facts.Android{SDK: 34, Model: "Pixel 3a"}

	pixel.Agent = AgentState{Files: map[string]string{}}
	if pp := phonePlan(t, Compute(in), "pixel"); !strings.Contains(errText(pp.Blocked), "no route to the first server") {
		t.Errorf("no address: got blocked %q", pp.Blocked)
	}
	pixel.Agent.NodeIP = "192.168.1.30"
	pp := phonePlan(t, Compute(in), "pixel")
	want := []string{
		"upload phonefarm-agent (arm64, 50 MB) to /data/local/tmp/pf/bin/phonefarm-agent",
		"upload proot (arm64, 1 MB) to /data/local/tmp/pf/bin/proot",
		"write join token /data/local/tmp/pf/token",
		"write health credentials /data/local/tmp/pf/health.kubeconfig",
		"write agent config /data/local/tmp/pf/agent.json",
		"(re)start phonefarm-agent",
		"wait for node pixel to be Ready",
	}
	if diff := cmp.Diff(want, titles(pp)); diff != "" {
		t.Fatalf("fresh phone (-want +got):\n%s", diff)
	}
	var cfg []byte
	for _, s := range pp.Steps {
		if f, ok := s.(*fileStep); ok {
			cfg = f.content
		}
	}
	for _, want := range []string{`"nodeIP": "192.168.1.30"`, `"phonefarm.dev/android-model": "Pixel_3a"`, `"phonefarm.dev/android-sdk": "34"`, `"phonefarm.dev/runtime=proot:NoSchedule"`, `"tokenFile": "/data/local/tmp/pf/token"`, `"healthKubeconfig": "/data/local/tmp/pf/health.kubeconfig"`} {
		if !bytes.Contains(cfg, []byte(want)) {
			t.Errorf("agent config lacks %s:\n%s", want, cfg)
		}
	}

	// Converged.
	in.TokenSHA256 = strings.Repeat("b", 64)
	pixel.Agent = AgentState{NodeIP: "192.168.1.30", PID: 4242, Files: map[string]string{
		agentBin: strings.Repeat("a", 64), agentProot: strings.Repeat("c", 64), agentToken: in.TokenSHA256, agentConfig: sha(cfg),
		agentHealthKC: strings.Repeat("d", 64),
	}}
	in.Cluster = &ClusterFacts{Nodes: map[string]NodeFacts{"pixel": {Ready: true}}}
	if pp := phonePlan(t, Compute(in), "pixel"); len(pp.Steps) != 0 || pp.Blocked != nil {
		t.Errorf("converged: got %q (blocked %q), want nothing to do", titles(pp), pp.Blocked)
	}

	// A label: the config changes, the agent restarts.
	pixel.Phone.Labels = map[string]string{"farm.example/room": "hall"}
	want = []string{"write agent config /data/local/tmp/pf/agent.json", "(re)start phonefarm-agent", "wait for node pixel to be Ready", "set labels and taints of node pixel"}
	if diff := cmp.Diff(want, titles(phonePlan(t, Compute(in), "pixel"))); diff != "" {
		t.Errorf("label change (-want +got):\n%s", diff)
	}

	// The farm's health thresholds reach the agent.
	in.Farm.Health = &inventory.Health{BatteryLowPercent: 30, HotCelsius: 50}
	cfg = RenderAgentConfig(in, *pixel, "https://192.168.1.10:6443")
	for _, want := range []string{`"batteryLowPercent": 30`, `"hotCelsius": 50`} {
		if !bytes.Contains(cfg, []byte(want)) {
			t.Errorf("agent config lacks %s:\n%s", want, cfg)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// A step says what it changes as data (resource, old, new): label values,
// file hashes and versions, never a file's content.
func TestStepChanges(t *testing.T) {
	in := converge(t, freshInput(t))
	in.Farm.Phones[0].Labels = map[string]string{"zone": "hall"}
	in.Phones[1].State.Files[ConfigPath] = File{SHA256: "edited", Mtime: 300}
	plan := Compute(in)
	var got []Change
	for _, name := range []string{"enchilada", "fajita"} {
		for _, s := range phonePlan(t, plan, name).Steps {
			got = append(got, Changes(s)...)
		}
	}
	cfg := phonePlan(t, plan, "fajita").Steps[0].(*fileStep)
	want := []Change{
		{Resource: "node enchilada label zone", Old: "kitchen", New: "hall"},
		{Resource: "file " + ConfigPath, Old: "edited", New: sha(cfg.content)},
		{Resource: "restart k3s-agent"},
		{Resource: "wait for node fajita to be Ready"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

// A phone whose role changed has its old k3s service stopped and removed
// before the new one starts, so the two never run side by side.
func TestPlanRoleChange(t *testing.T) {
	in := converge(t, freshInput(t))
	// fajita was an agent; the inventory makes it a server.
	in.Farm.Phones[1].Role = inventory.RoleServer
	pp := phonePlan(t, Compute(in), "fajita")
	got := titles(pp)
	rm, svc, restart := slices.Index(got, "remove service k3s-agent"), slices.Index(got, "write openrc service k3s /etc/init.d/k3s"), slices.Index(got, "restart k3s")
	if rm < 0 || svc < 0 || restart < 0 || rm > restart {
		t.Errorf("agent turned server: steps %q, want k3s-agent removed and k3s written and restarted after", got)
	}
	// The step stops the service, takes it out of the boot runlevel and
	// removes its script.
	h := transporttest.New("fajita").On(`k3s-agent`, transporttest.Reply{})
	if err := pp.Steps[rm].Apply(context.Background(), &Target{Phone: "fajita", Host: h}); err != nil {
		t.Fatal(err)
	}
	cmds := strings.Join(h.Commands(), "\n")
	for _, want := range []string{"rc-service k3s-agent stop", "rc-update del k3s-agent default", "rm -f /etc/init.d/k3s-agent"} {
		if !strings.Contains(cmds, want) {
			t.Errorf("remove service: commands %q lack %q", cmds, want)
		}
	}
	// Converged as a server once it is gone: nothing more.
	delete(in.Phones[1].State.Files, "/etc/init.d/k3s-agent")
	in = converge(t, in)
	if got := titles(phonePlan(t, Compute(in), "fajita")); len(got) != 0 {
		t.Errorf("converged server: got %q, want no steps", got)
	}
}
