package testbed

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// K3sVersion is the k3s that scripts/build-k3s.sh builds from the module
// proxy for the test bed.
const K3sVersion = "v1.32.0+k3s1"

// K3sBinary returns the path of the k3s binary scripts/build-k3s.sh
// caches, or an error saying how to build it.
func K3sBinary() (string, error) {
	p := filepath.Join(DefaultCacheDir(), "k3s", K3sVersion+"-"+runtime.Version(), "k3s")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no k3s binary at %s; scripts/build-k3s.sh builds it (about 7 minutes, once per machine)", p)
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
