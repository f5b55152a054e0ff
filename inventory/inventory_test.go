package inventory

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

// want is one expected problem, written in a broken inventory as
// "# want: LINE:COL PATH: MESSAGE-PREFIX".
type want struct {
	line, col int
	path, msg string
}

func readWants(t *testing.T, data []byte) []want {
	t.Helper()
	var ws []want
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "# want: ")
		if !ok {
			continue
		}
		var w want
		loc, body, _ := strings.Cut(rest, " ")
		if _, err := fmt.Sscanf(loc, "%d:%d", &w.line, &w.col); err != nil {
			t.Fatalf("bad want line %q: %v", sc.Text(), err)
		}
		if p, m, ok := strings.Cut(body, ": "); ok && !strings.Contains(p, " ") {
			w.path, w.msg = p, m
		} else {
			w.msg = body
		}
		ws = append(ws, w)
	}
	if len(ws) == 0 {
		t.Fatal("broken inventory has no '# want:' lines")
	}
	return ws
}

func TestInvalidInventories(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("got %d broken inventories, want at least 15", len(files))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			wants := readWants(t, data)
			_, err = Parse(file, data)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse: got error %v, want a *ValidationError", err)
			}
			if len(ve.Problems) != len(wants) {
				t.Errorf("got %d problems, want %d:\n%v", len(ve.Problems), len(wants), err)
			}
			for _, w := range wants {
				found := false
				for _, p := range ve.Problems {
					if p.Line == w.line && p.Column == w.col && p.Path == w.path && strings.HasPrefix(p.Message, w.msg) && p.File == file {
						found = true
					}
				}
				if !found {
					t.Errorf("no problem at %d:%d %s: %q...; got:\n%v", w.line, w.col, w.path, w.msg, err)
				}
			}
		})
	}
}

func TestExamplesValidate(t *testing.T) {
	for _, file := range []string{"../examples/small.yaml", "../examples/mixed.yaml"} {
		t.Run(filepath.Base(file), func(t *testing.T) {
			f, err := Load(file)
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Phones) < 3 {
				t.Errorf("got %d phones, want at least 3", len(f.Phones))
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	f, err := Load("../examples/mixed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, ok := f.Phone("thinkpad")
	if !ok {
		t.Fatal("phone thinkpad not found")
	}
	got := f.SSHFor(p)
	home, _ := os.UserHomeDir()
	wantSSH := ResolvedSSH{Host: "thinkpad.lan", Port: 2222, User: "user", Agent: os.Getenv("SSH_AUTH_SOCK") != "",
		KnownHosts: filepath.Join(home, ".ssh", "known_hosts"), HostKeyPolicy: "strict", Become: "sudo"}
	if diff := cmp.Diff(wantSSH, got); diff != "" {
		t.Errorf("SSHFor(thinkpad) mismatch (-want +got):\n%s", diff)
	}
	b, _ := f.Phone("beryllium")
	if got := f.SSHFor(b).Become; got != "doas" {
		t.Errorf("beryllium become: got %q, want %q (phone overrides farm default)", got, "doas")
	}
	if got, want := b.Labels["topology.kubernetes.io/zone"], "kitchen"; got != want {
		t.Errorf("label: got %q, want %q", got, want)
	}
	if got, want := f.Tailscale.K3sMode, "separate"; got != want {
		t.Errorf("tailscale.k3sMode: got %q, want %q", got, want)
	}
	if got, want := f.K3s.Source.Files["arm64"], "./k3s-arm64"; got != want {
		t.Errorf("k3s.source.files[arm64]: got %q, want %q", got, want)
	}
	px, _ := f.Phone("pixel3a")
	if got, want := px.ADBServer(), DefaultADBServer; got != want {
		t.Errorf("adb server: got %q, want %q", got, want)
	}
}

func TestSelect(t *testing.T) {
	f, err := Load("../examples/small.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ps, err := f.Select([]string{"fp4", "dumpling"})
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{ps[0].Name, ps[1].Name}; !cmp.Equal(got, []string{"fp4", "dumpling"}) {
		t.Errorf("Select order: got %v, want [fp4 dumpling]", got)
	}
	_, err = f.Select([]string{"nokia"})
	if err == nil || !strings.Contains(err.Error(), `no phone "nokia"`) || !strings.Contains(err.Error(), "dumpling, enchilada, fp4") {
		t.Errorf("Select(nokia): got %v, want an error naming the phone and the valid ones", err)
	}
}

func TestWarnf(t *testing.T) {
	f, err := Load("../examples/small.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f.Warnf("phones[2].device", "unknown device codename %q", "fairphone-fp4")
	ws := f.Warnings()
	if len(ws) != 1 {
		t.Fatalf("got %d warnings, want 1", len(ws))
	}
	if got, want := ws[0].String(), `../examples/small.yaml:32:13: warning: phones[2].device: unknown device codename "fairphone-fp4"`; got != want {
		t.Errorf("warning: got %q, want %q", got, want)
	}
}

func TestSecretRef(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) {
		if k == "TOKEN" {
			return "from-env", true
		}
		return "", false
	}
	tests := []struct {
		ref     SecretRef
		want    string
		wantErr string
	}{
		{ref: "env:TOKEN", want: "from-env"},
		{ref: SecretRef("file:" + path), want: "s3cret"},
		{ref: "env:MISSING", wantErr: "environment variable MISSING is not set"},
		{ref: "hunter2", wantErr: "must be a reference"},
		{ref: "file:/nonexistent/phonefarm", wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(string(tt.ref), func(t *testing.T) {
			got, err := tt.ref.Resolve(t.Context(), env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "from-env") || strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error %q reveals a secret value", err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestEnvNames(t *testing.T) {
	f, err := Parse("farm.yaml", []byte(`apiVersion: phonefarm.dev/v1alpha1
kind: Farm
name: f
k3s:
  token: env:PF_TOKEN
  registries:
    configs:
      reg.lan: {username: env:REG_USER, password: file:/etc/reg-password}
      other.lan: {token: env:PF_TOKEN}
tailscale:
  apiKey: env:TS_API
phones:
  - {name: a, os: linux, role: server, ssh: {host: 10.0.0.1}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(f.EnvNames(), " "), "PF_TOKEN REG_USER TS_API"; got != want {
		t.Errorf("EnvNames: got %q, want %q", got, want)
	}
	if got := len(f.SecretRefs()); got != 5 {
		t.Errorf("SecretRefs: got %d references, want 5: %v", got, f.SecretRefs())
	}
}

func TestSchemaGolden(t *testing.T) {
	got, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", t.Name()+".golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("schema changed (-want +got); run go test ./inventory -update if intended:\n%s", diff)
	}
	// The schema must agree with the decoder on what is required and
	// which values an enum allows.
	var s struct {
		Defs map[string]struct {
			Required   []string `json:"required"`
			Properties map[string]struct {
				Enum []string `json:"enum"`
			} `json:"properties"`
			AdditionalProperties *bool `json:"additionalProperties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(got, &s); err != nil {
		t.Fatal(err)
	}
	phone := s.Defs["Phone"]
	if !cmp.Equal(phone.Required, []string{"name", "os"}) {
		t.Errorf("Phone required: got %v, want [name os]", phone.Required)
	}
	if got := phone.Properties["role"].Enum; !cmp.Equal(got, []string{"server", "agent"}) {
		t.Errorf("Phone.role enum: got %v, want [server agent]", got)
	}
	if ap := phone.AdditionalProperties; ap == nil || *ap {
		t.Errorf("Phone additionalProperties: got %v, want false (unknown fields are errors)", ap)
	}
}

// What a careless or hostile file does: a reference that holds the secret
// itself is refused without the secret in the message; aliases that
// expand without end, a file past the size limit, a FIFO and a device
// are refused at once.
func TestHostileInputs(t *testing.T) {
	b, err := os.ReadFile("testdata/invalid/secret-in-reference.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("farm.yaml", b); err == nil || strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "K10abc") {
		t.Errorf("secret in a reference: got %v, want an error that does not repeat it", err)
	}

	// 100k aliases of one phone: a few hundred kilobytes of YAML that
	// expand to millions of values.
	var bomb strings.Builder
	bomb.WriteString("apiVersion: phonefarm.dev/v1alpha1\nkind: Farm\nphones:\n  - &p {name: a, os: linux, role: server, ssh: {host: 10.0.0.1}, labels: {a: b, c: d}}\n")
	for range 100_000 {
		bomb.WriteString("  - *p\n")
	}
	_, err = Parse("bomb.yaml", []byte(bomb.String()))
	if err == nil || !strings.Contains(err.Error(), "more than 200000 values through its YAML aliases") {
		t.Errorf("alias bomb: got %.500v, want the alias limit", err)
	}

	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, append([]byte("# "), bytes.Repeat([]byte("x"), MaxSize)...), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, want string }{
		{big, "more than an inventory's limit"},
		{fifo, "is a named pipe, not a file"},
		{"/dev/zero", "is a character device, not a file"},
		{dir, "is a directory, not a file"},
	} {
		done := make(chan error, 1)
		go func() { _, err := Load(tt.path); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load(%s): got %v, want %q", tt.path, err, tt.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Load(%s) still reading after 5 s", tt.path)
		}
	}
}

// A plain-HTTP control server at a host name is warned about; at a
// private address, or over https, it is not.
func TestLoginServerWarnings(t *testing.T) {
	tests := []struct {
		server string
		warn   bool
	}{
		{"http://headscale.lan:8080", true},
		{"http://hs.example.org", true},
		{"http://203.0.113.7:8080", true},
		{"http://192.168.1.20:8080", false},
		{"http://10.0.0.2", false},
		{"http://[fd7a::1]:8080", false},
		{"http://localhost:8080", false},
		{"https://hs.example.org", false},
		{"https://hs.example.org:8443", false},
	}
	for _, tt := range tests {
		t.Run(tt.server, func(t *testing.T) {
			data := "apiVersion: phonefarm.dev/v1alpha1\nkind: Farm\ntailscale:\n  loginServer: " + tt.server +
				"\n  authKey: env:TS_KEY\nphones:\n  - name: a\n    os: linux\n    ssh: {host: 10.0.0.1}\n"
			f, err := Parse("farm.yaml", []byte(data))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range f.Warnings() {
				if strings.Contains(w.String(), "HTTPS on port 443") {
					got = append(got, w.String())
				}
			}
			switch {
			case tt.warn && (len(got) != 1 || !strings.HasPrefix(got[0], "farm.yaml:4:16: warning: tailscale.loginServer: "+tt.server+" is plain http:// at a host name or public address")):
				t.Errorf("warnings %q, want one at 4:16 naming %s", got, tt.server)
			case !tt.warn && len(got) != 0:
				t.Errorf("warnings %q, want none", got)
			}
		})
	}
}
