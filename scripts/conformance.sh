#!/usr/bin/env bash
# Runs every [Conformance] test of the groups phonefarm's farms must pass
# (Pods, Kubelet, Downward API, ConfigMap, Secrets, EmptyDir, Services, DNS;
# internal/conformance) on a fresh three-phone test-bed farm, and prints the
# counts per group. scripts/test.sh runs a representative part of each
# group; this runs them all (about half an hour). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-k3s.sh >/dev/null
scripts/build-workloads.sh >/dev/null
scripts/build-e2e.sh >/dev/null
PHONEFARM_CONFORMANCE=full exec go test -count=1 -timeout 120m -run TestKubernetesConformance -v ./internal/conformance "$@"
