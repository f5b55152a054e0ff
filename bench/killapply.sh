#!/usr/bin/env bash
# Kills `phonefarm apply` with SIGKILL at random points, then re-runs it and
# checks that the farm converges: the second apply succeeds, a plan shows no
# changes, no temporary file is left on any phone, and every node is Ready.
# Every trial starts from phones reset to nothing, and the kill times are
# spread over a fresh install (0.3 s to 15 s, jittered), so they land in fact
# gathering, firewall, uploads, config, service starts and joins.
# Needs root. TRIALS (default 10), PHONES (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${TRIALS:-10}
PHONES=${PHONES:-3}
work=$(mktemp -d)
cleanup() { "$work/testbed" down "$work/tb" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
k3s=$(scripts/build-k3s.sh)
go build -o "$work/phonefarm" ./cmd/phonefarm
go build -o "$work/testbed" ./internal/testbed/cmd/testbed
"$work/testbed" up "$work/tb" "$PHONES" "$PHONES" >/dev/null
"$work/testbed" inventory "$work/tb" "$k3s" 1 > "$work/farm.yaml"
ln -s "$k3s" "$work/kubectl"   # k3s is also kubectl when called so
pf() { PHONEFARM_CACHE="$work/cache" "$work/phonefarm" "$@"; }
hosts=$(awk '/ssh: \{host:/ {gsub(/[{}]/, ""); print $3}' "$work/farm.yaml")
ssh_opts=(-q -i "$work/tb/id_ed25519" -o UserKnownHostsFile="$work/tb/known_hosts" -o BatchMode=yes)

failed=0
for trial in $(seq "$TRIALS"); do
	pf reset -f "$work/farm.yaml" --yes >/dev/null
	delay=$(awk -v i="$trial" -v n="$TRIALS" -v s="$RANDOM" 'BEGIN {srand(s); printf "%.1f", 0.3 + (i - 1) * 14.5 / n + rand() * 0.8}')
	# The binary itself in the background (not a function: $! would be a
	# subshell, and killing it would leave apply running).
	PHONEFARM_CACHE="$work/cache" "$work/phonefarm" apply -f "$work/farm.yaml" --skip-checks=kernel-config > "$work/killed.log" 2>&1 &
	pid=$!
	sleep "$delay"
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	during=$(grep -aE '\] \(' "$work/killed.log" | tail -1 | sed 's/^[0-9:]* //' || true)
	grep -q '^PHONE' "$work/killed.log" && during="(apply had finished)"
	t0=$(date +%s.%N)
	if ! pf apply -f "$work/farm.yaml" --skip-checks=kernel-config > "$work/rerun.log" 2>&1; then
		echo "trial $trial: FAILED: re-run after a kill at ${delay}s did not converge"; tail -5 "$work/rerun.log"; failed=1; continue
	fi
	t1=$(date +%s.%N)
	plan=$(pf plan -f "$work/farm.yaml" --skip-checks=kernel-config 2>/dev/null | tail -1)
	leftovers=""
	for h in $hosts; do
		leftovers+=$(ssh "${ssh_opts[@]}" "root@$h" 'find /usr/local/bin /etc/rancher /etc/init.d /etc/nftables.d /tmp -name ".*.phonefarm-*" 2>/dev/null')
	done
	pf kubeconfig -f "$work/farm.yaml" --out "$work/kubeconfig" >/dev/null
	ready=$("$work/kubectl" --kubeconfig "$work/kubeconfig" get nodes --no-headers | grep -c ' Ready ' || true)
	status=ok
	[ "$plan" = "No changes: the farm matches the inventory." ] || status="not converged: $plan"
	[ -z "$leftovers" ] || status="temp files left: $leftovers"
	[ "$ready" = "$PHONES" ] || status="$ready of $PHONES nodes Ready"
	[ "$status" = ok ] || failed=1
	printf 'trial %2d: killed after %4ss during %-60s re-run %5.1fs: %s\n' "$trial" "$delay" "${during:-(gathering facts)}" "$(echo "$t1 - $t0" | bc -l)" "$status"
done
exit $failed
