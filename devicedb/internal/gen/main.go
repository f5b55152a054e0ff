// Command gen builds phonefarm's embedded device table from a pmaports
// devices tree (<category>/<codename>.deviceinfo). Run it through
// `go generate ./devicedb`.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/phonefarm/phonefarm/devicedb/internal/deviceinfo"
)

// record is one line of the table; devicedb decodes the same shape.
type record struct {
	Category string          `json:"c"`
	Codename string          `json:"n"`
	Info     []deviceinfo.KV `json:"i"`
}

func main() {
	src := flag.String("src", "testdata/pmaports/devices", "pmaports devices directory")
	out := flag.String("out", "devices.json.gz", "table to write")
	flag.Parse()
	if err := run(*src, *out); err != nil {
		fmt.Fprintf(os.Stderr, "gen: %v\n", err)
		os.Exit(1)
	}
}

func run(src, out string) error {
	files, err := filepath.Glob(filepath.Join(src, "*", "*.deviceinfo"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no deviceinfo files under %s", src)
	}
	sort.Strings(files)
	var recs []record
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		kv, err := deviceinfo.Parse(f, data)
		if err != nil {
			return err
		}
		recs = append(recs, record{
			Category: filepath.Base(filepath.Dir(f)),
			Codename: strings.TrimSuffix(filepath.Base(f), ".deviceinfo"),
			Info:     kv,
		})
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Codename < recs[j].Codename })
	var buf bytes.Buffer
	// Deterministic output: fixed compression level, no header timestamp.
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(zw)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "gen: %d devices from %s into %s (%d bytes)\n", len(recs), src, out, buf.Len())
	return nil
}
