package provision

import (
	"context"
	"fmt"
	agentconfig "github.com/phonefarm/phonefarm/agent/config"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/phonefarm/phonefarm/inventory"
)

// Paths of the registry configuration phonefarm writes.
const (
	RegistriesPath = "/etc/rancher/k3s/registries.yaml"
	// RegistryFilesDir holds the CA certificates, client certificates and
	// keys that registries.yaml refers to.
	RegistryFilesDir = "/etc/rancher/k3s/phonefarm-registries"
)

// Registries is the rendered registry configuration of the farm, the same
// on every phone. Config holds credentials: it is written root-only and
// never printed.
type Registries struct {
	Config []byte
	// Files are the certificates and keys Config refers to.
	Files []ManagedFile
	// Agent is the same for the rootless agent's configuration.
	Agent agentconfig.Registries
}

// ManagedFile is a file phonefarm writes whole.
type ManagedFile struct {
	Path    string
	Mode    fs.FileMode
	Content []byte
}

// registriesYAML is k3s's registries.yaml. Field order is file order.
type registriesYAML struct {
	Mirrors map[string]mirrorYAML `yaml:"mirrors,omitempty"`
	Configs map[string]configYAML `yaml:"configs,omitempty"`
}

type mirrorYAML struct {
	Endpoint []string          `yaml:"endpoint"`
	Rewrite  map[string]string `yaml:"rewrite,omitempty"`
}

type configYAML struct {
	Auth *authYAML `yaml:"auth,omitempty"`
	TLS  *tlsYAML  `yaml:"tls,omitempty"`
}

type authYAML struct {
	Username      string `yaml:"username,omitempty"`
	Password      string `yaml:"password,omitempty"`
	IdentityToken string `yaml:"identity_token,omitempty"`
}

type tlsYAML struct {
	CAFile             string `yaml:"ca_file,omitempty"`
	CertFile           string `yaml:"cert_file,omitempty"`
	KeyFile            string `yaml:"key_file,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify,omitempty"`
}

// RenderRegistries resolves the inventory's registry credentials and reads
// its certificate files, and renders registries.yaml. It returns nil when
// the inventory configures no registries. Errors name the inventory field,
// never a secret's value.
func RenderRegistries(ctx context.Context, farm *inventory.Farm, lookupEnv func(string) (string, bool)) (*Registries, error) {
	r := farm.K3s.Registries
	if r == nil || len(r.Mirrors) == 0 && len(r.Configs) == 0 {
		return nil, nil
	}
	out := &Registries{Agent: agentconfig.Registries{Mirrors: map[string]agentconfig.Mirror{}, Configs: map[string]agentconfig.RegistryAuth{}}}
	doc := registriesYAML{Mirrors: map[string]mirrorYAML{}, Configs: map[string]configYAML{}}
	for name, m := range r.Mirrors {
		doc.Mirrors[name] = mirrorYAML{Endpoint: m.Endpoints, Rewrite: m.Rewrites}
		out.Agent.Mirrors[name] = agentconfig.Mirror{Endpoints: m.Endpoints, Rewrites: m.Rewrites}
	}
	hosts := make([]string, 0, len(r.Configs))
	for h := range r.Configs {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, host := range hosts {
		c := r.Configs[host]
		field := "k3s.registries.configs[" + host + "]"
		var cfg configYAML
		secret := func(name string, ref inventory.SecretRef) (string, error) {
			if ref.IsZero() {
				return "", nil
			}
			b, err := ref.Resolve(ctx, lookupEnv)
			if err != nil {
				return "", fmt.Errorf("%s.%s: %w", field, name, err)
			}
			return string(b), nil
		}
		var a authYAML
		var err error
		if a.Username, err = secret("username", c.Username); err != nil {
			return nil, err
		}
		if a.Password, err = secret("password", c.Password); err != nil {
			return nil, err
		}
		if a.IdentityToken, err = secret("token", c.Token); err != nil {
			return nil, err
		}
		if a != (authYAML{}) {
			cfg.Auth = &a
		}
		var t tlsYAML
		for _, f := range []struct {
			field, local, suffix string
			mode                 fs.FileMode
			dst                  *string
		}{
			{"caFile", c.CAFile, "ca.crt", 0o644, &t.CAFile},
			{"certFile", c.CertFile, "client.crt", 0o644, &t.CertFile},
			{"keyFile", c.KeyFile, "client.key", 0o600, &t.KeyFile},
		} {
			if f.local == "" {
				continue
			}
			b, err := os.ReadFile(farm.Resolve(f.local))
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %w", field, f.field, err)
			}
			p := path.Join(RegistryFilesDir, registryFileName(host)+"-"+f.suffix)
			out.Files = append(out.Files, ManagedFile{Path: p, Mode: f.mode, Content: b})
			*f.dst = p
		}
		t.InsecureSkipVerify = c.Insecure
		if a != (authYAML{}) || c.Insecure {
			out.Agent.Configs[host] = agentconfig.RegistryAuth{Username: a.Username, Password: a.Password, Token: a.IdentityToken, Insecure: c.Insecure}
		}
		if t != (tlsYAML{}) {
			cfg.TLS = &t
		}
		if cfg.Auth != nil || cfg.TLS != nil {
			doc.Configs[host] = cfg
		}
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("render registries.yaml: %w", err)
	}
	out.Config = append([]byte(managedHeader), b...)
	return out, nil
}

// registryFileName makes a registry host (host:port, [v6]:port) a file name.
func registryFileName(host string) string {
	return strings.NewReplacer(":", "_", "[", "", "]", "").Replace(host)
}
