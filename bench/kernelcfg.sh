#!/usr/bin/env bash
# kernelcfg check against a plain scan of the same configs: the 94 pinned
# postmarketOS kernel configs (kernelcfg/testdata/pmaports, decompressed
# first), parsed and checked against the k3s profile as `kernelcfg check`
# does, against only reading their options into a map. Prints the time
# per pass of each and their ratio (goal: at most 1.5). Run it on an idle
# machine; it asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(go test -run '^$' -bench 'BenchmarkAgainstPlainScan' -benchtime 20x -count 5 ./kernelcfg/)
echo "$out" | grep Benchmark
echo "$out" | awk '
	/plain-scan/      { p += $3; np++ }
	/kernelcfg-check/ { k += $3; nk++ }
	END {
		if (np == 0 || nk == 0) { print "no benchmark results"; exit 1 }
		printf "plain scan %.0f ms, kernelcfg check %.0f ms per pass of the 94 configs: ratio %.2f (goal <= 1.5)\n", p/np/1e6, k/nk/1e6, (k/nk)/(p/np)
	}'
