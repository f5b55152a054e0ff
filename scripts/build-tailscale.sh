#!/usr/bin/env bash
# Builds tailscaled and tailscale (tailscale.com v1.102.5, the newest that
# builds with Go 1.26) and headscale v0.29.3 from the Go module proxy, once
# per machine, for the test bed's tailnet. Prints the cache directory that
# holds the three binaries. Cached under $PHONEFARM_TOOL_CACHE (default
# /var/cache/phonefarm), keyed by versions and Go version.
set -euo pipefail
. "$(dirname "$0")/buildlock.sh"
TS=v1.102.5 HS=v0.29.3
GOVER=$(go env GOVERSION)
OUT=${PHONEFARM_TOOL_CACHE:-/var/cache/phonefarm}/tailnet/ts-$TS-hs-$HS-$GOVER
built() { [ -x "$OUT/tailscaled" ] && [ -x "$OUT/tailscale" ] && [ -x "$OUT/headscale" ]; }
if built; then echo "$OUT"; exit 0; fi
build_lock "$OUT"
if built; then echo "$OUT"; exit 0; fi # built while this one waited
mkdir -p "$OUT"
moddir() { go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'; }
echo "building tailscale $TS and headscale $HS with $GOVER (once per machine)" >&2
# Each builds inside its own module (go install MODULE@VERSION needs a
# version list the proxy refuses).
(cd "$(moddir tailscale.com@$TS)" && CGO_ENABLED=0 go build -trimpath -o "$OUT/tailscaled.tmp" ./cmd/tailscaled &&
	CGO_ENABLED=0 go build -trimpath -o "$OUT/tailscale.tmp" ./cmd/tailscale) >&2
(cd "$(moddir github.com/juanfont/headscale@$HS)" && CGO_ENABLED=0 go build -trimpath -o "$OUT/headscale.tmp" ./cmd/headscale) >&2
for b in tailscaled tailscale headscale; do mv "$OUT/$b.tmp" "$OUT/$b"; done
echo "$OUT"
