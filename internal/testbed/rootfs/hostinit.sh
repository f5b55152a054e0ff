#!/bin/sh
# PID 1 of a test-bed phone's fresh PID, mount and UTS namespaces (already
# inside its network namespace): assemble the root filesystem from the shared
# read-only image and the phone's own upper layer, then hand over to OpenRC.
# Usage: hostinit.sh ROOTFS HOSTDIR HOSTNAME
set -eu
rootfs=$1 dir=$2 name=$3
m=$dir/merged
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$dir/upper,workdir=$dir/work" "$m"
mount -t proc proc "$m/proc"
mount -t sysfs sysfs "$m/sys" || mount -t sysfs -o ro sysfs "$m/sys" || true
mount -t tmpfs -o mode=755 tmpfs "$m/dev"
for f in null zero full random urandom tty; do
	touch "$m/dev/$f"
	mount --bind "/dev/$f" "$m/dev/$f"
done
mkdir -p "$m/dev/pts" "$m/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$m/dev/pts"
ln -sf pts/ptmx "$m/dev/ptmx"
mount -t tmpfs tmpfs "$m/run"
mount -t tmpfs tmpfs "$m/tmp"
hostname "$name"
exec chroot "$m" /sbin/openrc-init
