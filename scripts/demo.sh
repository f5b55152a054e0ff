#!/usr/bin/env bash
# Builds phonefarm and k3s, starts the demo farm (simulated phones on this
# machine) and installs k3s on it with phonefarm apply. Needs root.
# --tailscale runs the farm over a headscale tailnet.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-k3s.sh >/dev/null   # k3s from the Go module proxy, cached per machine
for a in "$@"; do
	# tailscale and headscale, likewise, for a farm on a tailnet
	if [ "$a" = --tailscale ]; then scripts/build-tailscale.sh >/dev/null; fi
done
mkdir -p bin
go build -o bin/phonefarm ./cmd/phonefarm
exec bin/phonefarm demo up "$@"
