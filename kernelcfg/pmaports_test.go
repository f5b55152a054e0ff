package kernelcfg_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phonefarm/phonefarm/kernelcfg"
)

type pmaportsConfig struct {
	rel  string
	data []byte
}

func readPmaports(t testing.TB) []pmaportsConfig {
	t.Helper()
	dir := pmaportsDir
	var out []pmaportsConfig
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !strings.HasSuffix(path, ".gz") {
			return nil // the README
		}
		rel, _ := filepath.Rel(dir, path)
		out = append(out, pmaportsConfig{rel: strings.TrimSuffix(filepath.ToSlash(rel), ".gz"), data: data})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPmaportsConfigs checks every postmarketOS kernel config under every
// profile and compares kernel version, verdicts and missing required
// options with the golden file.
func TestPmaportsConfigs(t *testing.T) {
	configs := readPmaports(t)
	if len(configs) != 94 {
		t.Errorf("got %d configs, want 94", len(configs))
	}
	profiles := kernelcfg.Profiles()
	var b strings.Builder
	for _, c := range configs {
		cfg, err := kernelcfg.Parse(c.data, kernelcfg.ParseOptions{Name: c.rel})
		if err != nil {
			t.Errorf("parse %s: %v", c.rel, err)
			continue
		}
		if !cfg.Version.Known() || cfg.Arch == "" {
			t.Errorf("%s: got version %q arch %q, want both from the header", c.rel, cfg.Version, cfg.Arch)
		}
		fmt.Fprintf(&b, "%s\n  kernel %s %s\n", c.rel, cfg.Version, cfg.Arch)
		for _, p := range profiles {
			rep := kernelcfg.Check(cfg, p)
			var missing []string
			for _, r := range rep.MissingRequired() {
				missing = append(missing, strings.ReplaceAll(r.ID, "CONFIG_", ""))
			}
			fmt.Fprintf(&b, "  %-10s %-4s %d/%d", p.Name, rep.Verdict(), len(rep.Results)-len(missing)-len(rep.MissingRecommended()), len(rep.Results))
			if len(missing) > 0 {
				fmt.Fprintf(&b, " missing: %s", strings.Join(missing, " "))
			}
			b.WriteString("\n")
		}
	}
	golden(t, t.Name(), []byte(b.String()))
}

// BenchmarkCheckAll parses and checks all 94 postmarketOS configs under
// every profile combined, once per iteration; the check sub-benchmark
// leaves out parsing.
func BenchmarkCheckAll(b *testing.B) {
	configs := readPmaports(b)
	profiles := kernelcfg.Profiles()
	var size int64
	parsed := make([]*kernelcfg.Config, len(configs))
	for i, c := range configs {
		size += int64(len(c.data))
		cfg, err := kernelcfg.Parse(c.data, kernelcfg.ParseOptions{Name: c.rel})
		if err != nil {
			b.Fatal(err)
		}
		parsed[i] = cfg
	}
	b.Run("parse+check", func(b *testing.B) {
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			for _, c := range configs {
				cfg, err := kernelcfg.Parse(c.data, kernelcfg.ParseOptions{Name: c.rel})
				if err != nil {
					b.Fatal(err)
				}
				_ = kernelcfg.Check(cfg, profiles...)
			}
		}
	})
	b.Run("check", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, cfg := range parsed {
				_ = kernelcfg.Check(cfg, profiles...)
			}
		}
	})
}

// BenchmarkAgainstPlainScan compares checking the pinned configs (parse,
// then the default k3s profile, as kernelcfg check does) with the least
// any tool must do: a plain scan of the same bytes into a map of options.
// The goal is a ratio of at most 1.5; bench/kernelcfg.sh prints it.
func BenchmarkAgainstPlainScan(b *testing.B) {
	var texts [][]byte
	var size int64
	for _, c := range readPmaports(b) {
		cfg, err := kernelcfg.Read(bytes.NewReader(c.data), kernelcfg.ParseOptions{})
		if err != nil || cfg == nil {
			b.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(c.data))
		if err != nil {
			b.Fatal(err)
		}
		t, err := io.ReadAll(zr)
		if err != nil {
			b.Fatal(err)
		}
		texts = append(texts, t)
		size += int64(len(t))
	}
	k3s, err := kernelcfg.LookupProfiles("k3s")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("plain-scan", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			for _, t := range texts {
				plainScan(t)
			}
		}
	})
	b.Run("kernelcfg-check", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			for _, t := range texts {
				cfg, err := kernelcfg.Parse(t, kernelcfg.ParseOptions{})
				if err != nil {
					b.Fatal(err)
				}
				_ = kernelcfg.Check(cfg, k3s...)
			}
		}
	})
}

// plainScan reads a config's options into a map, and nothing else.
func plainScan(t []byte) map[string]string {
	m := make(map[string]string, 8192)
	for len(t) > 0 {
		line := t
		if i := bytes.IndexByte(t, '\n'); i >= 0 {
			line, t = t[:i], t[i+1:]
		} else {
			t = nil
		}
		switch {
		case bytes.HasPrefix(line, []byte("CONFIG_")):
			if k, v, ok := bytes.Cut(line[7:], []byte("=")); ok {
				m[string(k)] = string(v)
			}
		case bytes.HasPrefix(line, []byte("# CONFIG_")) && bytes.HasSuffix(line, []byte(" is not set")):
			m[string(line[9:len(line)-11])] = "n"
		}
	}
	return m
}
