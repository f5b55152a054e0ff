#!/usr/bin/env bash
# How phonefarm's cost grows with the farm: facts and plan on 1, 10 and 40
# test-bed hosts (SSH only; nothing is installed, so plan reads and plans
# a fresh install on each). Prints the median wall time per size and the
# ratio 40/1; goal: 40 phones cost at most 2x one phone. Needs root.
# ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
work=$(mktemp -d)
cleanup() { "$work/testbed" down "$work/tb" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
k3s=$(scripts/build-k3s.sh)
go build -o "$work/phonefarm" ./cmd/phonefarm
go build -o "$work/testbed" ./internal/testbed/cmd/testbed
"$work/testbed" up "$work/tb" 40 40 >/dev/null
"$work/testbed" inventory "$work/tb" "$k3s" 1 > "$work/farm40.yaml"
for n in 1 10; do
	awk -v stop="  - name: phone$((n + 1))" '$0 == stop {exit} {print}' "$work/farm40.yaml" > "$work/farm$n.yaml"
done
pf() { PHONEFARM_CACHE="$work/cache" "$work/phonefarm" "$@"; }
timed() { local t0; t0=$(date +%s.%N); pf "$@" >/dev/null 2>&1 || true; echo "$(date +%s.%N) - $t0" | bc -l; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
pf plan -f "$work/farm1.yaml" --skip-checks=kernel-config >/dev/null 2>&1 || true # hash the k3s binary once
declare -A facts plan
for n in 1 10 40; do
	f=() p=()
	for _ in $(seq "$ROUNDS"); do
		f+=("$(timed facts -f "$work/farm$n.yaml")")
		p+=("$(timed plan -f "$work/farm$n.yaml" --skip-checks=kernel-config --parallel 40)")
	done
	facts[$n]=$(printf '%s\n' "${f[@]}" | median)
	plan[$n]=$(printf '%s\n' "${p[@]}" | median)
	printf '%2d phones: facts %.2fs, plan %.2fs\n' "$n" "${facts[$n]}" "${plan[$n]}"
done
printf 'ratio 40/1: facts %.2f, plan %.2f (goal <= 2)\n' "$(echo "${facts[40]} / ${facts[1]}" | bc -l)" "$(echo "${plan[40]} / ${plan[1]}" | bc -l)"
