#!/usr/bin/env bash
# Apply wall time on the test bed: a fresh install on 1 phone and on 5
# phones (1 server, 4 agents), and a converged re-apply on 5 phones. Prints
# the ratios; goals: 5 phones at most 1.5x one phone, a converged re-apply
# under 1 s. Then where a fresh apply on 5 phones spends its time (the
# phase split, from the engine's events). Needs root. ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
work=$(mktemp -d)
cleanup() { "$work/testbed" down "$work/tb" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
k3s=$(scripts/build-k3s.sh)
go build -o "$work/phonefarm" ./cmd/phonefarm
go build -o "$work/testbed" ./internal/testbed/cmd/testbed
go build -o "$work/phases" ./bench/phases
"$work/testbed" up "$work/tb" 5 5 >/dev/null
"$work/testbed" inventory "$work/tb" "$k3s" 1 > "$work/farm5.yaml"
# The first phone alone: the inventory up to the second phone.
awk '/^  - name: phone2$/ {exit} {print}' "$work/farm5.yaml" > "$work/farm1.yaml"
pf() { PHONEFARM_CACHE="$work/cache" "$work/phonefarm" "$@"; }
timed() { local t0; t0=$(date +%s.%N); pf apply -f "$1" --skip-checks=kernel-config >/dev/null 2>&1; echo "$(date +%s.%N) - $t0" | bc -l; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

one=() five=() re=()
for r in $(seq "$ROUNDS"); do
	pf reset -f "$work/farm5.yaml" --yes >/dev/null
	one+=("$(timed "$work/farm1.yaml")")
	pf reset -f "$work/farm5.yaml" --yes >/dev/null
	five+=("$(timed "$work/farm5.yaml")")
	re+=("$(timed "$work/farm5.yaml")")
	printf 'round %d: 1 phone %.1fs, 5 phones %.1fs, converged re-apply on 5 %.2fs\n' "$r" "${one[-1]}" "${five[-1]}" "${re[-1]}"
done
m1=$(printf '%s\n' "${one[@]}" | median) m5=$(printf '%s\n' "${five[@]}" | median) mr=$(printf '%s\n' "${re[@]}" | median)
printf 'median: 1 phone %.1fs, 5 phones %.1fs: ratio %.2f (goal <= 1.5); converged re-apply on 5 phones %.2fs (goal < 1 s)\n' "$m1" "$m5" "$(echo "$m5 / $m1" | bc -l)" "$mr"
pf reset -f "$work/farm5.yaml" --yes >/dev/null
echo "a fresh apply on 5 phones, time from the start:"
PHONEFARM_CACHE="$work/cache" "$work/phases" -f "$work/farm5.yaml" -skip-checks=kernel-config
