# phonefarm reset: stop k3s and remove it, its data, its config,
# phonefarm's firewall fragment and its phone-health reporter. Idempotent.
# POSIX sh.
for s in phonefarm-health k3s k3s-agent; do
	if [ -d /run/systemd/system ]; then
		systemctl disable --now "$s" >/dev/null 2>&1
		rm -f "/etc/systemd/system/$s.service"
	elif [ -f "/etc/init.d/$s" ]; then
		rc-service "$s" stop >/dev/null 2>&1 || rc-service "$s" zap >/dev/null 2>&1
		rc-update del "$s" default >/dev/null 2>&1
		rm -f "/etc/init.d/$s"
	fi
done
[ -d /run/systemd/system ] && systemctl daemon-reload
# What k3s leaves running: its processes and containers.
for p in $(pgrep -f '^/usr/local/bin/k3s|containerd-shim' 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
awk '$2 ~ "^(/run/k3s|/var/lib/kubelet|/var/lib/rancher/k3s|/run/netns/cni-)" {print $2}' /proc/self/mounts | sort -r | while read -r m; do
	umount -l "$m" 2>/dev/null
done
for l in cni0 flannel.1 flannel-v6.1 flannel-wg flannel-wg-v6; do ip link del "$l" >/dev/null 2>&1; done
rm -rf /etc/rancher/k3s /etc/rancher/node /var/lib/rancher/k3s /var/lib/phonefarm /var/lib/kubelet /run/k3s /run/flannel /var/lib/cni
for c in kubectl crictl ctr; do
	[ "$(readlink "/usr/local/bin/$c" 2>/dev/null)" = k3s ] && rm -f "/usr/local/bin/$c"
done
rm -f /usr/local/bin/k3s /usr/local/bin/phonefarm-agent
if [ -f /etc/nftables.d/70_phonefarm-k3s.nft ]; then
	rm -f /etc/nftables.d/70_phonefarm-k3s.nft
	if [ -d /run/systemd/system ]; then systemctl reload nftables; else rc-service nftables reload; fi >/dev/null 2>&1
fi
echo reset
