#!/usr/bin/env bash
# Builds, once per machine, a proot for phones (stock Android) that runs
# without the phone's libraries: Debian's proot for ARCH (arm64, arm or
# amd64) with the glibc and talloc it is linked against, in one static
# file (tools/prootbundle). Prints its path:
# $PHONEFARM_TOOL_CACHE (default /var/cache/phonefarm)/proot/VERSION/ARCH/proot.
# Point the inventory's android.proot.ARCH at it.
set -euo pipefail
. "$(dirname "$0")/buildlock.sh"
cd "$(dirname "$0")/.."
ARCH=${1:?usage: build-proot.sh arm64|arm|amd64}
case $ARCH in
	arm64) DEB=arm64 LD=ld-linux-aarch64.so.1 TRIPLE=aarch64-linux-gnu ;;
	arm) DEB=armhf LD=ld-linux-armhf.so.3 TRIPLE=arm-linux-gnueabihf ;;
	amd64) DEB=amd64 LD=ld-linux-x86-64.so.2 TRIPLE=x86_64-linux-gnu ;;
	*) echo "build-proot.sh: unknown architecture $ARCH; want arm64, arm or amd64" >&2; exit 2 ;;
esac
# Debian bookworm's packages; keep in step with testbed.ProotVersion.
VERSION=proot5.1.0-1.3-libc2.36-talloc2.4.0
GOVER=$(go env GOVERSION)
OUT=${PHONEFARM_TOOL_CACHE:-/var/cache/phonefarm}/proot/$VERSION-$GOVER/$ARCH
if [ -x "$OUT/proot" ]; then echo "$OUT/proot"; exit 0; fi
build_lock "$OUT"
if [ -x "$OUT/proot" ]; then echo "$OUT/proot"; exit 0; fi # built while this one waited
echo "building proot for $ARCH phones from Debian's packages (once per machine)" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A private apt state for ARCH: this machine's own is left alone.
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/debs" "$work/root" "$work/src/bundle"
echo "deb http://deb.debian.org/debian bookworm main" >"$work/apt/sources.list"
apt=(-o Dir::Etc::SourceList="$work/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
	-o Dir::State::Lists="$work/apt/lists" -o Dir::Cache="$work/apt/cache" -o Dir::State::Status=/dev/null
	-o APT::Architecture="$DEB" -o APT::Architectures="$DEB" -o APT::Sandbox::User=root)
apt-get -qq "${apt[@]}" update >&2
(cd "$work/debs" && apt-get -qq "${apt[@]}" download proot=5.1.0-1.3 libtalloc2=2.4.0-f2 libc6 >&2)
for d in "$work"/debs/*.deb; do dpkg-deb -x "$d" "$work/root"; done
lib=$work/root/lib/$TRIPLE
[ -d "$lib" ] || lib=$work/root/usr/lib/$TRIPLE
b=$work/src/bundle
install -m 0755 "$work/root/usr/bin/proot" "$b/proot"
install -m 0755 "$(readlink -f "$lib/$LD")" "$b/ld.so"
install -m 0755 "$(readlink -f "$lib/libc.so.6")" "$b/libc.so.6"
install -m 0755 "$(readlink -f "$work/root/usr/lib/$TRIPLE/libtalloc.so.2")" "$b/libtalloc.so.2"
dpkg-deb -f "$work/debs"/proot_*.deb Package Version | paste -sd' ' >"$b/VERSION"
for p in libc6 libtalloc2; do dpkg-deb -f "$work/debs/${p}"_*.deb Package Version | paste -sd' ' >>"$b/VERSION"; done
cp tools/prootbundle/go.mod tools/prootbundle/main.go "$work/src/"
mkdir -p "$OUT"
(cd "$work/src" && CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$OUT/proot.tmp" .)
mv "$OUT/proot.tmp" "$OUT/proot"
echo "$OUT/proot"
