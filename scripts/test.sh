#!/usr/bin/env bash
# Runs every phonefarm test, integration tests included (they need root:
# network namespaces for the test bed). Installs what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-k3s.sh >/dev/null   # real k3s for the provisioning tests, cached per machine
scripts/build-k3s.sh v1.32.0+k3s2 >/dev/null   # the same, relabelled: a release to upgrade to
scripts/build-tailscale.sh >/dev/null   # real tailscaled and headscale for the tailnet tests
export GOFLAGS=${GOFLAGS:--mod=readonly}
gofmt_out=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './tools/*'))
if [ -n "$gofmt_out" ]; then
	echo "gofmt would change:" >&2; echo "$gofmt_out" >&2; exit 1
fi
go vet ./...
go test -count=1 -timeout 40m ./... "$@"
