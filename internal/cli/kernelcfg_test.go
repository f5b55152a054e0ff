package cli

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phonefarm/phonefarm/kernelcfg"
)

// kernelcfgTestdata is a downstream vendor config (3.4.5) that lacks many
// required options.
var kernelcfgTestdata = filepath.Join("..", "..", "kernelcfg", "testdata", "fairphone-fp1.config")

// writeReadyConfig writes a config with every option the k3s profile
// checks at kernel 6.6, so it passes without warnings.
func writeReadyConfig(t *testing.T, dir string) string {
	t.Helper()
	ps, err := kernelcfg.LookupProfiles("k3s")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("#\n# Linux/arm64 6.6.1 Kernel Configuration\n#\n")
	v, err := kernelcfg.ParseVersion("6.6.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ps[0].Rules {
		if r.Versions.Contains(v) {
			b.WriteString("CONFIG_" + r.Options[0] + "=y\n")
		}
	}
	path := filepath.Join(dir, "ready.config")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func runCLI(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, bytes.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestKernelcfgCheckExitCodes(t *testing.T) {
	dir := t.TempDir()
	ready := writeReadyConfig(t, dir)
	binary := filepath.Join(dir, "binary.config")
	if err := os.WriteFile(binary, []byte("CONFIG_A=y\n\x00\x01\x02garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"ready config", []string{"kernelcfg", "check", ready}, 0, "1 configs: 0 fail, 0 warn, 1 pass", ""},
		{"vendor config", []string{"kernelcfg", "check", kernelcfgTestdata}, 1, "CONFIG_PID_NS", ""},
		{"both", []string{"kernelcfg", "check", ready, kernelcfgTestdata}, 1, "2 configs: 1 fail, 0 warn, 1 pass", ""},
		{"version override reopens gates", []string{"kernelcfg", "check", "--kernel-version", "4.4.1", ready}, 1, "CONFIG_DEVPTS_MULTIPLE_INSTANCES", ""},
		{"missing file", []string{"kernelcfg", "check", filepath.Join(dir, "nope")}, 2, "", "no such file"},
		{"missing file among good ones", []string{"kernelcfg", "check", ready, filepath.Join(dir, "nope")}, 2, "1 configs", "no such file"},
		{"binary input", []string{"kernelcfg", "check", binary}, 2, "", "line 2: binary data"},
		{"directory", []string{"kernelcfg", "check", dir}, 2, "", "is a directory"},
		{"no config", []string{"kernelcfg", "check"}, 2, "", "give at least one kernel config"},
		{"unknown profile", []string{"kernelcfg", "check", "--profile", "k3s,docker", ready}, 2, "", `unknown profile "docker"`},
		{"unknown arch, before any config is read", []string{"kernelcfg", "check", "--arch", "bogus", ready, filepath.Join(dir, "nope")}, 2, "", `--arch "bogus" is not an architecture`},
		{"arch spelled as uname says", []string{"kernelcfg", "check", "--arch", "aarch64", ready}, 0, "1 configs: 0 fail", ""},
		{"unknown format", []string{"kernelcfg", "check", "-o", "yaml", ready}, 2, "", "unknown output format"},
		{"bad version", []string{"kernelcfg", "check", "--kernel-version", "new", ready}, 2, "", "--kernel-version"},
		{"unknown flag", []string{"kernelcfg", "check", "--frobnicate", ready}, 2, "", "unknown flag"},
		{"no subcommand", []string{"kernelcfg"}, 2, "", "needs a subcommand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, tt.args...)
			if code != tt.wantCode {
				t.Errorf("got exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.wantStdout) {
				t.Errorf("got stdout\n%s\nwant it to contain %q", stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("got stderr\n%s\nwant it to contain %q", stderr, tt.wantStderr)
			}
			if strings.Contains(stdout, "\x1b[") {
				t.Errorf("got colour codes on a non-terminal")
			}
		})
	}
}

func TestKernelcfgCheckFormats(t *testing.T) {
	tests := []struct {
		format string
		check  func(t *testing.T, out string)
	}{
		{"json", func(t *testing.T, out string) {
			var doc struct {
				Configs []struct {
					Verdict         string   `json:"verdict"`
					MissingRequired []string `json:"missingRequired"`
				} `json:"configs"`
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatal(err)
			}
			if len(doc.Configs) != 1 || doc.Configs[0].Verdict != "fail" || len(doc.Configs[0].MissingRequired) == 0 {
				t.Errorf("got %+v, want one failing config with missing options", doc.Configs)
			}
		}},
		{"junit", func(t *testing.T, out string) {
			var doc struct {
				Failures int `xml:"failures,attr"`
			}
			if err := xml.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Failures == 0 {
				t.Errorf("got no failures, want the missing required options as failures")
			}
		}},
		{"sarif", func(t *testing.T, out string) {
			var doc struct {
				Version string `json:"version"`
				Runs    []struct {
					Results []json.RawMessage `json:"results"`
				} `json:"runs"`
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Version != "2.1.0" || len(doc.Runs) != 1 || len(doc.Runs[0].Results) == 0 {
				t.Errorf("got version %q with %d runs, want 2.1.0 with results", doc.Version, len(doc.Runs))
			}
		}},
		{"github", func(t *testing.T, out string) {
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if !strings.HasPrefix(line, "::error file=") && !strings.HasPrefix(line, "::warning file=") {
					t.Errorf("got line %q, want a workflow annotation", line)
				}
			}
			if !strings.Contains(out, "::error file="+filepath.ToSlash(kernelcfgTestdata)+",line=") {
				t.Errorf("got no line-located error annotation for %s", kernelcfgTestdata)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, "kernelcfg", "check", "-o", tt.format, kernelcfgTestdata)
			if code != 1 {
				t.Errorf("got exit %d, want 1; stderr:\n%s", code, stderr)
			}
			tt.check(t, stdout)
			switch {
			case tt.format == "github" && !strings.Contains(stderr, "REQUIRED MISSING"):
				t.Errorf("got stderr\n%s\nwant the summary table in the job's log", stderr)
			case tt.format != "github" && stderr != "":
				t.Errorf("-o %s: got stderr\n%s\nwant it left to errors", tt.format, stderr)
			}
		})
	}
}

func TestKernelcfgCheckStdinGzip(t *testing.T) {
	data, err := os.ReadFile(kernelcfgTestdata)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	code, stdout, stderr := runCLI(t, gz.Bytes(), "kernelcfg", "check", "--profile", "k3s,wireguard", "-")
	if code != 1 {
		t.Errorf("got exit %d, want 1; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "<stdin>") || !strings.Contains(stdout, "3.4.5") {
		t.Errorf("got stdout\n%s\nwant the stdin config with its kernel version", stdout)
	}
	if !strings.Contains(stdout, "CONFIG_WIREGUARD") {
		t.Errorf("got stdout without the wireguard profile's option")
	}
}

func TestKernelcfgCheckFragment(t *testing.T) {
	dir := t.TempDir()
	frag := filepath.Join(dir, "k3s.config")
	code, _, stderr := runCLI(t, nil, "kernelcfg", "check", "--fragment", frag, kernelcfgTestdata)
	if code != 1 {
		t.Fatalf("got exit %d, want 1; stderr:\n%s", code, stderr)
	}
	fragment, err := os.ReadFile(frag)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(fragment, []byte("\nCONFIG_PID_NS=y\n")) {
		t.Errorf("got fragment\n%s\nwant CONFIG_PID_NS=y", fragment)
	}
	// The config with the fragment merged in passes.
	data, err := os.ReadFile(kernelcfgTestdata)
	if err != nil {
		t.Fatal(err)
	}
	merged := filepath.Join(dir, "merged.config")
	if err := os.WriteFile(merged, append(data, fragment...), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, _ := runCLI(t, nil, "kernelcfg", "check", merged); code != 0 {
		t.Errorf("got exit %d for the merged config, want 0:\n%s", code, stdout)
	}
}

func TestKernelcfgProfiles(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "kernelcfg", "profiles", "k3s")
	if code != 0 {
		t.Fatalf("got exit %d, want 0; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"CONFIG_DEVPTS_MULTIPLE_INSTANCES", "< 4.8", "required", "recommended"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("got profiles table without %q", want)
		}
	}
	if code, _, _ := runCLI(t, nil, "kernelcfg", "profiles", "docker"); code != 2 {
		t.Errorf("got exit %d for an unknown profile, want 2", code)
	}
	code, stdout, _ = runCLI(t, nil, "kernelcfg", "profiles", "-o", "json")
	var ps []kernelcfg.Profile
	if err := json.Unmarshal([]byte(stdout), &ps); code != 0 || err != nil || len(ps) != len(kernelcfg.ProfileNames()) {
		t.Errorf("got exit %d, %d profiles, err %v; want every profile as JSON", code, len(ps), err)
	}
}
