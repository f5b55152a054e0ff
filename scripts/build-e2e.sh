#!/usr/bin/env bash
# Builds Kubernetes' own end-to-end tests (e2e.test) and their agnhost
# image's program from the Kubernetes source k3s v1.32.0+k3s1 builds from,
# once per machine, in k3s's module (tools/k3s: they share its build
# cache). Prints the directory that holds them:
# $PHONEFARM_TOOL_CACHE (default /var/cache/phonefarm)/e2e/VERSION-GOVERSION.
# Keep VERSION in step with testbed.E2EVersion.
set -euo pipefail
. "$(dirname "$0")/buildlock.sh"
cd "$(dirname "$0")/../tools/k3s"
VERSION=k8s1.32.0-k3s1
GOVER=$(go env GOVERSION)
OUT=${PHONEFARM_TOOL_CACHE:-/var/cache/phonefarm}/e2e/$VERSION-$GOVER
FILES=(e2e.test agnhost localhost.crt localhost.key)
built() { for f in "${FILES[@]}"; do [ -e "$OUT/$f" ] || return 1; done; }
if built; then echo "$OUT"; exit 0; fi
build_lock "$OUT"
if built; then echo "$OUT"; exit 0; fi # built while this one waited
mkdir -p "$OUT"
echo "building Kubernetes' e2e.test and agnhost with $GOVER (once per machine)" >&2
# k3s's own build settings (scripts/build-k3s.sh), so the packages k3s
# compiled are reused: with any other cgo setting or tags everything
# compiles again (4 minutes against 12 here). agnhost is then linked
# against glibc, which its Debian-based image has.
export GONOSUMDB=github.com/k3s-io GOFLAGS=-mod=mod CGO_ENABLED=1
TAGS="ctrd apparmor seccomp netcgo osusergo providerless urfave_cli_no_docs"
go test -c -trimpath -tags "$TAGS" -ldflags "-s -w" -o "$OUT/e2e.test.tmp" k8s.io/kubernetes/test/e2e >&2
go build -trimpath -tags "$TAGS" -ldflags "-s -w" -o "$OUT/agnhost.tmp" k8s.io/kubernetes/test/images/agnhost >&2
k8s=$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)
install -m 0644 "$k8s/test/images/agnhost/porter/localhost.crt" "$OUT/localhost.crt"
install -m 0644 "$k8s/test/images/agnhost/porter/localhost.key" "$OUT/localhost.key"
for f in e2e.test agnhost; do mv "$OUT/$f.tmp" "$OUT/$f"; done
echo "$OUT"
