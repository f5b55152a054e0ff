package inventory

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
)

// SecretRef names where a secret lives: "env:NAME" (an environment variable)
// or "file:PATH" (a file, ~ expanded). The inventory never holds the secret
// itself, so the file can be committed and printed safely; the value is read
// only when needed and never logged.
type SecretRef string

// IsZero reports whether no secret is referenced.
func (r SecretRef) IsZero() bool { return r == "" }

// check returns what is wrong with the reference, or "".
func (r SecretRef) check() string {
	kind, rest, ok := strings.Cut(string(r), ":")
	switch {
	case !ok || (kind != "env" && kind != "file"):
		return "must be a reference, env:NAME or file:PATH; put the secret itself in an environment variable or a file, never in the inventory"
	case rest == "":
		return fmt.Sprintf("%s: reference has no name after the colon", kind)
	case kind == "env" && !envNameRe.MatchString(rest):
		// Not quoted: what follows env: may be the secret itself.
		return "what follows env: is not an environment variable name (letters, digits and _, not starting with a digit); if it is the secret itself, put it in an environment variable and name that"
	}
	return ""
}

// Resolve reads the secret. Errors name the reference, never the value.
func (r SecretRef) Resolve(_ context.Context, lookupEnv func(string) (string, bool)) ([]byte, error) {
	if msg := r.check(); msg != "" {
		return nil, fmt.Errorf("secret reference: %s", msg)
	}
	kind, rest, _ := strings.Cut(string(r), ":")
	if kind == "env" {
		if lookupEnv == nil {
			lookupEnv = os.LookupEnv
		}
		v, ok := lookupEnv(rest)
		if !ok || v == "" {
			return nil, fmt.Errorf("secret %s: environment variable %s is not set", r, rest)
		}
		return []byte(v), nil
	}
	b, err := os.ReadFile(ExpandHome(rest))
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", r, err)
	}
	return []byte(strings.TrimRight(string(b), "\r\n")), nil
}

// ExpandHome replaces a leading ~/ with the user's home directory.
func ExpandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return home + p[1:]
		}
	}
	return p
}

// SecretRefs are every secret reference in the farm, in a fixed order.
func (f *Farm) SecretRefs() []SecretRef {
	refs := []SecretRef{f.K3s.Token}
	if r := f.K3s.Registries; r != nil {
		hosts := make([]string, 0, len(r.Configs))
		for h := range r.Configs {
			hosts = append(hosts, h)
		}
		sort.Strings(hosts)
		for _, h := range hosts {
			c := r.Configs[h]
			refs = append(refs, c.Username, c.Password, c.Token)
		}
	}
	if t := f.Tailscale; t != nil {
		refs = append(refs, t.AuthKey, t.APIKey)
	}
	out := refs[:0]
	for _, r := range refs {
		if !r.IsZero() {
			out = append(out, r)
		}
	}
	return out
}

// EnvNames are the environment variables the farm's env: references
// name, sorted, each once.
func (f *Farm) EnvNames() []string {
	seen := map[string]bool{}
	var names []string
	for _, r := range f.SecretRefs() {
		if kind, name, _ := strings.Cut(string(r), ":"); kind == "env" && !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}
