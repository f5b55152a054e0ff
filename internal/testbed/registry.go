package testbed

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
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
	URL    string
	Addr   string
	srv    *http.Server
	done   chan struct{}
	remote []remote.Option // how to push to it
	secure bool            // served over TLS
}

// StartRegistry serves blobsDir on addr and pushes images into it (their
// blobs are written to blobsDir once and found there on later starts).
// Stop it with Close.
func StartRegistry(ctx context.Context, addr, blobsDir string, images map[string]v1.Image) (*Registry, error) {
	return startRegistry(ctx, addr, blobsDir, images, nil, authn.Anonymous)
}

// StartPrivateRegistry is StartRegistry over TLS with cert, answering only
// requests that carry user and password (HTTP basic authentication): a
// registry whose images reach a phone only through the credentials and CA
// in the farm's registries configuration.
func StartPrivateRegistry(ctx context.Context, addr, blobsDir string, cert tls.Certificate, roots *x509.CertPool, user, password string, images map[string]v1.Image) (*Registry, error) {
	return startRegistry(ctx, addr, blobsDir, images, &privateRegistry{cert: cert, roots: roots, user: user, password: password}, &authn.Basic{Username: user, Password: password})
}

type privateRegistry struct {
	cert           tls.Certificate
	roots          *x509.CertPool
	user, password string
}

// handler asks for credentials as a registry does (401 with a Basic
// challenge), comparing them in constant time.
func (p *privateRegistry) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, pw, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(p.user)) != 1 || subtle.ConstantTimeCompare([]byte(pw), []byte(p.password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="phonefarm test bed"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func startRegistry(ctx context.Context, addr, blobsDir string, images map[string]v1.Image, private *privateRegistry, auth authn.Authenticator) (*Registry, error) {
	if err := os.MkdirAll(filepath.Join(blobsDir, "sha256"), 0o755); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("test-bed registry: %w", err)
	}
	var h http.Handler = registry.New(registry.WithBlobHandler(registry.NewDiskBlobHandler(blobsDir)), registry.Logger(log.New(io.Discard, "", 0)))
	scheme := "http"
	r := &Registry{Addr: ln.Addr().String(), done: make(chan struct{}), remote: []remote.Option{remote.WithAuth(auth)}}
	if private != nil {
		scheme = "https"
		h = private.handler(h)
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{private.cert}, MinVersion: tls.VersionTLS12})
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: private.roots, MinVersion: tls.VersionTLS12}
		r.remote = append(r.remote, remote.WithTransport(tr))
		r.secure = true
	}
	r.URL = scheme + "://" + r.Addr
	r.srv = &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
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
		if err := remote.Write(local, images[ref], append([]remote.Option{remote.WithContext(ctx)}, r.remote...)...); err != nil {
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
	if r.secure {
		return name.ParseReference(r.Addr + "/" + repo + ":" + ref.Identifier())
	}
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

// RegistryCertificate makes a CA and a serving certificate it signed for
// ip, as a farm's own registry has: caPEM is what the inventory's caFile
// holds, roots trusts it here.
func RegistryCertificate(ip string) (caPEM []byte, cert tls.Certificate, roots *x509.CertPool, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, cert, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "phonefarm test-bed registry CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, cert, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, cert, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, cert, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(ip)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, cert, nil, err
	}
	roots = x509.NewCertPool()
	roots.AddCert(ca)
	cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), cert, roots, nil
}
