#!/usr/bin/env bash
# Builds headscale v0.29.3 and the tailscaled and tailscale it is built
# against (tailscale.com v1.101.0-pre, from headscale's own module graph)
# from the Go module proxy, once per machine, for the test bed's tailnet.
# Prints the cache directory that holds the three binaries. Cached under
# $PHONEFARM_TOOL_CACHE (default /var/cache/phonefarm), keyed by versions
# and Go version. Keep the versions in step with testbed.TailscaleVersion
# and testbed.HeadscaleVersion.
set -euo pipefail
. "$(dirname "$0")/buildlock.sh"
TS=v1.101.0-pre HS=v0.29.3
GOVER=$(go env GOVERSION)
OUT=${PHONEFARM_TOOL_CACHE:-/var/cache/phonefarm}/tailnet/ts-$TS-hs-$HS-$GOVER
built() { [ -x "$OUT/tailscaled" ] && [ -x "$OUT/tailscale" ] && [ -x "$OUT/headscale" ]; }
if built; then echo "$OUT"; exit 0; fi
build_lock "$OUT"
if built; then echo "$OUT"; exit 0; fi # built while this one waited
mkdir -p "$OUT"
moddir() { go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'; }
echo "building headscale $HS and tailscale $TS with $GOVER (once per machine)" >&2
# One go build in headscale's module (its go.mod pins tailscale.com $TS):
# the packages the three share compile once, which costs about half the
# CPU of building tailscale in its own module and headscale in its own.
# Features the test bed's phones never use are left out of tailscale
# (its ts_omit_ build tags); the tailnet, subnet routes, netstack, serve,
# certificates and the CLI's debug commands stay.
omit=(aws kube ssh capture drive taildrop tap tpm bird synology systray desktop_sessions
	completion completion_scripts qrcodes flashappliance clientupdate tailnetlock
	identityfederation oauthkey relayserver appconnectors conn25 ace posture cloud)
tags=$(printf 'ts_omit_%s,' "${omit[@]}")
(cd "$(moddir github.com/juanfont/headscale@$HS)" && [ "$(go list -m -f '{{.Version}}' tailscale.com)" = "$TS" ] &&
	mkdir -p "$OUT/tmp" && CGO_ENABLED=0 go build -tags "${tags%,}" -o "$OUT/tmp/" \
		tailscale.com/cmd/tailscaled tailscale.com/cmd/tailscale ./cmd/headscale) >&2
for b in tailscaled tailscale headscale; do mv "$OUT/tmp/$b" "$OUT/$b"; done
rmdir "$OUT/tmp"
echo "$OUT"
