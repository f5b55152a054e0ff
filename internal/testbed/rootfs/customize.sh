#!/bin/sh
# Turns a Debian minbase tree into the shared image of a phone-like host:
# OpenRC with Alpine/postmarketOS-style sshd and nftables services, and an
# unprivileged "user" who may become root with sudo or doas.
# Usage: customize.sh ROOTFS FILESDIR
set -eu
r=$1 files=$2
install -m 0644 "$files/sshd_config" "$r/etc/ssh/sshd_config.d/phonefarm-testbed.conf"
rm -f "$r"/etc/ssh/ssh_host_*
rm -f "$r/etc/init.d/ssh" "$r"/etc/runlevels/*/ssh
rm -f "$r"/etc/runlevels/sysinit/procps "$r"/etc/runlevels/sysinit/hwclock.sh "$r"/etc/runlevels/sysinit/cgroups
install -m 0755 "$files/sshd.initd" "$r/etc/init.d/sshd"
install -m 0755 "$files/nftables.initd" "$r/etc/init.d/nftables"
install -m 0755 "$files/nftables.nft" "$r/etc/nftables.nft"
mkdir -p "$r/etc/nftables.d"
install -m 0644 "$files"/nftables.d/*.nft "$r/etc/nftables.d/"
grep -q '^rc_sys="lxc"' "$r/etc/rc.conf" || echo 'rc_sys="lxc"' >> "$r/etc/rc.conf"
chroot "$r" rc-update add nftables default >/dev/null
chroot "$r" rc-update add sshd default >/dev/null
chroot "$r" sh -c 'id user >/dev/null 2>&1 || useradd -m -s /bin/sh user'
chroot "$r" usermod -p '*' user
echo 'user ALL=(ALL) NOPASSWD: ALL' > "$r/etc/sudoers.d/phonefarm-testbed"
chmod 0440 "$r/etc/sudoers.d/phonefarm-testbed"
echo 'permit nopass user as root' > "$r/etc/doas.conf"
# k3s takes the directory holding host-local as its CNI plugin directory.
for p in "$r"/usr/lib/cni/*; do ln -sf "/usr/lib/cni/${p##*/}" "$r/usr/local/bin/${p##*/}"; done
# What else a k3s release carries in its data directory comes from the
# machine's build of it (scripts/build-workloads.sh), mounted read-only at
# /opt/phonefarm-testbed: the flannel CNI plugin, speaking CNI 0.4.0 (hence
# k3s's --flannel-cni-conf), and containerd's runc shim.
mkdir -p "$r/opt/phonefarm-testbed" "$r/etc/phonefarm-testbed"
for b in flannel containerd-shim-runc-v2; do ln -sf "/opt/phonefarm-testbed/$b" "$r/usr/local/bin/$b"; done
install -m 0644 "$files/flannel-cni.conflist" "$r/etc/phonefarm-testbed/flannel-cni.conflist"
# A k3s release runs its embedded containerd through a containerd symlink in
# its data directory; a k3s built from source finds it on PATH.
ln -sf k3s "$r/usr/local/bin/containerd"
