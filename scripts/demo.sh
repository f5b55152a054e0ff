#!/usr/bin/env bash
# Builds phonefarm, k3s and the programs the farm's pods run, starts the demo
# farm (simulated phones on this machine), installs k3s on it with phonefarm
# apply and runs the example apps. Needs root. --tailscale runs the farm
# over a headscale tailnet.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-k3s.sh >/dev/null        # k3s from the Go module proxy, cached per machine
scripts/build-workloads.sh >/dev/null  # CNI plugin, containerd shim, pause, CoreDNS, local-path-provisioner
for a in "$@"; do
	# tailscale and headscale, likewise, for a farm on a tailnet
	if [ "$a" = --tailscale ]; then scripts/build-tailscale.sh >/dev/null; fi
done
mkdir -p bin
go build -o bin/phonefarm ./cmd/phonefarm
CGO_ENABLED=0 go build -o bin/phonefarm-agent ./cmd/phonefarm-agent  # each phone's health reporter (static)
arch=$(go env GOARCH)
go run ./examples/apps/build -arch "$arch" -o bin >/dev/null  # the example apps' images
exec bin/phonefarm demo up --apps "bin/apps-$arch.tar" --health-agent bin/phonefarm-agent "$@"
