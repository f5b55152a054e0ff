package kernelcfg_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"testing"

	"github.com/phonefarm/phonefarm/kernelcfg"
)

// FuzzParse feeds arbitrary bytes, plain and gzip'd, to Parse: it must
// return a config or a *ParseError, never panic, and whatever it accepts
// must check and render without trouble.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("# Linux/arm 3.4.0 Kernel Configuration\nCONFIG_A=y\n"))
	f.Add([]byte("CONFIG_A=\"unterminated"))
	f.Add([]byte("+CONFIG_B=y\nCONFIG_A=m\n"))
	f.Add([]byte("\x1f\x8b\x08\x00"))
	f.Add([]byte("# Linux kernel version: 2.6.32\n# CONFIG_X is not set\n"))
	profiles := kernelcfg.Profiles()
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, gzipBytes(data)} {
			cfg, err := kernelcfg.Parse(in, kernelcfg.ParseOptions{Name: "fuzz"})
			if err != nil {
				var pe *kernelcfg.ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("got %T %v, want *ParseError", err, err)
				}
				if pe.Line < 0 {
					t.Fatalf("got line %d, want >= 0", pe.Line)
				}
				continue
			}
			if len(cfg.Options) == 0 {
				t.Fatalf("got a config without options and no error")
			}
			for name, o := range cfg.Options {
				if o.Name != name || o.Line < 1 || o.Line > cfg.Lines {
					t.Fatalf("option %q: got %+v (lines %d)", name, o, cfg.Lines)
				}
			}
			rep := kernelcfg.Check(cfg, profiles...)
			var b bytes.Buffer
			for _, write := range []func() error{
				func() error {
					return kernelcfg.WriteText(&b, []kernelcfg.Report{rep}, kernelcfg.TextOptions{All: true})
				},
				func() error { return kernelcfg.WriteJSON(&b, []kernelcfg.Report{rep}) },
				func() error { return kernelcfg.WriteJUnit(&b, []kernelcfg.Report{rep}) },
				func() error { return kernelcfg.WriteSARIF(&b, []kernelcfg.Report{rep}, kernelcfg.SARIFOptions{}) },
				func() error { return kernelcfg.WriteGitHub(&b, []kernelcfg.Report{rep}) },
			} {
				if err := write(); err != nil {
					t.Fatalf("render: %v", err)
				}
			}
		}
	})
}

func gzipBytes(data []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	return b.Bytes()
}
