package inventory

import (
	"os"
	"path/filepath"
)

// Defaults phonefarm applies where the inventory is silent.
const (
	DefaultClusterCIDR = "10.42.0.0/16"
	DefaultServiceCIDR = "10.43.0.0/16"
	DefaultADBServer   = "127.0.0.1:5037"
	DefaultSSHPort     = 22
	DefaultSSHUser     = "root"
)

// ResolvedSSH is a phone's SSH settings with the farm defaults applied.
type ResolvedSSH struct {
	Host          string
	Port          int
	User          string
	IdentityFile  string // empty: none
	Agent         bool
	KnownHosts    string
	HostKeyPolicy string // "strict" or "accept-new"
	Become        string // "none", "sudo" or "doas"
}

// SSHFor returns p's SSH settings merged over the farm's SSH defaults. It
// reads the environment (SSH_AUTH_SOCK, the home directory) but never
// changes the inventory.
func (f *Farm) SSHFor(p *Phone) ResolvedSSH {
	s := p.SSH
	if s == nil {
		s = &SSH{}
	}
	d := f.SSH
	r := ResolvedSSH{
		Host:          s.Host,
		Port:          first(s.Port, d.Port, DefaultSSHPort),
		User:          first(s.User, d.User, DefaultSSHUser),
		IdentityFile:  f.Resolve(first(s.IdentityFile, d.IdentityFile, "")),
		KnownHosts:    f.Resolve(first(s.KnownHosts, d.KnownHosts, "")),
		HostKeyPolicy: first(s.HostKeyPolicy, d.HostKeyPolicy, "strict"),
		Become:        first(s.Become, d.Become, "none"),
	}
	switch {
	case s.Agent != nil:
		r.Agent = *s.Agent
	case d.Agent != nil:
		r.Agent = *d.Agent
	default:
		r.Agent = os.Getenv("SSH_AUTH_SOCK") != ""
	}
	if r.KnownHosts == "" {
		if home, err := os.UserHomeDir(); err == nil {
			r.KnownHosts = filepath.Join(home, ".ssh", "known_hosts")
		}
	}
	return r
}

// ADBServer returns the adb server address for p.
func (p *Phone) ADBServer() string {
	if p.ADB != nil && p.ADB.Server != "" {
		return p.ADB.Server
	}
	return DefaultADBServer
}

func first[T comparable](vals ...T) T {
	var zero T
	for _, v := range vals {
		if v != zero {
			return v
		}
	}
	return zero
}

// Resolve makes a path from the inventory absolute: ~ is the home
// directory, and a relative path is relative to the inventory file.
func (f *Farm) Resolve(p string) string {
	p = ExpandHome(p)
	if p != "" && !filepath.IsAbs(p) && f.file != "" {
		return filepath.Join(filepath.Dir(f.file), p)
	}
	return p
}

// ChargeLimitFor is the battery charge limit of p, its own over the
// farm's; 0 when neither sets one.
func (f *Farm) ChargeLimitFor(p *Phone) int {
	if p.Power != nil && p.Power.ChargeLimit != 0 {
		return p.Power.ChargeLimit
	}
	if f.Power != nil {
		return f.Power.ChargeLimit
	}
	return 0
}
