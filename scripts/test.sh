#!/usr/bin/env bash
# Runs every phonefarm test, integration tests included (they need root:
# network namespaces for the test bed). Installs and builds what the tests
# need first; a missing prerequisite fails the run, it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
gofmt_out=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './tools/*'))
if [ -n "$gofmt_out" ]; then
	echo "gofmt would change:" >&2; echo "$gofmt_out" >&2; exit 1
fi
# The heavy tools are built once per machine and cached; on a cold machine
# they are most of the run. Nearly every integration test needs k3s, so
# k3s and phonefarm's own packages (go vet compiles them and their
# dependencies for the tests) build at full priority and the tests start
# as soon as they are done. The other tools build beside them at a lower
# priority: a test that needs one still building waits for its build
# (scripts/buildlock.sh), and a build that fails fails the run.
# The compiler's heap grows by page faults, and on this kind of virtual
# machine a fault is dear: with transparent huge pages on for every
# allocation ("always", not "madvise", which Go's runtime does not ask
# for) the standard library compiles from an empty cache in about 30%
# less CPU (67 against 95 CPU-s, two runs each). The run sets it and
# puts the machine's own setting back when it ends.
on_exit=()
trap 'for c in "${on_exit[@]}"; do eval "$c"; done' EXIT
thp=/sys/kernel/mm/transparent_hugepage/enabled
if [ -w "$thp" ] && ! grep -q '\[always\]' "$thp"; then
	thp_was=$(sed 's/.*\[\(.*\)\].*/\1/' "$thp")
	echo always >"$thp"
	on_exit+=('echo "$thp_was" >"$thp"')
	echo "test.sh: transparent huge pages set to always for this run (was $thp_was)" >&2
elif ! grep -q '\[always\]' "$thp" 2>/dev/null; then
	echo "test.sh: transparent huge pages left as they are (cannot write $thp): cold builds take longer" >&2
fi
# The builds fill both cores for most of a cold run, and the compiler
# spends part of its time collecting garbage: with GOGC=400 phonefarm's
# packages compile from an empty cache in 5% less CPU than with 200 (554
# against 586 CPU-s), the largest of those compiles at 1.5 GB.
# With GOMEMLIMIT a compile that nears 4 GiB (k3s has a few huge
# generated packages) collects harder instead of growing further. The
# tests themselves run with the caller's settings.
test_gogc=${GOGC-} test_gomemlimit=${GOMEMLIMIT-}
export GOGC=400 GOMEMLIMIT=4GiB
# phonefarm is pure Go. Built with cgo off, as the static phonefarm-agent
# the tests push to the emulated phones must be, the tests and the agent
# share one compile of every package (with cgo on for the tests, the
# agent alone cost 4.5 CPU-minutes of a cold run). The test-only tools
# (tailscale, workloads, pulumi) and the SDK check build with cgo off and
# without -trimpath too, so the standard library compiles once for all.
export CGO_ENABLED=0
# timed NAME CMD...: runs CMD and says on stderr what it cost, so a cold
# run shows where its time went.
timed() { local n=$1; shift; /usr/bin/time -f "test.sh: $n took %e s (%U s user, %S s system)" "$@"; }
timed k3s scripts/build-k3s.sh >/dev/null &          # real k3s for the provisioning tests
k3s=$!
pids=()
bg() { timed "$@" >/dev/null & pids+=($!); }
bg tailscale nice -n 5 scripts/build-tailscale.sh     # real tailscaled and headscale for the tailnet tests
bg workloads nice -n 5 scripts/build-workloads.sh     # CNI plugin, containerd shim, pause, CoreDNS, local-path-provisioner
bg proot nice -n 5 scripts/build-proot.sh "$(go env GOARCH)"  # the proot phonefarm ships to Android phones
# The pulumi CLI and its YAML language host, then the check that the
# checked-in schema and Go SDK are what the provider generates.
bg pulumi nice -n 10 bash -c 'scripts/build-pulumi.sh && scripts/gen-pulumi-sdk.sh --check'
timed "go vet" go vet ./...
# One phonefarm-agent for every package's tests (farmtest.AgentBinary),
# not one compile per test.
agentdir=$(mktemp -d)
on_exit+=('rm -rf "$agentdir"')
timed "the agent" go build -o "$agentdir/phonefarm-agent" ./cmd/phonefarm-agent
export PHONEFARM_TEST_AGENT=$agentdir/phonefarm-agent
wait "$k3s"
scripts/build-k3s.sh v1.32.0+k3s2 >/dev/null   # the same, relabelled: a release to upgrade to
bg e2e scripts/build-e2e.sh                     # Kubernetes' e2e.test and agnhost, from k3s's build cache (the agent's and the conformance tests wait for it)
if [ -n "$test_gogc" ]; then export GOGC=$test_gogc; else unset GOGC; fi
if [ -n "$test_gomemlimit" ]; then export GOMEMLIMIT=$test_gomemlimit; else unset GOMEMLIMIT; fi
export GOFLAGS=${GOFLAGS:--mod=readonly}
export PHONEFARM_INTEGRATION=required   # a test missing what it needs fails, CI or not
# Three tests at a time in a package (not GOMAXPROCS's two): one test's
# waits (for k3s to start, for a tool still building) overlap others' work.
status=0
# go vet ./... ran every analyzer already: not again per test package.
timed "go test" go test -count=1 -vet=off -parallel 3 -timeout 60m ./... "$@" || status=$?
for pid in "${pids[@]}"; do
	wait "$pid" || { echo "a tool build or check run beside the tests failed (see above)" >&2; status=1; }
done
exit "$status"
