#!/usr/bin/env bash
# Air-gap images on the test bed: 5 phones get a k3s and an image tarball
# (the test bed's system images, about 100 MB) from the inventory. Prints
# the first apply, which uploads the tarball to every phone, and the median
# converged re-apply with and without the tarball in the inventory, and
# their ratio: hashes that match skip the upload (goal: a converged apply
# with airgapImages under 1 s for 5 phones). Needs root. ROUNDS (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
work=$(mktemp -d)
cleanup() { "$work/testbed" down "$work/tb" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
k3s=$(scripts/build-k3s.sh)
go build -o "$work/phonefarm" ./cmd/phonefarm
go build -o "$work/testbed" ./internal/testbed/cmd/testbed
go run ./examples/apps/build -arch "$(go env GOARCH)" -o "$work" >/dev/null
# A bigger tarball than the apps alone: the apps and k3s's own binary as a
# layer's worth of bytes, as an air-gap images archive weighs.
tar -cf "$work/images.tar" -C "$work" "apps-$(go env GOARCH).tar" -C "$(dirname "$k3s")" k3s
"$work/testbed" up "$work/tb" 5 5 >/dev/null
"$work/testbed" inventory "$work/tb" "$k3s" 1 > "$work/plain.yaml"
"$work/testbed" inventory "$work/tb" "$k3s" 1 "$work/images.tar" > "$work/airgap.yaml"
pf() { PHONEFARM_CACHE="$work/cache" "$work/phonefarm" "$@"; }
timed() { local t0; t0=$(date +%s.%N); pf apply -f "$1" --skip-checks=kernel-config >/dev/null 2>&1; echo "$(date +%s.%N) - $t0" | bc -l; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

mb=$(( $(stat -c %s "$work/images.tar") >> 20 ))
timed "$work/plain.yaml" >/dev/null
plain=() airgap=()
for r in $(seq "$ROUNDS"); do plain+=("$(timed "$work/plain.yaml")"); done
first=$(timed "$work/airgap.yaml")
printf 'first apply with a %d MB tarball on 5 phones (uploads it to each): %.1fs\n' "$mb" "$first"
for r in $(seq "$ROUNDS"); do
	airgap+=("$(timed "$work/airgap.yaml")")
	printf 'round %d: converged apply with airgapImages %.2fs\n' "$r" "${airgap[-1]}"
done
ma=$(printf '%s\n' "${airgap[@]}" | median) mp=$(printf '%s\n' "${plain[@]}" | median)
printf 'median converged apply on 5 phones: with airgapImages %.2fs, without %.2fs: ratio %.2f (goal: with airgapImages under 1 s)\n' "$ma" "$mp" "$(echo "$ma / $mp" | bc -l)"
