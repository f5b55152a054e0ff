#!/usr/bin/env bash
# How phonefarm's cost grows with the farm: facts and plan on 1, 10 and 40
# test-bed hosts (SSH only; nothing is installed, so plan reads and plans
# a fresh install on each), every phone at once (--parallel 40). Prints
# the median wall time per size and the ratio 40/1; goal: 40 phones cost
# at most 2x one phone. Needs root. ROUNDS (default 3).
#
# Where the time goes: beside the wall time, the CPU seconds phonefarm
# itself used (user+sys) and the CPU seconds the whole machine was busy.
# The test-bed phones are network namespaces on this machine: their sshd
# and shells run on its cores, where 40 phones would bring 40 CPUs.
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
tick=$(getconf CLK_TCK)
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
# timed CMD...: "wall phonefarm-cpu machine-busy" in seconds.
timed() {
	local t0 b0 b1 t1 cpu
	b0=$(busy) t0=$(date +%s.%N)
	cpu=$( { /usr/bin/time -f '%U %S' bash -c 'PHONEFARM_CACHE="$0" "$1" "${@:2}" >/dev/null 2>&1 || true' "$work/cache" "$work/phonefarm" "$@"; } 2>&1 | tail -n 1)
	t1=$(date +%s.%N) b1=$(busy)
	echo "$(echo "$t1 - $t0" | bc -l) $(echo "$cpu" | awk '{print $1 + $2}') $(echo "($b1 - $b0) / $tick" | bc -l)"
}
median() { sort -n -k1,1 | awk '{a[NR] = $0} END {print a[int((NR + 1) / 2)]}'; }
pf plan -f "$work/farm1.yaml" --skip-checks=kernel-config >/dev/null 2>&1 || true # hash the k3s binary once
declare -A facts plan
for n in 1 10 40; do
	f=() p=()
	for _ in $(seq "$ROUNDS"); do
		f+=("$(timed facts -f "$work/farm$n.yaml" --parallel 40)")
		p+=("$(timed plan -f "$work/farm$n.yaml" --skip-checks=kernel-config --parallel 40)")
	done
	facts[$n]=$(printf '%s\n' "${f[@]}" | median)
	plan[$n]=$(printf '%s\n' "${p[@]}" | median)
	read -r fw fc fb <<<"${facts[$n]}"
	read -r pw pc pb <<<"${plan[$n]}"
	printf '%2d phones: facts %.2fs (phonefarm %.2f CPU-s, machine busy %.2f of %.2f CPU-s), plan %.2fs (phonefarm %.2f CPU-s, machine busy %.2f of %.2f CPU-s)\n' \
		"$n" "$fw" "$fc" "$fb" "$(echo "$fw * $(nproc)" | bc -l)" "$pw" "$pc" "$pb" "$(echo "$pw * $(nproc)" | bc -l)"
done
ratio() { echo "${1%% *} / ${2%% *}" | bc -l; }
printf 'ratio 40/1: facts %.2f, plan %.2f (goal <= 2)\n' "$(ratio "${facts[40]}" "${facts[1]}")" "$(ratio "${plan[40]}" "${plan[1]}")"
