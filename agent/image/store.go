package image

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/phonefarm/phonefarm/agent/config"
)

// Mirror, RegistryAuth and Registries are the agent configuration's.
type (
	Mirror       = config.Mirror
	RegistryAuth = config.RegistryAuth
	Registries   = config.Registries
)

// Store pulls images into a cache on the phone and gives root filesystems
// of them.
type Store struct {
	// Dir holds blobs/ (layers and configs by digest, shared by every
	// image) and rootfs/ (each image unpacked once, by digest).
	Dir        string
	Platform   v1.Platform // the phone's; default linux/GOARCH
	Registries Registries
	Log        *slog.Logger

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// Image is a pulled image.
type Image struct {
	Ref    string // as the pod names it
	Digest string // of its manifest
	Config v1.Config
	// RootFS is the image unpacked, shared by every container of it: copy
	// it before running anything in it.
	RootFS string
}

// PullSecret is one registry credential from a pod's imagePullSecrets
// (a .dockerconfigjson).
type PullSecret map[string]RegistryAuth

// ParseDockerConfig reads a kubernetes.io/dockerconfigjson secret's data.
func ParseDockerConfig(b []byte) (PullSecret, error) {
	var cfg struct {
		Auths map[string]struct {
			Username, Password, Auth string
			IdentityToken            string `json:"identitytoken"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("image pull secret: %w", err)
	}
	out := PullSecret{}
	for host, a := range cfg.Auths {
		ra := RegistryAuth{Username: a.Username, Password: a.Password, Token: a.IdentityToken}
		if a.Auth != "" && ra.Username == "" {
			if dec, err := base64.StdEncoding.DecodeString(a.Auth); err == nil {
				ra.Username, ra.Password, _ = strings.Cut(string(dec), ":")
			}
		}
		u := host
		if p, err := url.Parse(host); err == nil && p.Host != "" {
			u = p.Host
		}
		out[strings.TrimSuffix(u, "/")] = ra
	}
	return out, nil
}

func (s *Store) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Store) platform() v1.Platform {
	if s.Platform.Architecture != "" {
		return s.Platform
	}
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if p.Architecture == "arm" {
		p.Variant = "v7"
	}
	return p
}

// lock serializes work on one key (an image digest).
func (s *Store) lock(key string) func() {
	s.mu.Lock()
	if s.locks == nil {
		s.locks = map[string]*sync.Mutex{}
	}
	m := s.locks[key]
	if m == nil {
		m = &sync.Mutex{}
		s.locks[key] = m
	}
	s.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// Pull resolves ref (through the mirrors, with the pod's pull secrets and
// the farm's credentials), downloads the layers it lacks and unpacks the
// image once. Pull does not reach a registry when the image is already
// cached and pull is false (imagePullPolicy IfNotPresent, Never).
func (s *Store) Pull(ctx context.Context, ref string, secrets []PullSecret, pull bool) (*Image, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", ref, err)
	}
	if !pull {
		if img, err := s.cached(r); err == nil {
			return img, nil
		}
	}
	var errs []error
	for _, src := range s.sources(r) {
		img, err := s.pullFrom(ctx, ref, src, secrets)
		if err == nil {
			return img, nil
		}
		errs = append(errs, fmt.Errorf("from %s: %w", src.Context().RegistryStr(), err))
	}
	return nil, fmt.Errorf("pull %s: %w", ref, errors.Join(errs...))
}

// ErrNotCached is an image the phone does not have.
var ErrNotCached = errors.New("image not on the phone")

// Cached returns an image already pulled, without reaching a registry.
func (s *Store) Cached(ref string) (*Image, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", ref, err)
	}
	return s.cached(r)
}

func (s *Store) cached(r name.Reference) (*Image, error) {
	b, err := os.ReadFile(s.tagFile(r))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, ErrNotCached)
	}
	var img Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, fmt.Errorf("%s: %w", r, ErrNotCached)
	}
	if _, err := os.Stat(img.RootFS); err != nil {
		return nil, fmt.Errorf("%s: %w", r, ErrNotCached)
	}
	return &img, nil
}

func (s *Store) tagFile(r name.Reference) string {
	key := strings.NewReplacer("/", "_", ":", "_", "@", "_").Replace(r.Name())
	return filepath.Join(s.Dir, "refs", key+".json")
}

// sources are where to look for r: the mirrors' endpoints in order, with
// their rewrites, then r's own registry.
func (s *Store) sources(r name.Reference) []name.Reference {
	host := r.Context().RegistryStr()
	if host == name.DefaultRegistry {
		host = "docker.io"
	}
	m, ok := s.Registries.Mirrors[host]
	if !ok {
		m, ok = s.Registries.Mirrors["*"]
	}
	var out []name.Reference
	if ok {
		for _, ep := range m.Endpoints {
			u, err := url.Parse(ep)
			if err != nil || u.Host == "" {
				continue
			}
			repo := r.Context().RepositoryStr()
			for pattern, repl := range m.Rewrites {
				if re, err := regexp.Compile(pattern); err == nil && re.MatchString(repo) {
					repo = re.ReplaceAllString(repo, repl)
					break
				}
			}
			if p := strings.Trim(u.Path, "/"); p != "" && p != "v2" {
				repo = strings.TrimPrefix(p, "v2/") + "/" + repo
			}
			var opts []name.Option
			if u.Scheme == "http" || s.Registries.Configs[u.Host].Insecure {
				opts = append(opts, name.Insecure)
			}
			full := u.Host + "/" + repo + sep(r) + r.Identifier()
			if mr, err := name.ParseReference(full, opts...); err == nil {
				out = append(out, mr)
			}
		}
	}
	return append(out, r)
}

func sep(r name.Reference) string {
	if _, ok := r.(name.Digest); ok {
		return "@"
	}
	return ":"
}

// keychain finds credentials for a registry: the pod's pull secrets
// first, then the farm's.
type keychain struct {
	secrets []PullSecret
	farm    map[string]RegistryAuth
}

func (k keychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	host := res.RegistryStr()
	for _, s := range k.secrets {
		for _, h := range []string{host, "https://" + host, "index.docker.io/v1/", "docker.io"} {
			if a, ok := s[h]; ok && (h == host || host == name.DefaultRegistry) {
				return authFor(a), nil
			}
		}
	}
	if a, ok := k.farm[host]; ok && (a.Username != "" || a.Token != "") {
		return authFor(a), nil
	}
	return authn.Anonymous, nil
}

func authFor(a RegistryAuth) authn.Authenticator {
	return authn.FromConfig(authn.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.Token})
}

func (s *Store) pullFrom(ctx context.Context, ref string, src name.Reference, secrets []PullSecret) (*Image, error) {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithPlatform(s.platform()),
		remote.WithAuthFromKeychain(keychain{secrets: secrets, farm: s.Registries.Configs})}
	desc, err := remote.Get(src, opts...)
	if err != nil {
		return nil, err
	}
	if desc.MediaType.IsIndex() {
		// remote.Get returns the index; the platform picks the image.
		if _, err := desc.ImageIndex(); err != nil {
			return nil, err
		}
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("no image for %s: %w", platformString(s.platform()), err)
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	if cf.Architecture != "" && cf.Architecture != s.platform().Architecture {
		return nil, fmt.Errorf("the image is for %s/%s, the phone is %s", cf.OS, cf.Architecture, platformString(s.platform()))
	}
	unlock := s.lock(digest.String())
	defer unlock()
	rootfs := filepath.Join(s.Dir, "rootfs", digest.Hex)
	if _, err := os.Stat(rootfs); err != nil {
		if err := s.unpack(ctx, img, rootfs); err != nil {
			return nil, err
		}
	}
	out := &Image{Ref: ref, Digest: digest.String(), Config: cf.Config, RootFS: rootfs}
	r, _ := name.ParseReference(ref)
	b, _ := json.Marshal(out)
	if err := writeAtomic(s.tagFile(r), b); err != nil {
		return nil, err
	}
	s.log().Info("pulled image", "image", ref, "from", src.Context().RegistryStr(), "digest", digest.String())
	return out, nil
}

// unpack lays the image's layers, each cached by digest, into a new root
// filesystem, renamed into place when complete.
func (s *Store) unpack(ctx context.Context, img v1.Image, rootfs string) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	tmp := rootfs + ".unpacking"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		rc, err := s.layer(l)
		if err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
		err = Unpack(rc, tmp)
		rc.Close()
		if err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	return os.Rename(tmp, rootfs)
}

// layer returns the uncompressed content of a layer, downloading its blob
// into the shared cache first when it is not there.
func (s *Store) layer(l v1.Layer) (io.ReadCloser, error) {
	d, err := l.Digest()
	if err != nil {
		return nil, err
	}
	mt, err := l.MediaType()
	if err != nil {
		return nil, err
	}
	blob := filepath.Join(s.Dir, "blobs", d.Algorithm, d.Hex)
	if _, err := os.Stat(blob); err != nil {
		rc, err := l.Compressed()
		if err != nil {
			return nil, err
		}
		err = writeStream(blob, rc, d)
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	f, err := os.Open(blob)
	if err != nil {
		return nil, err
	}
	return decompress(f, mt)
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
