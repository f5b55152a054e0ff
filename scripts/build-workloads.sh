#!/usr/bin/env bash
# Builds, once per machine, what the test bed's phones need to run pods that
# a k3s built from source lacks, and the programs of k3s's packaged
# components, all from the Go module proxy:
#   flannel                  the flannel CNI plugin (containernetworking/plugins v0.9.1)
#   containerd-shim-runc-v2  containerd's runc shim (k3s-io/containerd v1.7.23-k3s2)
#   pause                    Kubernetes' pause (v1.32.0), static
#   coredns                  CoreDNS v1.12.0 with k3s's plugins (tools/workloads)
#   local-path-provisioner   v0.0.30 (tools/workloads)
# Prints the directory that holds them: $PHONEFARM_TOOL_CACHE (default
# /var/cache/phonefarm)/workloads/VERSION-GOVERSION. Keep VERSION in step
# with testbed.WorkloadsVersion.
set -euo pipefail
. "$(dirname "$0")/buildlock.sh"
cd "$(dirname "$0")/.."
VERSION=cni0.9.1-shim1.7.23k3s2-pause1.32.0-coredns1.12.0-lpp0.0.30
GOVER=$(go env GOVERSION)
OUT=${PHONEFARM_TOOL_CACHE:-/var/cache/phonefarm}/workloads/$VERSION-$GOVER
BINS=(flannel containerd-shim-runc-v2 pause coredns local-path-provisioner)
built() { for b in "${BINS[@]}"; do [ -x "$OUT/$b" ] || return 1; done; }
if built; then echo "$OUT"; exit 0; fi
build_lock "$OUT"
if built; then echo "$OUT"; exit 0; fi # built while this one waited
mkdir -p "$OUT"
echo "building the test bed's CNI plugin, containerd shim, pause, CoreDNS and local-path-provisioner with $GOVER (once per machine)" >&2
moddir() { go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'; }
export CGO_ENABLED=0
# flannel left the CNI plugins after v0.9.1, which still builds it; its
# module ships no complete vendor directory.
(cd "$(moddir github.com/containernetworking/plugins@v0.9.1)" &&
	go build -mod=mod "${tool_gcflags[@]}" -ldflags "-s -w" -o "$OUT/flannel.tmp" ./plugins/meta/flannel) >&2
# The shim from k3s's own containerd, in its own module (k3s's module
# selects a go-runc the shim does not build with).
(cd "$(GONOSUMDB=github.com/k3s-io moddir github.com/k3s-io/containerd@v1.7.23-k3s2)" &&
	go build -mod=mod "${tool_gcflags[@]}" -ldflags "-s -w" -o "$OUT/containerd-shim-runc-v2.tmp" ./cmd/containerd-shim-runc-v2) >&2
# pause.c from the Kubernetes source k3s builds from.
k8s=$(cd tools/k3s && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' k8s.io/kubernetes)
gcc -Os -static -Wall -DVERSION=v3.10 -o "$OUT/pause.tmp" "$k8s/build/pause/linux/pause.c" >&2
strip "$OUT/pause.tmp"
(cd tools/workloads && go build "${tool_gcflags[@]}" -ldflags "-s -w" -o "$OUT/coredns.tmp" ./coredns &&
	go build "${tool_gcflags[@]}" -ldflags "-s -w" -o "$OUT/local-path-provisioner.tmp" github.com/rancher/local-path-provisioner) >&2
for b in "${BINS[@]}"; do mv "$OUT/$b.tmp" "$OUT/$b"; done
echo "$OUT"
