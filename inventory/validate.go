package inventory

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var (
	dns1123Label  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	codenameRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	k3sVersionRe  = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$`)
	labelNameRe   = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	labelPrefixRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	archNames     = []string{"arm64", "arm", "amd64"}
	envNameRe     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	checkIDRe     = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	k3sComponents = []string{"coredns", "servicelb", "traefik", "local-storage", "metrics-server", "runtimes"}
	taintEffects  = []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}
)

// validator checks what the types cannot express, using the decoder's
// positions to locate each problem.
type validator struct {
	d *decoder
}

func (v *validator) at(path string) pos {
	for p := path; p != ""; {
		if ps, ok := v.d.pos[p]; ok {
			return ps
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return v.d.pos[""]
}

func (v *validator) problem(sev Severity, path, format string, args ...any) {
	p := v.at(path)
	v.d.problems = append(v.d.problems, Problem{
		File: v.d.file, Line: p.line, Column: p.col, Path: path,
		Severity: sev, Message: fmt.Sprintf(format, args...),
	})
}

func (v *validator) errorf(path, format string, args ...any) {
	v.problem(SeverityError, path, format, args...)
}

// present reports whether the file sets path (to any value, "" and 0
// included), as opposed to leaving it out.
func (v *validator) present(path string) bool {
	if _, ok := v.d.pos[path]; !ok {
		return false
	}
	for _, p := range v.d.problems {
		if p.Path == path {
			return false // a value the decoder refused: said already
		}
	}
	return true
}

func (v *validator) farm(f *Farm) {
	if f.Name != "" && (len(f.Name) > 63 || !dns1123Label.MatchString(f.Name)) || f.Name == "" && v.present("name") {
		v.errorf("name", "%q is not a farm name; want a DNS-1123 label (lower-case letters, digits and '-', at most 63), as it names the cluster and its kubeconfig file", f.Name)
	}
	if v.present("phones") && len(f.Phones) == 0 {
		v.errorf("phones", "the farm has no phones; list at least one")
	}
	v.k3s(&f.K3s)
	if f.Tailscale != nil {
		v.tailscale(f.Tailscale)
	}
	if f.Android != nil {
		v.android(f.Android)
	}
	seenCheck := map[string]int{}
	for i, c := range f.Checks.Skip {
		path := fmt.Sprintf("checks.skip[%d]", i)
		switch {
		case !checkIDRe.MatchString(c.ID):
			v.errorf(path+".id", "%q is not a check ID; want one as phonefarm check lists them, e.g. kernel-config", c.ID)
		case strings.TrimSpace(c.Reason) == "":
			v.errorf(path+".reason", "say why %s does not apply to this farm; the reason is shown where the check would have blocked a phone", c.ID)
		}
		if j, dup := seenCheck[c.ID]; dup {
			v.errorf(path+".id", "%s is skipped already at checks.skip[%d]", c.ID, j)
		}
		seenCheck[c.ID] = i
	}
	v.power(f.Power, "power")
	if h := f.Health; h != nil {
		if len(h.Agent) == 0 {
			v.errorf("health.agent", "no phonefarm-agent binary; give one per architecture of the farm's k3s phones, e.g. arm64: bin/phonefarm-agent-linux-arm64 (GOOS=linux CGO_ENABLED=0 go build ./cmd/phonefarm-agent)")
		}
		for arch := range h.Agent {
			if arch != "arm64" && arch != "arm" && arch != "amd64" {
				v.errorf("health.agent."+arch, "%q is not an architecture phonefarm knows; want arm64, arm or amd64", arch)
			}
		}
		if l := h.BatteryLowPercent; l < 0 || l > 99 {
			v.errorf("health.batteryLowPercent", "%d is not a battery level to taint at; want 1-99, default 20", l)
		}
		if c := h.HotCelsius; c != 0 && (c < 30 || c > 100) {
			v.errorf("health.hotCelsius", "%d °C is not a temperature to taint at; want 30-100, default 45", c)
		}
		if iv := h.Interval; iv != "" {
			if d, err := time.ParseDuration(iv); err != nil || d < time.Second || d > time.Hour {
				v.errorf("health.interval", "%q is not an interval to read the phone at; want e.g. 10s or 1m (1s to 1h)", iv)
			}
		}
	}
	if f.SSH.Port < 0 || f.SSH.Port > 65535 || f.SSH.Port == 0 && v.present("ssh.port") {
		v.errorf("ssh.port", "port %d is out of range; want 1-65535", f.SSH.Port)
	}

	firstByName := map[string]int{}
	firstByAddr := map[string]int{}
	servers, agents := 0, []int{}
	for i := range f.Phones {
		p := &f.Phones[i]
		path := fmt.Sprintf("phones[%d]", i)
		v.phone(p, path)
		if j, dup := firstByName[p.Name]; dup && p.Name != "" {
			first := v.at(fmt.Sprintf("phones[%d].name", j))
			v.errorf(path+".name", "duplicate phone name %q (first used at line %d); names must be unique", p.Name, first.line)
		} else {
			firstByName[p.Name] = i
		}
		// Two entries for one phone would have apply work on it twice at
		// once.
		var addr, field string
		switch {
		case p.SSH != nil && p.SSH.Host != "":
			r := f.SSHFor(p)
			addr, field = "ssh "+net.JoinHostPort(strings.ToLower(r.Host), strconv.Itoa(r.Port)), path+".ssh.host"
		case p.ADB != nil && p.ADB.Serial != "":
			addr, field = "adb "+p.ADB.Serial+" via "+p.ADBServer(), path+".adb.serial"
		}
		if addr != "" {
			if j, dup := firstByAddr[addr]; dup {
				v.errorf(field, "phones[%d] (%s) is reached at the same address (%s); each phone is listed once", j, f.Phones[j].Name, strings.TrimPrefix(strings.TrimPrefix(addr, "ssh "), "adb "))
			} else {
				firstByAddr[addr] = i
			}
		}
		switch p.Role {
		case RoleServer:
			servers++
		case RoleAgent:
			agents = append(agents, i)
		}
	}
	if servers == 0 && len(agents) > 0 {
		v.errorf(fmt.Sprintf("phones[%d].role", agents[0]), "%d phone(s) have role agent but no phone has role server; give one Linux or postmarketOS phone role: server", len(agents))
	}
	if servers > 1 && servers%2 == 0 {
		v.problem(SeverityWarning, "phones", "%d servers: embedded etcd needs a majority of its members, so with %d losing one server stops the cluster as with %d; use an odd number (%d or %d)", servers, servers, servers-1, servers-1, servers+1)
	}
}

func (v *validator) android(a *Android) {
	for _, m := range []struct {
		path  string
		files map[string]string
	}{{"android.agent", a.Agent}, {"android.proot", a.Proot}} {
		for arch, f := range m.files {
			switch {
			case !contains(archNames, arch):
				v.errorf(m.path+"["+arch+"]", "unknown architecture %q; want one of: %s", arch, strings.Join(archNames, ", "))
			case strings.TrimSpace(f) == "":
				v.errorf(m.path+"["+arch+"]", "empty file name; want the path of a binary on this machine")
			}
		}
	}
	for i, d := range a.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			v.errorf(fmt.Sprintf("android.dns[%d]", i), "%q is not an IP address; want a name server's address, e.g. 192.168.1.1", d)
		}
	}
	if a.Dir != "" && (!strings.HasPrefix(a.Dir, "/") || strings.ContainsAny(a.Dir, " '\"\\$`\n") || path.Clean(a.Dir) != a.Dir || a.Dir == "/") {
		v.errorf("android.dir", "%q is not a clean absolute directory without spaces or quotes; want e.g. %s", a.Dir, DefaultAndroidDir)
	}
}

func (v *validator) k3s(k *K3s) {
	if k.Version != "" && !k3sVersionRe.MatchString(k.Version) {
		v.errorf("k3s.version", "%q is not a k3s release; want the form v1.32.0+k3s1", k.Version)
	}
	if k.Source.ReleaseURL != "" {
		v.url("k3s.source.releaseURL", k.Source.ReleaseURL)
	}
	for arch := range k.Source.Files {
		if !contains(archNames, arch) {
			v.errorf("k3s.source.files["+arch+"]", "unknown architecture %q; want one of: %s", arch, strings.Join(archNames, ", "))
		}
	}
	if !k.Token.IsZero() {
		if msg := k.Token.check(); msg != "" {
			v.errorf("k3s.token", "%s", msg)
		}
	}
	for _, c := range []struct{ path, val string }{{"k3s.clusterCIDR", k.ClusterCIDR}, {"k3s.serviceCIDR", k.ServiceCIDR}} {
		if c.val == "" {
			continue
		}
		if _, _, err := net.ParseCIDR(c.val); err != nil {
			v.errorf(c.path, "%q is not a CIDR; want e.g. 10.42.0.0/16", c.val)
		}
	}
	cluster, cerr := netip.ParsePrefix(or(k.ClusterCIDR, DefaultClusterCIDR))
	service, serr := netip.ParsePrefix(or(k.ServiceCIDR, DefaultServiceCIDR))
	if cerr == nil && serr == nil && cluster.Overlaps(service) {
		path := "k3s.serviceCIDR"
		if k.ServiceCIDR == "" {
			path = "k3s.clusterCIDR"
		}
		v.errorf(path, "the pod network %s and the service network %s overlap; give them separate ranges (defaults %s and %s)", cluster, service, DefaultClusterCIDR, DefaultServiceCIDR)
	}
	for i, c := range k.Disable {
		if !contains(k3sComponents, c) {
			v.errorf(fmt.Sprintf("k3s.disable[%d]", i), "unknown k3s component %q; want one of: %s", c, strings.Join(k3sComponents, ", "))
		}
	}
	if k.Registries != nil {
		v.registries(k.Registries)
	}
	for arch, files := range k.AirgapImages {
		path := "k3s.airgapImages[" + arch + "]"
		if !contains(archNames, arch) {
			v.errorf(path, "unknown architecture %q; want one of: %s", arch, strings.Join(archNames, ", "))
		}
		seen := map[string]int{}
		for i, f := range files {
			fp := fmt.Sprintf("%s[%d]", path, i)
			base := filepath.Base(f)
			switch {
			case strings.TrimSpace(f) == "":
				v.errorf(fp, "empty file name; want the path of an image tarball")
				continue
			case AirgapImageSuffix(base) == "":
				v.errorf(fp, "%q is not an image tarball k3s imports; want a name ending in one of: %s", f, strings.Join(airgapSuffixes, ", "))
			}
			if j, dup := seen[base]; dup {
				v.errorf(fp, "%q has the same file name as %s[%d]; both would be uploaded as %s", f, path, j, base)
			}
			seen[base] = i
		}
	}
}

// airgapSuffixes are the tarball names k3s imports from its images
// directory.
var airgapSuffixes = []string{".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst", ".tar.lz4", ".tar.bz2", ".tbz"}

// AirgapImageSuffix returns the suffix that makes name an image tarball k3s
// imports, or "" when k3s would not import it.
func AirgapImageSuffix(name string) string {
	lower := strings.ToLower(name)
	for _, s := range airgapSuffixes {
		if strings.HasSuffix(lower, s) && len(lower) > len(s) {
			return s
		}
	}
	return ""
}

var registryHostRe = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$`)

func (v *validator) registries(r *Registries) {
	plain := map[string]bool{} // hosts some mirror reaches over http://
	for name, m := range r.Mirrors {
		path := "k3s.registries.mirrors[" + name + "]"
		if name != "*" && !registryHostRe.MatchString(name) {
			v.errorf(path, "%q is not a registry name; want a host as images name it (docker.io, registry.k8s.io, registry.lan:5000) or * for every registry", name)
		}
		for i, e := range m.Endpoints {
			ep := fmt.Sprintf("%s.endpoints[%d]", path, i)
			u, err := url.Parse(e)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
				v.errorf(ep, "%q is not a registry URL; want http(s)://host[:port][/path], with credentials in k3s.registries.configs", e)
				continue
			}
			if u.Scheme == "http" {
				plain[u.Host] = true
			}
		}
		for re := range m.Rewrites {
			if _, err := regexp.Compile(re); err != nil {
				v.errorf(path+".rewrites["+re+"]", "%q is not a regular expression: %v", re, err)
			}
		}
	}
	for host, c := range r.Configs {
		path := "k3s.registries.configs[" + host + "]"
		if !registryHostRe.MatchString(host) {
			v.errorf(path, "%q is not a registry host; want host or host:port as in the endpoint URL, without a scheme", host)
		}
		for _, s := range []struct {
			field string
			ref   SecretRef
		}{{"username", c.Username}, {"password", c.Password}, {"token", c.Token}} {
			if !s.ref.IsZero() {
				if msg := s.ref.check(); msg != "" {
					v.errorf(path+"."+s.field, "%s", msg)
				}
			}
		}
		switch {
		case c.Username.IsZero() != c.Password.IsZero():
			v.errorf(path, "set both username and password, or neither")
		case !c.Token.IsZero() && !c.Username.IsZero():
			v.errorf(path+".token", "set either token or username and password, not both")
		}
		if (c.CertFile == "") != (c.KeyFile == "") {
			v.errorf(path, "a client certificate needs both certFile and keyFile")
		}
		if c.Insecure && c.CAFile != "" {
			v.problem(SeverityWarning, path+".caFile", "unused: insecure skips verifying the registry's certificate")
		}
		if plain[host] && (!c.Username.IsZero() || !c.Token.IsZero()) {
			v.problem(SeverityWarning, path, "credentials for %s are sent over plain http:// (a mirror endpoint uses it); use https", host)
		}
	}
}

func (v *validator) tailscale(t *Tailscale) {
	if t.LoginServer != "" {
		v.url("tailscale.loginServer", t.LoginServer)
	}
	for _, s := range []struct {
		path string
		ref  SecretRef
	}{{"tailscale.authKey", t.AuthKey}, {"tailscale.apiKey", t.APIKey}} {
		if !s.ref.IsZero() {
			if msg := s.ref.check(); msg != "" {
				v.errorf(s.path, "%s", msg)
			}
		}
	}
	if strings.HasPrefix(strings.ToLower(t.LoginServer), "http://") && !t.APIKey.IsZero() {
		v.problem(SeverityWarning, "tailscale.loginServer", "the API key is sent to %s over plain http://, readable by anyone on the way; use https", t.LoginServer)
	}
	if u, err := url.Parse(t.LoginServer); err == nil && strings.EqualFold(u.Scheme, "http") && !plainControlOK(u.Hostname()) {
		v.problem(SeverityWarning, "tailscale.loginServer", "%s is plain http:// at a host name or public address; after one failed connection tailscale dials it over HTTPS on port 443 instead, and goes on doing so while it retries, so a phone can stay off the tailnet; use https://, or the server's private IP address", t.LoginServer)
	}
	if t.AuthKey.IsZero() && t.APIKey.IsZero() {
		v.errorf("tailscale", "no way to get auth keys; set authKey (a pre-made key) or apiKey (phonefarm mints one key per phone)")
	}
	for arch := range t.Binaries {
		if !contains(archNames, arch) {
			v.errorf("tailscale.binaries["+arch+"]", "unknown architecture %q; want one of: %s", arch, strings.Join(archNames, ", "))
		}
	}
	for k := range t.Env {
		if !envNameRe.MatchString(k) {
			v.errorf("tailscale.env["+k+"]", "%q is not an environment variable name", k)
		}
	}
	for i, tag := range t.Tags {
		if !strings.HasPrefix(tag, "tag:") || len(tag) == 4 {
			v.errorf(fmt.Sprintf("tailscale.tags[%d]", i), "%q is not a tailscale tag; want tag:NAME", tag)
		}
	}
}

func (v *validator) url(path, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errorf(path, "%q is not an http(s) URL", s)
	}
}

// power checks a power block: the charge limit is a percentage a
// battery can be held at.
func (v *validator) power(p *Power, path string) {
	if p == nil {
		return
	}
	if l := p.ChargeLimit; l < 20 || l > 100 {
		if l != 0 || v.present(path+".chargeLimit") {
			v.errorf(path+".chargeLimit", "charge limit %d is out of range; want a percentage from 20 to 100 (80 is usual), or leave it out", l)
		}
	}
}

func (v *validator) phone(p *Phone, path string) {
	v.power(p.Power, path+".power")
	if p.Name == "" && v.present(path+".name") {
		v.errorf(path+".name", "empty name; want a DNS-1123 label, the phone's node name")
	}
	if p.Name != "" && (len(p.Name) > 63 || !dns1123Label.MatchString(p.Name)) {
		v.errorf(path+".name", "%q is not a valid node name; want a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters", p.Name)
	}
	if p.Device != "" && !codenameRe.MatchString(p.Device) {
		v.errorf(path+".device", "%q is not a postmarketOS codename; want lower-case vendor-device, e.g. oneplus-dumpling", p.Device)
	}
	switch {
	case p.SSH == nil && p.ADB == nil:
		want := "ssh: {host: ...}"
		if p.OS == OSAndroid {
			want = "adb: {serial: ...}"
		}
		v.errorf(path, "phone %q has no transport; add %s", p.Name, want)
	case p.SSH != nil && p.ADB != nil:
		v.errorf(path+".adb", "phone %q has both ssh and adb; give exactly one transport", p.Name)
	case p.OS == OSAndroid && p.ADB == nil:
		v.errorf(path+".ssh", "an android phone is reached over adb; replace ssh with adb: {serial: ...}")
	case p.OS != OSAndroid && p.OS != "" && p.ADB != nil:
		v.errorf(path+".adb", "a %s phone is reached over ssh; adb is only for os: android", p.OS)
	}
	if p.OS == OSAndroid && p.Role == RoleServer {
		v.errorf(path+".role", "an android phone cannot be a k3s server (it runs phonefarm's rootless agent); use role: agent, or move the server role to a Linux or postmarketOS phone")
	}
	if p.SSH != nil {
		v.ssh(p.SSH, path+".ssh")
	}
	if p.ADB != nil {
		if p.ADB.Server != "" {
			if _, port, err := net.SplitHostPort(p.ADB.Server); err != nil || !validPort(port) {
				v.errorf(path+".adb.server", "%q is not host:port; want e.g. 127.0.0.1:5037", p.ADB.Server)
			}
		}
	}
	for k, val := range p.Labels {
		lp := fmt.Sprintf("%s.labels[%s]", path, k)
		if msg := checkLabelKey(k); msg != "" {
			v.errorf(lp, "label key %q: %s", k, msg)
		}
		if val != "" && (len(val) > 63 || !labelNameRe.MatchString(val)) {
			v.errorf(lp, "label value %q: want at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", val)
		}
	}
	for i, t := range p.Taints {
		if msg := checkTaint(t); msg != "" {
			v.errorf(fmt.Sprintf("%s.taints[%d]", path, i), "taint %q: %s", t, msg)
		}
	}
}

func (v *validator) ssh(s *SSH, path string) {
	if s.Port < 0 || s.Port > 65535 || s.Port == 0 && v.present(path+".port") {
		v.errorf(path+".port", "port %d is out of range; want 1-65535", s.Port)
	}
	if s.Host == "" {
		if v.present(path + ".host") {
			v.errorf(path+".host", "empty host; want the phone's address or DNS name")
		}
		return // else the decoder reported the missing field
	}
	if strings.ContainsAny(s.Host, " /@") {
		v.errorf(path+".host", "%q is not a host name or address (put the user in ssh.user)", s.Host)
	}
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 65536
}

func checkLabelKey(k string) string {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	}
	if hasPrefix && (prefix == "" || len(prefix) > 253 || !labelPrefixRe.MatchString(prefix)) {
		return "the prefix before '/' must be a DNS subdomain such as example.com"
	}
	if name == "" || len(name) > 63 || !labelNameRe.MatchString(name) {
		return "want [prefix/]name, name at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
	}
	return ""
}

func checkTaint(t string) string {
	kv, effect, ok := strings.Cut(t, ":")
	if !ok {
		return "want key[=value]:Effect, e.g. dedicated=phones:NoSchedule"
	}
	if !contains(taintEffects, effect) {
		return fmt.Sprintf("effect %q is not valid; want one of: %s", effect, strings.Join(taintEffects, ", "))
	}
	key, val, _ := strings.Cut(kv, "=")
	if msg := checkLabelKey(key); msg != "" {
		return "key: " + msg
	}
	if val != "" && (len(val) > 63 || !labelNameRe.MatchString(val)) {
		return "value: want at most 63 letters, digits, '-', '_' or '.'"
	}
	return ""
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// plainControlOK: tailscale keeps to plain HTTP for a control server at
// host, never falling back to HTTPS: a private or loopback IP address, or
// localhost.
func plainControlOK(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && (a.IsPrivate() || a.IsLoopback())
}
