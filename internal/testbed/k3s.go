package testbed

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// K3sVersion is the k3s that scripts/build-k3s.sh builds from the module
// proxy for the test bed.
const K3sVersion = "v1.32.0+k3s1"

// K3sUpgradeVersion labels the same k3s source as a newer release, for
// tests that roll a farm from one version to another.
const K3sUpgradeVersion = "v1.32.0+k3s2"

// K3sBinary returns the path of the k3s binary scripts/build-k3s.sh
// caches, or an error saying how to build it.
func K3sBinary() (string, error) { return K3sBinaryVersion(K3sVersion) }

// K3sBinaryVersion is K3sBinary for a version label (build-k3s.sh LABEL).
func K3sBinaryVersion(version string) (string, error) {
	p := filepath.Join(DefaultCacheDir(), "k3s", version+"-"+runtime.Version(), "k3s")
	waitBuilt(filepath.Dir(p))
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no k3s binary at %s; scripts/build-k3s.sh %s builds it", p, version)
	}
	return p, nil
}

// K3sArgs are the extra k3s arguments a test-bed host needs, where a
// phone needs none: a network namespace cannot raise nf_conntrack_max,
// each host's kubelet gets its own cgroup, and the flannel CNI plugin the
// test bed builds speaks CNI 0.4.0, so k3s gets a CNI configuration of that
// version.
func (h *Host) K3sArgs() []string {
	return []string{"--kube-proxy-arg=conntrack-max-per-core=0", "--kubelet-arg=cgroup-root=/" + h.Cgroup,
		"--flannel-cni-conf=/etc/phonefarm-testbed/flannel-cni.conflist"}
}

// K3sServerArgs are K3sArgs for a host that runs a k3s server. Its
// controllers hold their leader election four times as long as k3s's
// defaults (a 60 s lease renewed within 40 s): on two cores shared by
// every test's k3s, renewing within 10 s failed, the controllers gave up
// leadership, and k3s exits when they do, so the server restarted several
// times a run.
func (h *Host) K3sServerArgs() []string {
	args := h.K3sArgs()
	for _, c := range []string{"kube-controller-manager", "kube-cloud-controller-manager", "kube-scheduler"} {
		args = append(args, "--"+c+"-arg=leader-elect-lease-duration=60s", "--"+c+"-arg=leader-elect-renew-deadline=40s")
	}
	return args
}

// K3sArgsFor is K3sServerArgs for a server, K3sArgs otherwise.
func (h *Host) K3sArgsFor(server bool) []string {
	if server {
		return h.K3sServerArgs()
	}
	return h.K3sArgs()
}

// WorkloadsVersion names the build of scripts/build-workloads.sh: the
// flannel CNI plugin (containernetworking/plugins v0.9.1), containerd's runc
// shim (k3s-io/containerd v1.7.23-k3s2), Kubernetes' pause (v1.32.0), CoreDNS
// v1.12.0 and local-path-provisioner v0.0.30.
const WorkloadsVersion = "cni0.9.1-shim1.7.23k3s2-pause1.32.0-coredns1.12.0-lpp0.0.30"

// WorkloadBinaries are the files scripts/build-workloads.sh leaves in
// WorkloadTools' directory.
var WorkloadBinaries = []string{"flannel", "containerd-shim-runc-v2", "pause", "coredns", "local-path-provisioner"}

// WorkloadTools returns the directory scripts/build-workloads.sh builds, or
// an error saying how to build it.
func WorkloadTools() (string, error) {
	d := filepath.Join(DefaultCacheDir(), "workloads", WorkloadsVersion+"-"+runtime.Version())
	waitBuilt(d)
	for _, b := range WorkloadBinaries {
		if _, err := os.Stat(filepath.Join(d, b)); err != nil {
			return "", fmt.Errorf("no %s in %s; scripts/build-workloads.sh builds it", b, d)
		}
	}
	return d, nil
}

// InventoryOptions shape the inventory Inventory writes.
type InventoryOptions struct {
	Name string
	K3s  string // local k3s binary
	// Version labels K3s (default K3sVersion).
	Version string
	Servers int               // the first hosts are servers, the rest agents
	Devices map[string]string // host name -> postmarketOS codename
	Labels  map[string]string // labels for every phone
	// Tailnet, when set, joins the phones to a headscale on the test bed
	// with keys phonefarm mints, and runs k3s over the tailnet.
	Tailnet *TailnetInventory
	// Registry, when set, is the URL of the test bed's registry: the
	// inventory mirrors every upstream registry to it.
	Registry string
	// Disable lists more packaged k3s components to leave out.
	Disable []string
	// PhoneLabels are labels for single phones, by name.
	PhoneLabels map[string]map[string]string
	// PhoneTaints are taints ("key=value:Effect") for single phones.
	PhoneTaints map[string][]string
	// SkipChecks are checks the farm skips (checks.skip), by ID, with why.
	SkipChecks map[string]string
	// AirgapImages are image tarballs for the hosts' architecture.
	AirgapImages []string
	// RegistryConfigs are k3s.registries.configs entries: inventory YAML
	// flow mappings by registry host.
	RegistryConfigs map[string]string
	// Health, when set, is the inventory's health block: the phones run
	// phonefarm-agent health beside k3s.
	Health *HealthInventory
}

// HealthInventory is the inventory's health block for a test bed.
type HealthInventory struct {
	Agent    string // phonefarm-agent for the hosts' architecture
	Interval string // reporting period; "" for phonefarm's default
}

// TailnetInventory is the inventory's tailscale block for a test bed.
type TailnetInventory struct {
	LoginServer string
	APIKeyFile  string // headscale API key
	Tools       string // TailnetTools()
}

// Inventory returns a farm.yaml for the test bed's hosts, reached as the
// unprivileged user with doas, as phones usually are.
func (tb *Testbed) Inventory(o InventoryOptions) string {
	var b strings.Builder
	// traefik and metrics-server are not built here: their images would
	// never arrive.
	d, _ := json.Marshal(append([]string{"traefik", "metrics-server"}, o.Disable...))
	disable := string(d)
	registries := ""
	if o.Registry != "" {
		var r strings.Builder
		r.WriteString("  registries:\n    mirrors:\n")
		for _, up := range Upstreams {
			rw, _ := json.Marshal(MirrorRewrite(up))
			fmt.Fprintf(&r, "      %s: {endpoints: [%s], rewrites: %s}\n", up, o.Registry, rw)
		}
		registries = r.String()
	}
	if len(o.RegistryConfigs) > 0 {
		if registries == "" {
			registries = "  registries:\n"
		}
		registries += "    configs:\n"
		hosts := make([]string, 0, len(o.RegistryConfigs))
		for h := range o.RegistryConfigs {
			hosts = append(hosts, h)
		}
		sort.Strings(hosts)
		for _, h := range hosts {
			registries += fmt.Sprintf("      %q: %s\n", h, o.RegistryConfigs[h])
		}
	}
	if len(o.AirgapImages) > 0 {
		imgs, _ := json.Marshal(o.AirgapImages)
		registries += fmt.Sprintf("  airgapImages: {%s: %s}\n", goArch(), imgs)
	}
	version := o.Version
	if version == "" {
		version = K3sVersion
	}
	fmt.Fprintf(&b, `# A farm of test-bed hosts, written by phonefarm's test bed.
apiVersion: phonefarm.dev/v1alpha1
kind: Farm
name: %s
k3s:
  version: %s
  disable: %s
  source:
    files: {amd64: %s}
%sssh:
  user: user
  become: doas
  identityFile: %s
  knownHosts: %s
`, o.Name, version, disable, o.K3s, registries, tb.KeyFile, tb.KnownHosts)
	if len(o.SkipChecks) > 0 {
		b.WriteString("checks:\n  skip:\n")
		ids := make([]string, 0, len(o.SkipChecks))
		for id := range o.SkipChecks {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			reason, _ := json.Marshal(o.SkipChecks[id])
			fmt.Fprintf(&b, "    - {id: %s, reason: %s}\n", id, reason)
		}
	}
	if t := o.Tailnet; t != nil {
		env, _ := json.Marshal(TailscaledEnv)
		fmt.Fprintf(&b, "tailscale:\n  loginServer: %s\n  apiKey: file:%s\n  binaries: {amd64: %s}\n  env: %s\n", t.LoginServer, t.APIKeyFile, t.Tools, env)
	}
	if h := o.Health; h != nil {
		fmt.Fprintf(&b, "health:\n  agent: {%s: %s}\n", runtime.GOARCH, h.Agent)
		if h.Interval != "" {
			fmt.Fprintf(&b, "  interval: %s\n", h.Interval)
		}
	}
	b.WriteString("phones:\n")
	for i, h := range tb.Hosts {
		role, osName := "agent", "linux"
		if i < o.Servers {
			role = "server"
		}
		if h.PostmarketOS {
			osName = "postmarketos"
		}
		fmt.Fprintf(&b, "  - name: %s\n", h.Name)
		if d := o.Devices[h.Name]; d != "" {
			fmt.Fprintf(&b, "    device: %s\n", d)
		}
		args, _ := json.Marshal(h.K3sArgsFor(role == "server"))
		fmt.Fprintf(&b, "    os: %s\n    role: %s\n    ssh: {host: %s}\n    k3sArgs: %s\n", osName, role, h.Addr, args)
		if l := mergeLabels(o.Labels, o.PhoneLabels[h.Name]); len(l) > 0 {
			labels, _ := json.Marshal(l)
			fmt.Fprintf(&b, "    labels: %s\n", labels)
		}
		if ts := o.PhoneTaints[h.Name]; len(ts) > 0 {
			taints, _ := json.Marshal(ts)
			fmt.Fprintf(&b, "    taints: %s\n", taints)
		}
	}
	return b.String()
}

func mergeLabels(all, own map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range all {
		out[k] = v
	}
	for k, v := range own {
		out[k] = v
	}
	return out
}

// ProotVersion names the proot phonefarm builds for phones
// (scripts/build-proot.sh): Debian bookworm's proot, glibc and talloc.
const ProotVersion = "proot5.1.0-1.3-libc2.36-talloc2.4.0"

// ProotBundle is the path of the proot for phones of arch (a GOARCH) that
// scripts/build-proot.sh builds: one static file carrying proot and its
// libraries.
func ProotBundle(arch string) (string, error) {
	p := filepath.Join(DefaultCacheDir(), "proot", ProotVersion+"-"+runtime.Version(), arch, "proot")
	waitBuilt(filepath.Dir(p))
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no proot for %s phones at %s; scripts/build-proot.sh %s builds it", arch, p, arch)
	}
	return p, nil
}
