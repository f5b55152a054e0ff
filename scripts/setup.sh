#!/usr/bin/env bash
# Installs the Debian packages phonefarm's test bed, demo and tests use.
# Idempotent and quiet when everything is already there.
set -euo pipefail
pkgs=(
	mmdebstrap      # builds the test bed's host image
	iproute2        # network namespaces, veth, bridges
	util-linux      # unshare, nsenter
	openssh-client  # scp, for bench/upload.sh
	nftables        # the firewall tests inspect rulesets
	adb             # the real adb server the adb transport talks to
	fastboot        # the real fastboot tool the flash tests drive
	android-sdk-libsparse-utils  # simg2img, the reference reader of sparse images
	xz-utils
	ca-certificates
	gcc             # cgo for the k3s build; the static pause
	busybox-static  # the busybox of the test bed's images
	bash-static     # sh of the e2e busybox image (see testbed.E2EImages)
	proot           # what the rootless agent runs containers with
	tmux            # the real terminal phonefarm init's test drives
	time            # scripts/test.sh reports what each build cost
)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "phonefarm setup: installing ${missing[*]} needs root (run with sudo)" >&2
	exit 1
fi
echo "phonefarm setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
