#!/bin/sh
# PID 1 of a test-bed phone's fresh PID, mount and UTS namespaces (already
# inside its network namespace): assemble the root filesystem from the shared
# read-only image and the phone's own upper layer, then hand over to OpenRC.
# Usage: hostinit.sh ROOTFS HOSTDIR HOSTNAME CGROUP [WORKLOADS]
set -eu
rootfs=$1 dir=$2 name=$3 cgroup=$4 workloads=${5:-}
m=$dir/merged
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$dir/upper,workdir=$dir/work" "$m"
# k3s's data lives on this machine's own filesystem, not the overlay root,
# so containerd can use its overlayfs snapshotter as on a phone.
mkdir -p "$dir/rancher" "$m/var/lib/rancher"
mount --bind "$dir/rancher" "$m/var/lib/rancher"
if [ -n "$workloads" ]; then
	mount --bind "$workloads" "$m/opt/phonefarm-testbed"
	mount -o remount,bind,ro "$m/opt/phonefarm-testbed"
fi
mount -t proc proc "$m/proc"
mount -t sysfs sysfs "$m/sys" || mount -t sysfs -o ro sysfs "$m/sys" || true
# A phone's battery, charger and thermal zone, sysfs-shaped on tmpfs: this
# machine has none, and the tests change them (capacity, status, online,
# temp) where phonefarm reads a phone's. They start charged and cool.
if mount -t tmpfs -o mode=755 power_supply "$m/sys/class/power_supply"; then
	b=$m/sys/class/power_supply/battery
	mkdir -p "$b" "$m/sys/class/power_supply/ac"
	echo Battery > "$b/type"
	echo 80 > "$b/capacity"
	echo Charging > "$b/status"
	echo 100 > "$b/charge_control_end_threshold"
	echo Mains > "$m/sys/class/power_supply/ac/type"
	echo 1 > "$m/sys/class/power_supply/ac/online"
fi
if mount -t tmpfs -o mode=755 thermal "$m/sys/class/thermal"; then
	mkdir -p "$m/sys/class/thermal/thermal_zone0"
	echo battery > "$m/sys/class/thermal/thermal_zone0/type"
	echo 35000 > "$m/sys/class/thermal/thermal_zone0/temp"
	# The CPU's frequency cap, not in use (0 of 10).
	mkdir -p "$m/sys/class/thermal/cooling_device0"
	echo thermal-cpufreq-0 > "$m/sys/class/thermal/cooling_device0/type"
	echo 0 > "$m/sys/class/thermal/cooling_device0/cur_state"
	echo 10 > "$m/sys/class/thermal/cooling_device0/max_state"
fi
mount -t tmpfs -o mode=755 tmpfs "$m/dev"
for f in null zero full random urandom tty; do
	touch "$m/dev/$f"
	mount --bind "/dev/$f" "$m/dev/$f"
done
mkdir -p "$m/dev/pts" "$m/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$m/dev/pts"
ln -sf pts/ptmx "$m/dev/ptmx"
# The kubelet needs the kernel log and the cgroup hierarchies, and
# tailscaled a TUN device, as on a phone.
touch "$m/dev/kmsg" && mount --bind /dev/kmsg "$m/dev/kmsg" || true
mkdir -p "$m/dev/net" && touch "$m/dev/net/tun" && mount --bind /dev/net/tun "$m/dev/net/tun" || true
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	mount -t cgroup2 cgroup2 "$m/sys/fs/cgroup" || true
else
	mount -t tmpfs -o mode=755 cgroup "$m/sys/fs/cgroup" || true
	for c in $(awk '!/^#/ && $4 == 1 {print $1}' /proc/cgroups); do
		mkdir -p "$m/sys/fs/cgroup/$c"
		mount -t cgroup -o "$c" cgroup "$m/sys/fs/cgroup/$c" || rmdir "$m/sys/fs/cgroup/$c"
	done
	mkdir -p "$m/sys/fs/cgroup/systemd"
	mount -t cgroup -o none,name=systemd cgroup "$m/sys/fs/cgroup/systemd" || rmdir "$m/sys/fs/cgroup/systemd"
fi
# Each host gets its own cgroup in every hierarchy, for its kubelet's
# cgroup-root, so several kubelets on this machine do not share /kubepods.
for d in "$m"/sys/fs/cgroup/*/ "$m/sys/fs/cgroup/"; do
	[ -d "$d" ] && mkdir -p "$d$cgroup" 2>/dev/null || true
done
mount -t tmpfs tmpfs "$m/run"
mount -t tmpfs tmpfs "$m/tmp"
hostname "$name"
# pivot_root, not chroot: the host's mount namespace must have the image as
# its root, as a phone's has, or what joins the namespace (runc exec,
# nsenter) finds this machine's root instead.
cd "$m"
mkdir -p .old-root
pivot_root . .old-root
umount -l /.old-root
rmdir /.old-root
exec /sbin/openrc-init
