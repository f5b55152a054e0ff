#!/usr/bin/env bash
# Uploads a 100 MB file to a test-bed host with phonefarm's SFTP path and
# with OpenSSH scp, alternating, and prints the throughput ratio
# (phonefarm / scp; the goal is at least 0.8). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SIZE_MB=${SIZE_MB:-100}
work=$(mktemp -d)
cleanup() { go run ./internal/testbed/cmd/testbed down "$work/tb" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/upload" ./bench/upload
go build -o "$work/testbed" ./internal/testbed/cmd/testbed
"$work/testbed" up "$work/tb" 1 1 >/dev/null
addr=$(python3 -c "import json;print(json.load(open('$work/tb/testbed.json'))['Hosts'][0]['Addr'])")
head -c $((SIZE_MB << 20)) /dev/urandom > "$work/payload"
ssh_opts=(-q -i "$work/tb/id_ed25519" -o UserKnownHostsFile="$work/tb/known_hosts" -o BatchMode=yes)
pf_total=0 scp_total=0
for i in $(seq "$ROUNDS"); do
	t0=$(date +%s.%N)
	"$work/upload" -host "$addr" -key "$work/tb/id_ed25519" -known-hosts "$work/tb/known_hosts" -src "$work/payload" -dst /root/payload.pf
	t1=$(date +%s.%N)
	scp "${ssh_opts[@]}" "$work/payload" "root@$addr:/root/payload.scp"
	t2=$(date +%s.%N)
	pf=$(echo "$t1 - $t0" | bc -l) sc=$(echo "$t2 - $t1" | bc -l)
	printf 'round %d: phonefarm %.2fs (%.0f MB/s), scp %.2fs (%.0f MB/s)\n' "$i" "$pf" "$(echo "$SIZE_MB / $pf" | bc -l)" "$sc" "$(echo "$SIZE_MB / $sc" | bc -l)"
	pf_total=$(echo "$pf_total + $pf" | bc -l) scp_total=$(echo "$scp_total + $sc" | bc -l)
done
printf 'throughput ratio phonefarm/scp over %d rounds: %.2f (goal >= 0.8)\n' "$ROUNDS" "$(echo "$scp_total / $pf_total" | bc -l)"
