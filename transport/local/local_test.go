package local

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phonefarm/phonefarm/transport"
)

func TestRun(t *testing.T) {
	h := &Host{}
	var out bytes.Buffer
	err := h.Run(t.Context(), transport.Command{Cmd: "cat; echo err >&2; exit 4", Stdin: strings.NewReader("in"), Stdout: &out})
	var ee *transport.ExitError
	if !errors.As(err, &ee) || ee.Status != 4 || ee.Stderr != "err\n" {
		t.Fatalf("got %v, want exit status 4 with stderr", err)
	}
	if out.String() != "in" {
		t.Errorf("stdout: got %q, want %q", out.String(), "in")
	}
}

func TestRunCancelKillsGroup(t *testing.T) {
	h := &Host{}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err := h.Run(ctx, transport.Command{Cmd: "(sleep 30; touch " + dir + "/late) & sleep 30"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	out, _ := transport.Output(t.Context(), h, "pgrep -f '[s]leep 30; touch "+dir+"' || true")
	if strings.TrimSpace(out) != "" {
		t.Errorf("background child survived cancellation: %s", out)
	}
}

func TestFiles(t *testing.T) {
	h := &Host{}
	p := filepath.Join(t.TempDir(), "a", "b", "file")
	for _, content := range []string{"one", "two, longer"} {
		if err := h.WriteFile(t.Context(), p, 0o600, strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		got, err := h.ReadFile(t.Context(), p)
		if err != nil || string(got) != content {
			t.Fatalf("ReadFile: got %q, %v; want %q", got, err, content)
		}
		sum, err := h.Sha256(t.Context(), p)
		want := sha256.Sum256([]byte(content))
		if err != nil || sum != hex.EncodeToString(want[:]) {
			t.Errorf("Sha256: got %s, %v; want %x", sum, err, want)
		}
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode: got %v, %v; want 0600", st.Mode(), err)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file (no temp files)", len(entries))
	}
	if _, err := h.ReadFile(t.Context(), p+".missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile(missing): got %v, want fs.ErrNotExist", err)
	}
	if _, err := h.Sha256(t.Context(), p+".missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Sha256(missing): got %v, want fs.ErrNotExist", err)
	}
}
