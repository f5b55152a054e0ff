package kernelcfg_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/phonefarm/phonefarm/kernelcfg"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// golden compares got with testdata/<name>.golden, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (-want +got):\n%s", path, cmp.Diff(string(want), string(got)))
	}
}

// pmaportsDir holds the 94 postmarketOS kernel configs the golden verdicts
// pin, gzip'd (testdata/pmaports/README.md says where they come from).
const pmaportsDir = "testdata/pmaports"

// loadTestdata parses one of the configs copied into testdata.
func loadTestdata(t testing.TB, name string) *kernelcfg.Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := kernelcfg.Parse(data, kernelcfg.ParseOptions{Name: name})
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return cfg
}
