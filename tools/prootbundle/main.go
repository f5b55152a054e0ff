// Command prootbundle runs the proot embedded in it with the glibc it was
// built against: on first use it writes proot, glibc's dynamic loader and
// the libraries into a directory beside itself (one per bundle content,
// written whole and renamed into place, so concurrent starts and a
// killed start are harmless), then runs proot through that loader with
// the bundle's libraries only. Android's kernel runs glibc programs this
// way; the phone's own libraries are never used. Arguments, environment
// and exit status are proot's.
package main

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// bundle holds proot, ld.so (glibc's loader, renamed), the libraries
// proot needs and VERSION (the Debian packages they came from).
//
//go:embed bundle
var bundle embed.FS

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--bundle-version" {
		b, _ := bundle.ReadFile("bundle/VERSION")
		os.Stdout.Write(b)
		return
	}
	dir, err := unpack()
	if err != nil {
		fmt.Fprintf(os.Stderr, "proot bundle: %v\n", err)
		os.Exit(127)
	}
	argv := append([]string{"ld.so", "--library-path", dir, "--argv0", "proot", filepath.Join(dir, "proot")}, os.Args[1:]...)
	err = syscall.Exec(filepath.Join(dir, "ld.so"), argv, os.Environ())
	fmt.Fprintf(os.Stderr, "proot bundle: run proot: %v\n", err)
	os.Exit(127)
}

// unpack returns the directory holding the bundle's files, writing it
// first if this content is not there yet.
func unpack() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	names, err := fs.Glob(bundle, "bundle/*")
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		b, err := bundle.ReadFile(n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", n, len(b))
		h.Write(b)
	}
	dir := exe + ".d/" + hex.EncodeToString(h.Sum(nil))[:16]
	if _, err := os.Stat(filepath.Join(dir, "ld.so")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // gone by then when renamed
	for _, n := range names {
		b, _ := bundle.ReadFile(n)
		if err := os.WriteFile(filepath.Join(tmp, filepath.Base(n)), b, 0o755); err != nil {
			return "", err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another start put it there first.
		if _, serr := os.Stat(filepath.Join(dir, "ld.so")); serr == nil {
			return dir, nil
		}
		return "", err
	}
	return dir, nil
}
