#!/usr/bin/env bash
# Builds the pulumi CLI (v3.259.0) and its YAML language host from the Go
# module proxy (tools/pulumi) once per machine and prints the directory
# that holds them: $PHONEFARM_TOOL_CACHE (default /var/cache/phonefarm)/
# pulumi/VERSION-GOVERSION. A cached build is reused.
set -euo pipefail
. "$(dirname "$0")/buildlock.sh"
cd "$(dirname "$0")/../tools/pulumi"
VERSION=v3.259.0-yaml1.38.1
GOVER=$(go env GOVERSION)
OUT=${PHONEFARM_TOOL_CACHE:-/var/cache/phonefarm}/pulumi/$VERSION-$GOVER
built() { [ -x "$OUT/pulumi" ] && [ -x "$OUT/pulumi-language-yaml" ]; }
if built; then echo "$OUT"; exit 0; fi
build_lock "$OUT"
if built; then echo "$OUT"; exit 0; fi # built while this one waited
mkdir -p "$OUT"
echo "building the pulumi CLI with $GOVER (once per machine)" >&2
# pkg/v3's version list is not served: the versions are pinned exactly,
# and go build (not go mod download) fetches what it needs.
export GOFLAGS=-mod=mod CGO_ENABLED=0
[ -f go.sum ] || go mod tidy >&2
go build "${tool_gcflags[@]}" -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v3.259.0" \
	-o "$OUT/" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml >&2
echo "$OUT"
