package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RegistryPort is where the test bed's registry listens on the bridge
// address.
const RegistryPort = 5000

// Upstreams are the registries the test bed's registry mirrors. Each
// upstream's repositories are kept under its name (docker.io/rancher/...),
// so the inventory's mirrors rewrite repositories to that prefix.
var Upstreams = []string{"docker.io", "registry.k8s.io", "phonefarm.dev"}

// Registry is an image registry (go-containerregistry's, serving blobs from
// disk) on the test bed's bridge address, where every host reaches it and
// nothing else does: the farm's mirror of the upstream registries.
type Registry struct {
	// URL is the registry's base URL, http://GATEWAY:PORT.
	URL  string
	Addr string
	srv  *http.Server
	done chan struct{}
}

// StartRegistry serves blobsDir on addr and pushes images into it (their
// blobs are written to blobsDir once and found there on later starts).
// Stop it with Close.
func StartRegistry(ctx context.Context, addr, blobsDir string, images map[string]v1.Image) (*Registry, error) {
	if err := os.MkdirAll(filepath.Join(blobsDir, "sha256"), 0o755); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("test-bed registry: %w", err)
	}
	r := &Registry{URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String(), done: make(chan struct{})}
	r.srv = &http.Server{
		Handler:           registry.New(registry.WithBlobHandler(registry.NewDiskBlobHandler(blobsDir)), registry.Logger(log.New(io.Discard, "", 0))),
		ReadHeaderTimeout: 30 * time.Second,
	}
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(ln)
	}()
	if err := r.Push(ctx, images); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Push stores images under their references (docker.io/rancher/...: the
// upstream's name becomes the first path element).
func (r *Registry) Push(ctx context.Context, images map[string]v1.Image) error {
	refs := make([]string, 0, len(images))
	for ref := range images {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		local, err := r.Ref(ref)
		if err != nil {
			return err
		}
		if err := remote.Write(local, images[ref], remote.WithContext(ctx)); err != nil {
			return fmt.Errorf("push %s to the test-bed registry: %w", ref, err)
		}
	}
	return nil
}

// Ref is where the registry keeps an upstream image reference.
func (r *Registry) Ref(upstream string) (name.Reference, error) {
	ref, err := name.ParseReference(upstream)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", upstream, err)
	}
	host := ref.Context().RegistryStr()
	if host == name.DefaultRegistry {
		host = "docker.io" // as containerd names it in a mirror's request
	}
	repo := host + "/" + ref.Context().RepositoryStr()
	return name.ParseReference(r.Addr+"/"+repo+":"+ref.Identifier(), name.Insecure)
}

// Close stops the registry.
func (r *Registry) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
	<-r.done
}

// Answers reports whether a registry answers at url.
func RegistryAnswers(url string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url + "/v2/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// ImagesFromLayout reads the images of an OCI layout by the reference
// names they were written with.
func ImagesFromLayout(dir string) (map[string]v1.Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	out := map[string]v1.Image{}
	for _, d := range m.Manifests {
		ref := d.Annotations[refAnnotation]
		if ref == "" {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("image %s in %s: %w", ref, dir, err)
		}
		out[ref] = img
	}
	if len(out) == 0 {
		return nil, errors.New("no named images in " + dir)
	}
	return out, nil
}

const refAnnotation = "org.opencontainers.image.ref.name"

// MirrorRewrite is the rewrite a k3s mirror of upstream needs to find its
// images in the test bed's registry.
func MirrorRewrite(upstream string) map[string]string {
	return map[string]string{"^(.*)$": strings.TrimSuffix(upstream, "/") + "/$1"}
}

// RegistryProcess is a registry serving in a process of its own, for a
// persistent test bed (the demo farm) that outlives the command that
// started it.
type RegistryProcess struct {
	URL  string
	PID  int
	Name string // the program's name, checked before it is killed
}

// StartRegistryProcess runs command (a program that calls ServeRegistry
// with the address and blobs directory appended as --addr and --blobs) on
// the test bed's bridge address, detached when the test bed is persistent,
// and waits until it answers.
func StartRegistryProcess(ctx context.Context, tb *Testbed, command []string) (*RegistryProcess, error) {
	dir := filepath.Join(tb.Dir, "registry")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("%s:%d", tb.Gateway, RegistryPort)
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(command[0], append(command[1:], "--addr", addr, "--blobs", filepath.Join(dir, "blobs"))...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detach(tb)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &RegistryProcess{URL: "http://" + addr, PID: cmd.Process.Pid, Name: filepath.Base(command[0])}
	go cmd.Wait() //nolint:errcheck // Stop kills it
	if err := waitHTTP(ctx, p.URL+"/v2/", 30*time.Second); err != nil {
		p.Stop()
		b, _ := os.ReadFile(logf.Name())
		return nil, fmt.Errorf("test-bed registry: %w\n%s", err, b)
	}
	return p, nil
}

// Stop kills the registry process.
func (p *RegistryProcess) Stop() { killPID(p.PID, p.Name) }

// ServeRegistry serves blobsDir on addr until ctx ends: the body of a
// registry process.
func ServeRegistry(ctx context.Context, addr, blobsDir string) error {
	r, err := StartRegistry(ctx, addr, blobsDir, nil)
	if err != nil {
		return err
	}
	<-ctx.Done()
	r.Close()
	return nil
}

// PushTo pushes images into the registry at url (http://host:port).
func PushTo(ctx context.Context, url string, images map[string]v1.Image) error {
	r := &Registry{URL: url, Addr: strings.TrimPrefix(url, "http://")}
	return r.Push(ctx, images)
}
