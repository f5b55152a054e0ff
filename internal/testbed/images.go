package testbed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/phonefarm/phonefarm/internal/oci"
)

// The images of k3s v1.32's packaged components and its pause image, by the
// references k3s's manifests and defaults name.
const (
	PauseImage     = "docker.io/rancher/mirrored-pause:3.6"
	CoreDNSImage   = "docker.io/rancher/mirrored-coredns-coredns:1.12.0"
	LocalPathImage = "docker.io/rancher/local-path-provisioner:v0.0.30"
	BusyboxImage   = "docker.io/rancher/mirrored-library-busybox:1.36.1"
)

// imagesRecipe changes whenever the way images are built here changes, so
// a cached build is never reused across recipes.
const imagesRecipe = "system-images-1"

// BusyboxPath is the static busybox (Debian's busybox-static, which
// scripts/setup.sh installs) the test bed's busybox images are made of.
const BusyboxPath = "/bin/busybox"

// SystemImages builds the pause image and k3s's packaged components from
// the programs in workloads (WorkloadTools) and this machine's static
// busybox, for this machine's architecture. The result is cached as an OCI
// layout under cacheDir, keyed by its inputs.
func SystemImages(ctx context.Context, cacheDir, workloads string) (map[string]v1.Image, error) {
	inputs := []string{BusyboxPath}
	for _, b := range WorkloadBinaries {
		inputs = append(inputs, filepath.Join(workloads, b))
	}
	return cachedImages(cacheDir, "system", imagesRecipe, inputs, func(tmp string) (map[string]v1.Image, error) {
		return buildSystemImages(workloads, tmp)
	})
}

func buildSystemImages(workloads, tmp string) (map[string]v1.Image, error) {
	arch := goArch()
	bin := func(b string) string { return filepath.Join(workloads, b) }
	single := func(path, src string, cfg oci.Config) (v1.Image, error) {
		l, err := oci.Layer([]oci.File{{Path: path, Mode: 0o755, Source: src}})
		if err != nil {
			return nil, err
		}
		return oci.Image(arch, cfg, l)
	}
	out := map[string]v1.Image{}
	var err error
	if out[PauseImage], err = single("/pause", bin("pause"), oci.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"}); err != nil {
		return nil, err
	}
	if out[CoreDNSImage], err = single("/coredns", bin("coredns"), oci.Config{Entrypoint: []string{"/coredns"}, Ports: []int{53}}); err != nil {
		return nil, err
	}
	if out[LocalPathImage], err = single("/usr/bin/local-path-provisioner", bin("local-path-provisioner"), oci.Config{Cmd: []string{"local-path-provisioner"}}); err != nil {
		return nil, err
	}
	bb, err := busybox()
	if err != nil {
		return nil, err
	}
	if out[BusyboxImage], err = oci.Image(arch, oci.Config{Cmd: []string{"sh"}}, bb); err != nil {
		return nil, err
	}
	return out, nil
}

// busybox is a layer with the static busybox, a link per applet and a
// minimal /etc, as busybox's own images have.
func busybox() (v1.Layer, error) {
	out, err := exec.Command(BusyboxPath, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets (is busybox-static installed? scripts/setup.sh installs it): %w", err)
	}
	files := []oci.File{
		{Path: "/bin/busybox", Mode: 0o755, Source: BusyboxPath},
		{Path: "/etc/passwd", Mode: 0o644, Content: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")},
		{Path: "/etc/group", Mode: 0o644, Content: []byte("root:x:0:\nnobody:x:65534:\n")},
		{Path: "/tmp", Mode: fs.ModeDir | 0o777 | fs.ModeSticky},
		{Path: "/root", Mode: fs.ModeDir | 0o700},
	}
	for _, applet := range strings.Fields(string(out)) {
		p := "/" + applet
		if p == "/bin/busybox" {
			continue
		}
		files = append(files, oci.File{Path: p, Mode: fs.ModeSymlink | 0o777, Link: "/bin/busybox"})
	}
	return oci.Layer(files)
}

// cachedImages returns the images a build makes, building them once into
// an OCI layout under cacheDir/testbed/images-NAME-KEY; KEY hashes the
// recipe and the inputs' sizes and times. Concurrent callers build once.
func cachedImages(cacheDir, name, recipe string, inputs []string, build func(tmp string) (map[string]v1.Image, error)) (map[string]v1.Image, error) {
	h := sha256.New()
	fmt.Fprintln(h, recipe)
	for _, in := range inputs {
		st, err := os.Stat(in)
		if err != nil {
			return nil, fmt.Errorf("image input: %w", err)
		}
		fmt.Fprintln(h, in, st.Size(), st.ModTime().UnixNano())
	}
	base := filepath.Join(cacheDir, "testbed")
	dir := filepath.Join(base, "images-"+name+"-"+hex.EncodeToString(h.Sum(nil))[:12])
	if imgs, err := ImagesFromLayout(dir); err == nil {
		return imgs, nil
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockFile(filepath.Join(base, ".images.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if imgs, err := ImagesFromLayout(dir); err == nil {
		return imgs, nil // built while we waited
	}
	tmp := dir + ".building"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	imgs, err := build(tmp)
	if err != nil {
		return nil, err
	}
	lp, err := layout.Write(filepath.Join(tmp, "layout"), empty.Index)
	if err != nil {
		return nil, err
	}
	refs := make([]string, 0, len(imgs))
	for ref := range imgs {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		if err := lp.AppendImage(imgs[ref], layout.WithAnnotations(map[string]string{refAnnotation: ref})); err != nil {
			return nil, fmt.Errorf("write image %s: %w", ref, err)
		}
	}
	if err := os.Rename(filepath.Join(tmp, "layout"), dir); err != nil {
		return nil, err
	}
	return ImagesFromLayout(dir)
}

// goArch is this machine's architecture as images name it.
func goArch() string { return runtime.GOARCH }
