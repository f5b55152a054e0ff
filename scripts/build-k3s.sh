#!/usr/bin/env bash
# Builds k3s v1.32.0+k3s1 from the Go module proxy (tools/k3s) once per
# machine and prints the path of the binary. The binary is cached under
# $PHONEFARM_TOOL_CACHE (default /var/cache/phonefarm), keyed by k3s and Go
# version; a cached binary is reused without building.
#
# build-k3s.sh LABEL builds the same source labelled with another version
# (a relink, seconds once the first build is cached), so the upgrade tests
# have a second k3s release to roll to.
set -euo pipefail
. "$(dirname "$0")/buildlock.sh"
cd "$(dirname "$0")/../tools/k3s"
K3S_VERSION=${1:-v1.32.0+k3s1}
GOVER=$(go env GOVERSION)
CACHE=${PHONEFARM_TOOL_CACHE:-/var/cache/phonefarm}/k3s/$K3S_VERSION-$GOVER
OUT=$CACHE/k3s
if [ -x "$OUT" ]; then echo "$OUT"; exit 0; fi
build_lock "$CACHE"
if [ -x "$OUT" ]; then echo "$OUT"; exit 0; fi # built while this one waited
mkdir -p "$CACHE"
echo "building k3s $K3S_VERSION with $GOVER (about 7 minutes, once per machine)" >&2
export GONOSUMDB=github.com/k3s-io GOFLAGS=-mod=mod CGO_ENABLED=1
PKG=github.com/k3s-io/k3s/pkg/version
go build -trimpath -o "$OUT.tmp" \
	-tags "ctrd apparmor seccomp netcgo osusergo providerless urfave_cli_no_docs" \
	-ldflags "-s -w -X $PKG.UpstreamGolang=$GOVER -X $PKG.Version=$K3S_VERSION -X $PKG.GitCommit=cca8facaa33a" \
	github.com/k3s-io/k3s/cmd/server >&2
mv "$OUT.tmp" "$OUT"
echo "$OUT"
