#!/usr/bin/env bash
# The rootless agent against real k3s in the test bed (BenchmarkAgent):
# seconds from start to its node Ready, a pod's start with its image
# already on the phone, and its resident memory once idle; then proot's
# overhead (BenchmarkProotOverhead): a CPU-bound and an exec-heavy shell
# loop run directly and under proot, and the ratios. Goals (issue 14):
# Ready <= 5 s, cached pod start <= 1 s, idle RSS <= 40 MB. Needs root and
# what scripts/test.sh builds. ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
if ! out=$(go test -count=1 -run '^$' -bench 'BenchmarkAgent$|BenchmarkProotOverhead' -benchtime "${ROUNDS}x" -timeout 30m ./agent/ 2>&1); then
	echo "$out" >&2
	exit 1
fi
echo "$out" | grep -E '^Benchmark'
echo "$out" | awk '
	/^BenchmarkAgent-/ { for (i = 3; i < NF; i += 2) printf "agent: %s %s\n", $(i+1), $i }
	/^BenchmarkProotOverhead\// {
		split($1, p, "/"); kind = p[2]; how = p[3]; sub(/-[0-9]+$/, "", how)
		t[kind, how] = $3
	}
	END {
		for (k in t) { split(k, kh, SUBSEP); kinds[kh[1]] = 1 }
		for (kind in kinds) printf "proot overhead, %s-bound: %.2fx the direct run\n", kind, t[kind, "proot"] / t[kind, "direct"]
	}'
