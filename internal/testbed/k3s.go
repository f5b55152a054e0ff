package testbed

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
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
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no k3s binary at %s; scripts/build-k3s.sh %s builds it", p, version)
	}
	return p, nil
}

// K3sArgs are the extra k3s arguments a test-bed host needs, where a
// phone needs none: containerd's overlayfs snapshotter cannot stack on the
// host's overlay root, a network namespace cannot raise nf_conntrack_max,
// and each host's kubelet gets its own cgroup.
func (h *Host) K3sArgs() []string {
	return []string{"--snapshotter=native", "--kube-proxy-arg=conntrack-max-per-core=0", "--kubelet-arg=cgroup-root=/" + h.Cgroup}
}

// InventoryOptions shape the inventory Inventory writes.
type InventoryOptions struct {
	Name    string
	K3s     string            // local k3s binary
	Servers int               // the first hosts are servers, the rest agents
	Devices map[string]string // host name -> postmarketOS codename
	Labels  map[string]string // labels for every phone
	// Tailnet, when set, joins the phones to a headscale on the test bed
	// with keys phonefarm mints, and runs k3s over the tailnet.
	Tailnet *TailnetInventory
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
	fmt.Fprintf(&b, `# A farm of test-bed hosts, written by phonefarm's test bed.
apiVersion: phonefarm.dev/v1alpha1
kind: Farm
name: %s
k3s:
  version: %s
  disable: [traefik, metrics-server]
  source:
    files: {amd64: %s}
ssh:
  user: user
  become: doas
  identityFile: %s
  knownHosts: %s
`, o.Name, K3sVersion, o.K3s, tb.KeyFile, tb.KnownHosts)
	if t := o.Tailnet; t != nil {
		env, _ := json.Marshal(TailscaledEnv)
		fmt.Fprintf(&b, "tailscale:\n  loginServer: %s\n  apiKey: file:%s\n  binaries: {amd64: %s}\n  env: %s\n", t.LoginServer, t.APIKeyFile, t.Tools, env)
	}
	b.WriteString("phones:\n")
	labels, _ := json.Marshal(o.Labels)
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
		args, _ := json.Marshal(h.K3sArgs())
		fmt.Fprintf(&b, "    os: %s\n    role: %s\n    ssh: {host: %s}\n    k3sArgs: %s\n", osName, role, h.Addr, args)
		if len(o.Labels) > 0 {
			fmt.Fprintf(&b, "    labels: %s\n", labels)
		}
	}
	return b.String()
}
