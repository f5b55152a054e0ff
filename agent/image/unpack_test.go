package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entry is one tar entry of a test layer.
type entry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func layer(t *testing.T, entries ...entry) *bytes.Reader {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.body))}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b.Bytes())
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		return "missing"
	}
	return string(b)
}

func TestUnpackLayersInOrder(t *testing.T) {
	root := t.TempDir()
	base := layer(t,
		entry{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "etc/passwd", body: "root:x:0:0\n"},
		entry{name: "bin/busybox", body: "ELF", mode: 0o755},
		entry{name: "bin/sh", typ: tar.TypeSymlink, link: "/bin/busybox"},
		entry{name: "bin/ls", typ: tar.TypeLink, link: "bin/busybox"},
		entry{name: "var/cache/old", body: "stale"},
		entry{name: "var/cache/keep-not", body: "stale"},
		entry{name: "opt/gone", body: "x"},
	)
	if err := Unpack(base, root); err != nil {
		t.Fatal(err)
	}
	top := layer(t,
		entry{name: "etc/passwd", body: "root:x:0:0\nuser:x:1000:1000\n"},
		entry{name: "opt/.wh.gone", body: ""},
		entry{name: "var/cache/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "var/cache/.wh..wh..opq", body: ""},
		entry{name: "var/cache/new", body: "fresh"},
	)
	if err := Unpack(top, root); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		"etc/passwd":         "root:x:0:0\nuser:x:1000:1000\n",
		"bin/ls":             "ELF",
		"opt/gone":           "missing",
		"var/cache/old":      "missing",
		"var/cache/keep-not": "missing",
		"var/cache/new":      "fresh",
	} {
		if got := read(t, filepath.Join(root, p)); got != want {
			t.Errorf("%s: got %q, want %q", p, got, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(root, "bin/sh")); err != nil || l != "/bin/busybox" {
		t.Errorf("bin/sh: got link %q %v, want /bin/busybox kept as it is", l, err)
	}
	if st, _ := os.Stat(filepath.Join(root, "bin/busybox")); st == nil || st.Mode().Perm() != 0o755 {
		t.Errorf("bin/busybox mode: %v", st)
	}
}

// A hostile layer cannot write outside the root it is unpacked into.
func TestUnpackRefusesEscapes(t *testing.T) {
	outside := t.TempDir() // stands for the phone's own files
	tests := []struct {
		name    string
		entries []entry
		// refused: Unpack fails with ErrUnsafeLayer; else it succeeds and
		// the write lands inside the root at inside.
		refused bool
		inside  string
	}{
		{name: "a name climbing out", entries: []entry{{name: "../../escape", body: "x"}}, refused: true},
		{name: "a name climbing out midway", entries: []entry{{name: "etc/../../escape", body: "x"}}, refused: true},
		{name: "a hard link to outside", entries: []entry{{name: "steal", typ: tar.TypeLink, link: "../../" + filepath.Base(outside) + "/secret"}}, refused: true},
		{name: "a hard link to a symbolic link", entries: []entry{
			{name: "l", typ: tar.TypeSymlink, link: outside + "/secret"},
			{name: "h", typ: tar.TypeLink, link: "l"},
		}, refused: true},
		{name: "an absolute link to a directory outside, then a file through it", entries: []entry{
			{name: "evil", typ: tar.TypeSymlink, link: outside},
			{name: "evil/planted", body: "x"},
		}, inside: strings.TrimPrefix(outside, "/") + "/planted"},
		{name: "a relative link climbing out, then a file through it", entries: []entry{
			{name: "up", typ: tar.TypeSymlink, link: "../../../../.."},
			{name: "up/planted", body: "x"},
		}, inside: "planted"},
		{name: "a whiteout through a link to outside", entries: []entry{
			{name: "evil", typ: tar.TypeSymlink, link: outside},
			{name: "evil/.wh.secret", body: ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("phone"), 0o600); err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(t.TempDir(), "a", "b", "rootfs")
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			err := Unpack(layer(t, tt.entries...), root)
			if tt.refused != errors.Is(err, ErrUnsafeLayer) {
				t.Errorf("got %v, want refused=%v", err, tt.refused)
			}
			if !tt.refused && err != nil {
				t.Errorf("got %v, want the layer unpacked inside the root", err)
			}
			if got := read(t, filepath.Join(outside, "secret")); got != "phone" {
				t.Errorf("the file outside the root: got %q, want it untouched", got)
			}
			if _, err := os.Stat(filepath.Join(outside, "planted")); err == nil {
				t.Error("a file was planted outside the root")
			}
			for _, p := range []string{filepath.Join(root, "..", "escape"), filepath.Join(root, "../../..", "escape")} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s was written", p)
				}
			}
			if tt.inside != "" {
				if got := read(t, filepath.Join(root, tt.inside)); got != "x" {
					t.Errorf("%s inside the root: got %q, want the write there", tt.inside, got)
				}
			}
		})
	}
}
