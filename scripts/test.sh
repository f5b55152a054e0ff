#!/usr/bin/env bash
# Runs every phonefarm test, integration tests included (they need root:
# network namespaces for the test bed). Installs and builds what the tests
# need first; a missing prerequisite fails the run, it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The heavy tools are built once per machine and cached. k3s's build spends
# its first minutes downloading modules, so the others compile beside it.
scripts/build-k3s.sh >/dev/null &   # real k3s for the provisioning tests
k3s=$!
scripts/build-pulumi.sh >/dev/null &     # the pulumi CLI and its YAML language host, for the provider's tests
pulumi=$!
scripts/build-tailscale.sh >/dev/null    # real tailscaled and headscale for the tailnet tests
scripts/build-workloads.sh >/dev/null    # CNI plugin, containerd shim, pause, CoreDNS, local-path-provisioner
wait "$k3s"
scripts/build-k3s.sh v1.32.0+k3s2 >/dev/null   # the same, relabelled: a release to upgrade to
scripts/build-e2e.sh >/dev/null          # Kubernetes' e2e.test and agnhost, from k3s's build cache
scripts/build-proot.sh "$(go env GOARCH)" >/dev/null  # the proot phonefarm ships to Android phones
wait "$pulumi"
export GOFLAGS=${GOFLAGS:--mod=readonly}
export PHONEFARM_INTEGRATION=required   # a test missing what it needs fails, CI or not
gofmt_out=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './tools/*'))
if [ -n "$gofmt_out" ]; then
	echo "gofmt would change:" >&2; echo "$gofmt_out" >&2; exit 1
fi
go vet ./...
scripts/gen-pulumi-sdk.sh --check        # the checked-in schema and Go SDK are what the provider generates
# The integration tests mostly wait on k3s and the phones: three at a time
# in a package (not GOMAXPROCS's two) keeps the machine busy.
go test -count=1 -parallel 3 -timeout 50m ./... "$@"
