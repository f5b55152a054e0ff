package testbed

import (
	"bufio"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

//go:embed rootfs
var rootfsFiles embed.FS

// packages make up the shared image: an SSH server, OpenRC, nftables and the
// commands phonefarm expects on a phone.
var packages = []string{
	"openssh-server", "openrc", "nftables", "iptables", "iproute2", "procps",
	"netbase", "ca-certificates", "sudo", "opendoas", "kmod", "psmisc",
	// What a k3s release carries in its data archive and a k3s built
	// from source lacks: runc and the standard CNI plugins.
	"runc", "containernetworking-plugins",
}

// recipeHash identifies the image: a change to the package list or to any
// embedded file builds a new image instead of reusing a stale one.
func recipeHash() (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, "debian bookworm minbase", strings.Join(packages, ","))
	var names []string
	err := fs.WalkDir(rootfsFiles, "rootfs", func(p string, d fs.DirEntry, err error) error {
		// hostinit.sh starts each host; it is not part of the image.
		if err == nil && !d.IsDir() && p != "rootfs/hostinit.sh" {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := rootfsFiles.ReadFile(n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// EnsureRootfs returns the shared read-only image under cacheDir, building it
// with mmdebstrap from the machine's Debian mirror when it is not there yet.
// The build goes to a temporary directory renamed into place, so an
// interrupted build is never mistaken for a finished one.
func EnsureRootfs(ctx context.Context, cacheDir string, log *slog.Logger) (string, error) {
	id, err := recipeHash()
	if err != nil {
		return "", fmt.Errorf("hash test-bed recipe: %w", err)
	}
	dir := filepath.Join(cacheDir, "testbed", "rootfs-"+id)
	if _, err := os.Stat(filepath.Join(dir, "etc", "init.d", "sshd")); err == nil {
		return dir, nil
	}
	// Test packages run in parallel: one builds, the others wait for it.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(filepath.Join(filepath.Dir(dir), ".build.lock"))
	if err != nil {
		return "", fmt.Errorf("lock test-bed image build: %w", err)
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, "etc", "init.d", "sshd")); err == nil {
		return dir, nil // built while we waited
	}
	for _, tool := range []string{"mmdebstrap", "unshare", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("build test-bed image: %s is not installed (scripts/test.sh installs it)", tool)
		}
	}
	mirror, err := debianMirror()
	if err != nil {
		return "", err
	}
	tmp := dir + ".building"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	log.Info("building test-bed image (once per machine)", "dir", dir, "mirror", mirror)
	cmd := exec.CommandContext(ctx, "mmdebstrap", "--variant=minbase", "--include="+strings.Join(packages, ","),
		"--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
		"--dpkgopt=path-exclude=/usr/share/doc/*", "bookworm", tmp, mirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build test-bed image with mmdebstrap: %w\n%s", err, tail(out, 3000))
	}
	files := filepath.Join(filepath.Dir(dir), "files-"+id)
	if err := extractFiles(files); err != nil {
		return "", err
	}
	defer os.RemoveAll(files)
	if out, err := exec.CommandContext(ctx, "sh", filepath.Join(files, "customize.sh"), tmp, files).CombinedOutput(); err != nil {
		return "", fmt.Errorf("customize test-bed image: %w\n%s", err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

func extractFiles(dst string) error {
	return fs.WalkDir(rootfsFiles, "rootfs", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, strings.TrimPrefix(p, "rootfs"))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := rootfsFiles.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o755)
	})
}

// debianMirror is the first Debian mirror this machine's apt uses.
func debianMirror() (string, error) {
	for _, f := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			switch {
			case len(fields) >= 2 && fields[0] == "URIs:":
				fh.Close()
				return fields[1], nil
			case len(fields) >= 3 && fields[0] == "deb" && strings.HasPrefix(fields[1], "http"):
				fh.Close()
				return fields[1], nil
			}
		}
		fh.Close()
	}
	return "", fmt.Errorf("no Debian mirror found in /etc/apt; the test bed builds its image from the machine's apt mirror")
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
