// Package image is the agent's wrapper around image registries and the
// phone's filesystem: it pulls images (the phone's platform from manifest
// lists, credentials, the farm's mirrors), keeps their layers in a cache
// shared across images, and unpacks them into root filesystems for proot,
// never writing outside the root it unpacks into.
package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrUnsafeLayer is a layer entry that would write outside the root.
var ErrUnsafeLayer = errors.New("unsafe layer")

const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
	maxSymlinks    = 40
)

// Unpack applies one uncompressed layer (a tar stream) onto root: files,
// directories, symbolic and hard links, with whiteouts deleting what lower
// layers made and opaque markers emptying directories. Entries are placed
// by resolving their parents inside root, symbolic links included, so a
// layer cannot write outside root; an entry that names a path outside it
// (.. past the root, a hard link to outside) is refused with
// ErrUnsafeLayer. Hard links that the filesystem refuses become copies.
// Owners are not applied (the agent runs unprivileged; proot fakes them).
func Unpack(r io.Reader, root string) error {
	tr := tar.NewReader(r)
	made := map[string]bool{} // paths this layer created, kept by an opaque marker
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue // the root itself
		}
		dir, base := path.Split(name)
		parent, err := resolve(root, dir, true)
		if err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		switch {
		case base == opaqueMarker:
			if err := emptyDir(parent, path.Clean("/"+dir), made); err != nil {
				return err
			}
			continue
		case strings.HasPrefix(base, whiteoutPrefix):
			target := filepath.Join(parent, strings.TrimPrefix(base, whiteoutPrefix))
			if err := os.RemoveAll(target); err != nil {
				return fmt.Errorf("whiteout %s: %w", hdr.Name, err)
			}
			continue
		}
		target := filepath.Join(parent, base)
		made["/"+name] = true
		if err := place(tr, hdr, root, target); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
}

// cleanName makes an entry name root-relative, refusing names that leave
// the root.
func cleanName(n string) (string, error) {
	clean := path.Clean("/" + n)
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: entry %q climbs out of the root", ErrUnsafeLayer, n)
		}
	}
	return strings.TrimPrefix(clean, "/"), nil
}

// resolve returns the host path of rel (root-relative) with every symbolic
// link on the way followed inside root: an absolute link target starts
// again at root, and .. stops at root. With parent set, missing
// directories are created.
func resolve(root, rel string, mkdir bool) (string, error) {
	cur := root
	parts := strings.Split(strings.Trim(rel, "/"), "/")
	links := 0
	for i := 0; i < len(parts); i++ {
		p := parts[i]
		switch p {
		case "", ".":
			continue
		case "..":
			if cur != root {
				cur = filepath.Dir(cur)
			}
			continue
		}
		next := filepath.Join(cur, p)
		st, err := os.Lstat(next)
		switch {
		case errors.Is(err, fs.ErrNotExist) && mkdir:
			if err := os.Mkdir(next, 0o755); err != nil {
				return "", err
			}
			cur = next
		case err != nil:
			return "", err
		case st.Mode()&fs.ModeSymlink != 0:
			links++
			if links > maxSymlinks {
				return "", fmt.Errorf("%w: too many symbolic links under %s", ErrUnsafeLayer, rel)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", err
			}
			if path.IsAbs(target) {
				cur = root
			}
			parts = append(strings.Split(strings.Trim(target, "/"), "/"), parts[i+1:]...)
			i = -1
		case st.IsDir():
			cur = next
		default:
			return "", fmt.Errorf("%s is not a directory", strings.TrimPrefix(next, root))
		}
	}
	return cur, nil
}

// emptyDir removes what lower layers left in dir (an opaque directory),
// keeping what this layer made.
func emptyDir(dir, rel string, made map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if made[path.Join(rel, e.Name())] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// place creates one entry at target (whose parent is resolved inside
// root), replacing what is there unless both are directories.
func place(tr *tar.Reader, hdr *tar.Header, root, target string) error {
	mode := fs.FileMode(hdr.Mode).Perm() | fs.FileMode(hdr.Mode)&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
	if hdr.Typeflag != tar.TypeDir {
		if st, err := os.Lstat(target); err == nil && (st.IsDir() || hdr.Typeflag != tar.TypeDir) {
			if err := os.RemoveAll(target); err != nil {
				return err
			}
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if st, err := os.Lstat(target); err == nil && !st.IsDir() {
			if err := os.Remove(target); err != nil {
				return err
			}
		}
		if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		// Directories stay writable by the agent, which unpacks the next
		// layers into them; proot shows the image's modes only to root.
		return os.Chmod(target, mode|0o700)
	case tar.TypeReg, tar.TypeRegA:
		return writeFile(target, tr, mode)
	case tar.TypeSymlink:
		// A link is stored as it is: it points inside the container,
		// where proot resolves it.
		return os.Symlink(hdr.Linkname, target)
	case tar.TypeLink:
		name, err := cleanName(hdr.Linkname)
		if err != nil {
			return err
		}
		dir, base := path.Split(name)
		parent, err := resolve(root, dir, false)
		if err != nil {
			return fmt.Errorf("hard link to %s: %w", hdr.Linkname, err)
		}
		src := filepath.Join(parent, base)
		st, err := os.Lstat(src)
		if err != nil {
			return fmt.Errorf("hard link to %s: %w", hdr.Linkname, err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%w: hard link to %s, which is not a regular file", ErrUnsafeLayer, hdr.Linkname)
		}
		if err := os.Link(src, target); err == nil {
			return nil
		}
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		return writeFile(target, f, st.Mode().Perm())
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return nil // proot binds the phone's /dev; nodes cannot be made unprivileged
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("unsupported entry type %q", hdr.Typeflag)
	}
}

func writeFile(target string, r io.Reader, mode fs.FileMode) error {
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(target, mode)
}
