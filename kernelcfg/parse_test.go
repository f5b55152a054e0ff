package kernelcfg_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/phonefarm/phonefarm/kernelcfg"
)

func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const sample = `#
# Automatically generated file; DO NOT EDIT.
# Linux/arm64 4.4.153 Kernel Configuration
#
CONFIG_ARM64=y
CONFIG_NAMESPACES=y
CONFIG_VETH=m
# CONFIG_USER_NS is not set
CONFIG_NR_CPUS=8
CONFIG_ARM64_VA_BITS=0x27
CONFIG_NEG=-1
CONFIG_CMDLINE="console=ttyMSM0,115200 \"quoted\" back\\slash"
CONFIG_EMPTY=""
CONFIG_LOCALVERSION=-perf
CONFIG_OFF=n
`

func TestParseValues(t *testing.T) {
	cfg, err := kernelcfg.Parse([]byte(sample), kernelcfg.ParseOptions{Name: "sample"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]kernelcfg.Option{
		"ARM64":         {Name: "ARM64", Kind: kernelcfg.KindYes, Value: "y", Line: 5},
		"NAMESPACES":    {Name: "NAMESPACES", Kind: kernelcfg.KindYes, Value: "y", Line: 6},
		"VETH":          {Name: "VETH", Kind: kernelcfg.KindModule, Value: "m", Line: 7},
		"USER_NS":       {Name: "USER_NS", Kind: kernelcfg.KindNotSet, Line: 8},
		"NR_CPUS":       {Name: "NR_CPUS", Kind: kernelcfg.KindNumber, Value: "8", Line: 9},
		"ARM64_VA_BITS": {Name: "ARM64_VA_BITS", Kind: kernelcfg.KindNumber, Value: "0x27", Line: 10},
		"NEG":           {Name: "NEG", Kind: kernelcfg.KindNumber, Value: "-1", Line: 11},
		"CMDLINE":       {Name: "CMDLINE", Kind: kernelcfg.KindString, Value: `console=ttyMSM0,115200 "quoted" back\slash`, Line: 12},
		"EMPTY":         {Name: "EMPTY", Kind: kernelcfg.KindString, Value: "", Line: 13},
		"LOCALVERSION":  {Name: "LOCALVERSION", Kind: kernelcfg.KindString, Value: "-perf", Line: 14},
		"OFF":           {Name: "OFF", Kind: kernelcfg.KindNo, Value: "n", Line: 15},
	}
	if diff := cmp.Diff(want, cfg.Options); diff != "" {
		t.Errorf("options differ (-want +got):\n%s", diff)
	}
	if got, want := cfg.Version.String(), "4.4.153"; got != want {
		t.Errorf("got version %q, want %q", got, want)
	}
	if got, want := cfg.Arch, "arm64"; got != want {
		t.Errorf("got arch %q, want %q", got, want)
	}
	if got, want := cfg.Lines, 15; got != want {
		t.Errorf("got %d lines, want %d", got, want)
	}
	for _, c := range []struct {
		name string
		want bool
	}{{"VETH", true}, {"CONFIG_VETH", true}, {"USER_NS", false}, {"OFF", false}, {"MISSING", false}, {"NR_CPUS", false}} {
		if got := cfg.Enabled(c.name); got != c.want {
			t.Errorf("Enabled(%q): got %v, want %v", c.name, got, c.want)
		}
	}
}

func TestParseHeaderAndOverrides(t *testing.T) {
	tests := []struct {
		name        string
		input       string
		opts        kernelcfg.ParseOptions
		wantVersion string
		wantArch    string
	}{
		{"header arm", "# Linux/arm 3.4.0 Kernel Configuration\nCONFIG_ARM=y\n", kernelcfg.ParseOptions{}, "3.4.0", "arm"},
		{"header x86 64-bit", "# Linux/x86 6.1.0 Kernel Configuration\nCONFIG_64BIT=y\n", kernelcfg.ParseOptions{}, "6.1.0", "x86_64"},
		{"header x86 32-bit", "# Linux/x86 6.1.0 Kernel Configuration\n# CONFIG_64BIT is not set\n", kernelcfg.ParseOptions{}, "6.1.0", "x86"},
		{"old header", "# Linux kernel version: 2.6.32\nCONFIG_X86_32=y\n", kernelcfg.ParseOptions{}, "2.6.32", "x86"},
		{"rc header", "# Linux/arm64 7.1.0-rc3 Kernel Configuration\nCONFIG_A=y\n", kernelcfg.ParseOptions{}, "7.1.0-rc3", "arm64"},
		{"words after the version", "# Linux/arm64 3.10.108 EOL Kernel Configuration\nCONFIG_A=y\n", kernelcfg.ParseOptions{}, "3.10.108", "arm64"},
		{"no header, arch from options", "CONFIG_ARM64=y\n", kernelcfg.ParseOptions{}, "", "arm64"},
		{"no header, nothing known", "CONFIG_A=y\n", kernelcfg.ParseOptions{}, "", ""},
		{"overrides", "# Linux/arm64 4.4.153 Kernel Configuration\nCONFIG_A=y\n", kernelcfg.ParseOptions{Version: "3.18.140", Arch: "armv7"}, "3.18.140", "arm"},
		{"header after options ignored", "CONFIG_A=y\n# Linux/arm64 4.4.153 Kernel Configuration\n", kernelcfg.ParseOptions{}, "", ""},
		{"crlf", "# Linux/arm64 5.10.1 Kernel Configuration\r\nCONFIG_A=y\r\n", kernelcfg.ParseOptions{}, "5.10.1", "arm64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := kernelcfg.Parse([]byte(tt.input), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Version.String(); got != tt.wantVersion {
				t.Errorf("got version %q, want %q", got, tt.wantVersion)
			}
			if cfg.Arch != tt.wantArch {
				t.Errorf("got arch %q, want %q", cfg.Arch, tt.wantArch)
			}
		})
	}
}

func TestParseGzip(t *testing.T) {
	plain, err := os.ReadFile(filepath.Join("testdata", "samsung-m20lte.config"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := kernelcfg.Parse(plain, kernelcfg.ParseOptions{Name: "m20"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := kernelcfg.Read(bytes.NewReader(gz(t, plain)), kernelcfg.ParseOptions{Name: "m20"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("gzip'd config parses differently (-plain +gzip):\n%s", diff)
	}
}

func TestParseErrors(t *testing.T) {
	valid := "# Linux/arm64 4.4.153 Kernel Configuration\nCONFIG_A=y\nCONFIG_B=m\n"
	full := gz(t, []byte(strings.Repeat(valid, 200)))
	tests := []struct {
		name     string
		input    []byte
		opts     kernelcfg.ParseOptions
		wantLine int
		wantMsg  string
	}{
		{"empty", nil, kernelcfg.ParseOptions{}, 0, "no CONFIG_ options"},
		{"comments only", []byte("# hello\n#\n"), kernelcfg.ParseOptions{}, 0, "no CONFIG_ options"},
		{"prose", []byte("hello world\nthis is not a config\n"), kernelcfg.ParseOptions{}, 1, "not a kernel config"},
		{"mostly prose", []byte("CONFIG_A=y\nfoo\nbar\nbaz\n"), kernelcfg.ParseOptions{}, 2, "not a kernel config"},
		{"binary", []byte("CONFIG_A=y\nCONFIG_B=\x00\x01\x02\n"), kernelcfg.ParseOptions{}, 2, "binary data"},
		{"invalid utf-8", []byte("CONFIG_A=y\nCONFIG_B=\"\xff\xfe\"\n"), kernelcfg.ParseOptions{}, 2, "invalid UTF-8"},
		{"truncated name", []byte("CONFIG_A=y\nCONFIG_BRID"), kernelcfg.ParseOptions{}, 2, "has no value"},
		{"truncated string", []byte("CONFIG_A=y\nCONFIG_CMDLINE=\"console=tty"), kernelcfg.ParseOptions{}, 2, "unterminated string"},
		{"text after string", []byte("CONFIG_A=\"x\" y\n"), kernelcfg.ParseOptions{}, 1, "after the closing quote"},
		{"bad name", []byte("CONFIG_A=y\nCONFIG_B-C=y\n"), kernelcfg.ParseOptions{}, 2, "malformed option name"},
		{"truncated gzip", full[:len(full)/2], kernelcfg.ParseOptions{}, -1, "gzip data ends"},
		{"xz", []byte("\xfd7zXZ\x00\x00rest"), kernelcfg.ParseOptions{}, 1, "xz-compressed"},
		{"bad version override", []byte(valid), kernelcfg.ParseOptions{Version: "four"}, 0, "invalid kernel version"},
		{"bad arch override", []byte(valid), kernelcfg.ParseOptions{Arch: "arm/64"}, 0, "architecture override"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Name = "in.config"
			cfg, err := kernelcfg.Parse(tt.input, tt.opts)
			if err == nil {
				t.Fatalf("got config with %d options, want an error", len(cfg.Options))
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("got error %q, want it to contain %q", err, tt.wantMsg)
			}
			var pe *kernelcfg.ParseError
			if tt.wantLine == 0 && strings.Contains(tt.name, "override") {
				if errors.As(err, &pe) {
					t.Errorf("got ParseError %v for a bad override, want a plain error", err)
				}
				return
			}
			if !errors.As(err, &pe) {
				t.Fatalf("got %T %v, want *ParseError", err, err)
			}
			if pe.Name != "in.config" {
				t.Errorf("got name %q, want %q", pe.Name, "in.config")
			}
			if tt.wantLine >= 0 && pe.Line != tt.wantLine {
				t.Errorf("got line %d, want %d (%v)", pe.Line, tt.wantLine, err)
			}
			if tt.wantLine < 0 && pe.Line < 1 {
				t.Errorf("got line %d, want the line the gzip data broke at (%v)", pe.Line, err)
			}
		})
	}
}

func TestParseToleratesStrayLines(t *testing.T) {
	// A real config (qcom-apq8064) carries a stray "+CONFIG_..." line;
	// the kernel's tools ignore such lines, and so does Parse.
	cfg, err := kernelcfg.Parse([]byte("CONFIG_A=y\n+CONFIG_B=y\nCONFIG_C=m\n"), kernelcfg.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []kernelcfg.LineWarning{{Line: 2, Text: "+CONFIG_B=y"}}
	if diff := cmp.Diff(want, cfg.Warnings); diff != "" {
		t.Errorf("warnings differ (-want +got):\n%s", diff)
	}
	if cfg.Enabled("B") {
		t.Errorf("got B enabled, want the stray line ignored")
	}
}

func TestVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    kernelcfg.Version
		wantErr bool
	}{
		{in: "4.4.153", want: kernelcfg.Version{Major: 4, Minor: 4, Patch: 153, Text: "4.4.153"}},
		{in: "7.1.0-rc3", want: kernelcfg.Version{Major: 7, Minor: 1, RC: 3, Text: "7.1.0-rc3"}},
		{in: "6.1_rc1", want: kernelcfg.Version{Major: 6, Minor: 1, RC: 1, Text: "6.1_rc1"}},
		{in: "7.1.8-danctnix1", want: kernelcfg.Version{Major: 7, Minor: 1, Patch: 8, Text: "7.1.8-danctnix1"}},
		{in: "4.9.77-perf+", want: kernelcfg.Version{Major: 4, Minor: 9, Patch: 77, Text: "4.9.77-perf+"}},
		{in: "5.10", want: kernelcfg.Version{Major: 5, Minor: 10, Text: "5.10"}},
		{in: "5", wantErr: true},
		{in: "", wantErr: true},
		{in: "v5.10", wantErr: true},
		{in: "5.10abc", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := kernelcfg.ParseVersion(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("version differs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRangeContains(t *testing.T) {
	v := func(s string) kernelcfg.Version {
		x, err := kernelcfg.ParseVersion(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	tests := []struct {
		r    kernelcfg.Range
		v    string
		want bool
	}{
		{kernelcfg.Range{Below: v("4.8")}, "4.7.10", true},
		{kernelcfg.Range{Below: v("4.8")}, "4.8.0", false},
		{kernelcfg.Range{Below: v("4.8")}, "4.8.0-rc1", false}, // like the script: minor 8 is not below 8
		{kernelcfg.Range{Below: v("6.1-rc1")}, "6.1.0-rc1", false},
		{kernelcfg.Range{Below: v("6.1-rc1")}, "6.0.19", true},
		{kernelcfg.Range{From: v("3.14")}, "3.13.11", false},
		{kernelcfg.Range{From: v("3.14")}, "3.14.0", true},
		{kernelcfg.Range{From: v("3.7"), Below: v("5.0")}, "4.19.325", true},
		{kernelcfg.Range{From: v("3.7"), Below: v("5.0")}, "5.0.0", false},
		{kernelcfg.Range{}, "2.6.32", true},
	}
	for _, tt := range tests {
		if got := tt.r.Contains(v(tt.v)); got != tt.want {
			t.Errorf("%s contains %s: got %v, want %v", tt.r, tt.v, got, tt.want)
		}
	}
}
