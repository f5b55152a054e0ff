package provision

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/phonefarm/phonefarm/inventory"
)

func registriesFarm(t *testing.T, dir string) *inventory.Farm {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "farm.yaml")
	src := strings.Replace(testFarm, "  disable: [traefik]\n", `  disable: [traefik]
  registries:
    mirrors:
      docker.io:
        endpoints: [https://registry.lan:5000]
        rewrites: {"^rancher/(.*)": "mirror/rancher/$1"}
      "*": {endpoints: ["http://10.0.0.1:5000"]}
    configs:
      registry.lan:5000:
        username: env:PF_REG_USER
        password: file:`+filepath.Join(dir, "password")+`
        caFile: ca.pem
      10.0.0.1:5000: {insecure: true}
`, 1)
	if err := os.WriteFile(filepath.Join(dir, "password"), []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := inventory.Parse(file, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRenderRegistries(t *testing.T) {
	dir := t.TempDir()
	f := registriesFarm(t, dir)
	env := func(k string) (string, bool) {
		return map[string]string{"PF_REG_USER": "farmer"}[k], k == "PF_REG_USER"
	}
	r, err := RenderRegistries(context.Background(), f, env)
	if err != nil {
		t.Fatal(err)
	}
	want := managedHeader + `mirrors:
    '*':
        endpoint:
            - http://10.0.0.1:5000
    docker.io:
        endpoint:
            - https://registry.lan:5000
        rewrite:
            ^rancher/(.*): mirror/rancher/$1
configs:
    10.0.0.1:5000:
        tls:
            insecure_skip_verify: true
    registry.lan:5000:
        auth:
            username: farmer
            password: hunter2
        tls:
            ca_file: /etc/rancher/k3s/phonefarm-registries/registry.lan_5000-ca.crt
`
	if diff := cmp.Diff(want, string(r.Config)); diff != "" {
		t.Errorf("registries.yaml (-want +got):\n%s", diff)
	}
	if len(r.Files) != 1 || r.Files[0].Path != RegistryFilesDir+"/registry.lan_5000-ca.crt" || !strings.Contains(string(r.Files[0].Content), "BEGIN CERTIFICATE") {
		t.Errorf("files: got %+v, want the CA certificate under %s", r.Files, RegistryFilesDir)
	}

	// A secret that cannot be read names its field and reference, not a value.
	_, err = RenderRegistries(context.Background(), f, func(string) (string, bool) { return "", false })
	if err == nil || !strings.Contains(err.Error(), "k3s.registries.configs[registry.lan:5000].username") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("missing env secret: got %v, want an error naming the field", err)
	}
	os.Remove(filepath.Join(dir, "ca.pem"))
	if _, err = RenderRegistries(context.Background(), f, env); err == nil || !strings.Contains(err.Error(), "caFile") {
		t.Errorf("missing CA file: got %v, want an error naming caFile", err)
	}
}

func TestPlanRegistriesAndImages(t *testing.T) {
	dir := t.TempDir()
	f := registriesFarm(t, dir)
	env := func(k string) (string, bool) { return "farmer", true }
	regs, err := RenderRegistries(context.Background(), f, env)
	if err != nil {
		t.Fatal(err)
	}
	img := ImageArtifact{Artifact: Artifact{Arch: "arm64", Path: "/cache/apps.tar", SHA256: strings.Repeat("d", 64), Size: 20 << 20}, Name: "apps.tar"}
	base := freshInput(t)
	base.Farm = f
	for i := range base.Phones {
		base.Phones[i].Phone = &f.Phones[i]
	}
	base.Registries = regs
	base.AirgapImages = map[string][]ImageArtifact{"arm64": {img}}

	plan := Compute(base)
	for _, name := range []string{"enchilada", "fajita", "thinkpad"} {
		got := titles(phonePlan(t, plan, name))
		for _, w := range []string{"write registry certificate " + RegistryFilesDir + "/registry.lan_5000-ca.crt", "write registries " + RegistriesPath, "upload airgap images apps.tar (arm64, 20 MB)"} {
			if !slices.Contains(got, w) {
				t.Errorf("%s: steps %q lack %q", name, got, w)
			}
		}
	}
	for _, pp := range plan.Phones {
		for _, s := range pp.Steps {
			if strings.Contains(s.Title()+s.Why(), "hunter2") || strings.Contains(s.Title()+s.Why(), "farmer") {
				t.Errorf("%s: step %q (%s) shows a registry credential", pp.Phone, s.Title(), s.Why())
			}
		}
	}

	converged := converge(t, base)
	for _, pp := range Compute(converged).Phones {
		if len(pp.Steps) != 0 {
			t.Errorf("%s: converged farm plans %q, want nothing", pp.Phone, titles(pp))
		}
	}

	tests := []struct {
		name  string
		edit  func(in *Input)
		phone string
		want  []string
	}{
		{
			name: "a password changes: every phone rewrites the file and restarts",
			edit: func(in *Input) {
				r := *in.Registries
				r.Config = append([]byte{}, r.Config...)
				r.Config = append(r.Config, '#')
				in.Registries = &r
			},
			phone: "fajita", want: []string{"write registries " + RegistriesPath, "restart k3s-agent", "wait for node fajita to be Ready"},
		},
		{
			name:  "an image tarball is missing on one phone",
			edit:  func(in *Input) { delete(in.Phones[2].State.Files, img.PhonePath()) },
			phone: "thinkpad", want: []string{"upload airgap images apps.tar (arm64, 20 MB)", "restart k3s-agent", "wait for node thinkpad to be Ready"},
		},
		{
			name:  "an image tarball leaves the inventory: phonefarm's upload goes, k3s keeps running",
			edit:  func(in *Input) { in.AirgapImages = nil },
			phone: "enchilada", want: []string{"remove airgap images apps.tar"},
		},
		{
			name: "a tarball phonefarm did not upload stays",
			edit: func(in *Input) {
				in.AirgapImages = nil
				for i := range in.Phones {
					in.Phones[i].State.AirgapOwned = nil
				}
			},
			phone: "enchilada", want: nil,
		},
		{
			name: "registries leave the inventory: phonefarm's file and certificate go",
			edit: func(in *Input) {
				in.Registries = nil
				for i := range in.Phones {
					in.Phones[i].State.Managed = map[string]bool{RegistriesPath: true}
				}
			},
			phone: "enchilada", want: []string{"remove " + RegistriesPath, "remove " + RegistryFilesDir + "/registry.lan_5000-ca.crt", "restart k3s", "wait for node enchilada to be Ready"},
		},
		{
			name: "registries leave the inventory: every key and certificate phonefarm wrote goes",
			edit: func(in *Input) {
				in.Registries = nil
				for i := range in.Phones {
					in.Phones[i].State.Managed = map[string]bool{RegistriesPath: true}
					in.Phones[i].State.Files[RegistryFilesDir+"/old_5000-client.key"] = File{SHA256: "k", Mtime: 50}
				}
			},
			phone: "fajita", want: []string{
				"remove " + RegistriesPath,
				"remove " + RegistryFilesDir + "/old_5000-client.key",
				"remove " + RegistryFilesDir + "/registry.lan_5000-ca.crt",
				"restart k3s-agent", "wait for node fajita to be Ready",
			},
		},
		{
			name: "a registry's client key leaves the inventory: only the key goes, k3s keeps running",
			edit: func(in *Input) {
				for i := range in.Phones {
					in.Phones[i].State.Files[RegistryFilesDir+"/gone_5000-client.key"] = File{SHA256: "k", Mtime: 50}
				}
			},
			phone: "thinkpad", want: []string{"remove " + RegistryFilesDir + "/gone_5000-client.key"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := converge(t, base)
			tt.edit(&in)
			plan := Compute(in)
			if diff := cmp.Diff(tt.want, titles(phonePlan(t, plan, tt.phone))); diff != "" {
				t.Errorf("%s steps (-want +got):\n%s", tt.phone, diff)
			}
		})
	}
}

func TestPlanRestrictedOOMScoreAdj(t *testing.T) {
	in := converge(t, freshInput(t))
	in.Phones[1].State.OOMRestricted = true
	plan := Compute(in)
	want := []string{"write containerd template " + ContainerdTemplatePath, "restart k3s-agent", "wait for node fajita to be Ready"}
	if diff := cmp.Diff(want, titles(phonePlan(t, plan, "fajita"))); diff != "" {
		t.Errorf("fajita steps (-want +got):\n%s", diff)
	}
	if got := titles(phonePlan(t, plan, "thinkpad")); len(got) != 0 {
		t.Errorf("thinkpad can lower oom_score_adj: got steps %q, want none", got)
	}
	tmpl := containerdTemplateFor(art.Version)
	if !strings.Contains(string(tmpl), "restrict_oom_score_adj = true") {
		t.Fatalf("template does not restrict oom_score_adj:\n%s", tmpl)
	}

	// Converged with the template: nothing; once root can lower it again,
	// phonefarm's template goes.
	in.Phones[1].State.Files[ContainerdTemplatePath] = File{SHA256: sha(tmpl), Mtime: 100}
	in.Phones[1].State.Managed = map[string]bool{ContainerdTemplatePath: true}
	if got := titles(phonePlan(t, Compute(in), "fajita")); len(got) != 0 {
		t.Errorf("converged: got %q, want no steps", got)
	}
	in.Phones[1].State.OOMRestricted = false
	want = []string{"remove " + ContainerdTemplatePath, "restart k3s-agent", "wait for node fajita to be Ready"}
	if diff := cmp.Diff(want, titles(phonePlan(t, Compute(in), "fajita"))); diff != "" {
		t.Errorf("no longer restricted (-want +got):\n%s", diff)
	}

	// A template of the user's own is left alone, with a note.
	in.Phones[1].State.OOMRestricted = true
	in.Phones[1].State.Managed = nil
	pp := phonePlan(t, Compute(in), "fajita")
	if len(pp.Steps) != 0 || len(pp.Notes) != 1 || !strings.Contains(pp.Notes[0], "restrict_oom_score_adj") {
		t.Errorf("own template: got steps %q notes %q, want none and a note", titles(pp), pp.Notes)
	}

	// A k3s whose containerd configuration phonefarm does not know.
	in = converge(t, freshInput(t))
	in.Phones[1].State.OOMRestricted = true
	a := in.Artifacts["arm64"]
	a.Version = "v1.34.1+k3s1"
	in.Artifacts["arm64"] = a
	for i := range in.Phones {
		in.Phones[i].Facts.K3s.Version = a.Version
		in.Phones[i].State.Files[BinaryPath] = File{SHA256: a.SHA256, Mtime: 100}
	}
	pp = phonePlan(t, Compute(in), "fajita")
	if len(pp.Notes) != 1 || !strings.Contains(pp.Notes[0], "not v1.34.1+k3s1") {
		t.Errorf("unknown k3s: got notes %q, want one saying the template is for v1.32 only", pp.Notes)
	}
}
