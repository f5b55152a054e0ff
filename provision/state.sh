# phonefarm provisioning state: hashes and times of the files phonefarm
# manages, the k3s service, addresses and the firewall layout. POSIX sh.
nl='
'
kv() { printf '%s=%s\n' "$1" "${2%%"$nl"*}"; }
has() { command -v "$1" >/dev/null 2>&1; }
# Hashes are cached by size, modification time and inode: hashing a 200 MB
# k3s binary on every plan costs a phone seconds. phonefarm replaces files
# by renaming a new one over them, which always changes the inode.
cache=/var/lib/phonefarm/hashes
sum() {
	[ -f "$1" ] || return 0
	key=$(stat -c '%s %Y %i' "$1" 2>/dev/null) || return 0
	c=$(awk -v p="$1" -v k="$key" '$1 == p && $2 " " $3 " " $4 == k {print $5; exit}' "$cache" 2>/dev/null)
	if [ -z "$c" ]; then
		c=$(sha256sum "$1" 2>/dev/null | cut -d' ' -f1)
		[ -n "$c" ] && mkdir -p "${cache%/*}" 2>/dev/null &&
			{ grep -v "^$1 " "$cache" 2>/dev/null; echo "$1 $key $c"; } > "$cache.$$" && mv -f "$cache.$$" "$cache"
	fi
	echo "$c"
}
mtime() { [ -e "$1" ] && stat -c %Y "$1" 2>/dev/null; }

for f in /usr/local/bin/k3s /etc/rancher/k3s/config.yaml /etc/rancher/k3s/phonefarm-token /etc/rancher/k3s/phonefarm-vpn-auth \
	/etc/init.d/k3s /etc/init.d/k3s-agent /etc/systemd/system/k3s.service /etc/systemd/system/k3s-agent.service \
	/etc/nftables.d/70_phonefarm-k3s.nft /var/lib/rancher/k3s/server/token \
	/usr/local/bin/tailscale /usr/local/sbin/tailscaled /etc/init.d/tailscale /etc/systemd/system/tailscaled.service \
	/etc/rancher/k3s/registries.yaml /var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl \
	/etc/udev/rules.d/90-phonefarm-charge-limit.rules \
	/usr/local/bin/phonefarm-agent /etc/rancher/k3s/phonefarm-health.kubeconfig /etc/init.d/phonefarm-health /etc/systemd/system/phonefarm-health.service \
	/etc/rancher/k3s/phonefarm-registries/* /var/lib/rancher/k3s/agent/images/*; do
	s=$(sum "$f")
	[ -n "$s" ] && kv "file:$f" "$s $(mtime "$f")"
done
# Files phonefarm wrote whole (its header on the first or second line).
for f in /etc/rancher/k3s/registries.yaml /var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl; do
	head -n 2 "$f" 2>/dev/null | grep -q '^# Managed by phonefarm' && kv "managed:$f" 1
done
# Air-gap image tarballs phonefarm uploaded.
[ -f /var/lib/phonefarm/airgap-images ] && while read -r n; do [ -n "$n" ] && kv airgap.owned "$n"; done < /var/lib/phonefarm/airgap-images
# Can root lower its oom_score_adj (CAP_SYS_RESOURCE)? runc lowers it for
# every pod sandbox; containers and restricted VMs refuse.
sh -c 'v=$(cat /proc/$$/oom_score_adj) && { [ "$v" -le -1000 ] || echo $((v - 1)) > /proc/$$/oom_score_adj; }' 2>/dev/null || kv oom.restricted 1
[ -d /etc/nftables.d ] && kv nft.dir 1
[ -f /etc/init.d/nftables ] || [ -f /lib/systemd/system/nftables.service ] || [ -f /usr/lib/systemd/system/nftables.service ] && kv nft.service 1
if has nft; then
	nft list ruleset 2>/dev/null | grep -q 'phonefarm: k3s' && kv nft.loaded 1
fi
# The running k3s: its start time, from the kernel's boot time and the
# process's start in clock ticks.
pid=$(pgrep -xo k3s-server 2>/dev/null || pgrep -xo k3s-agent 2>/dev/null || pgrep -o -f '^/usr/local/bin/k3s (server|agent)' 2>/dev/null)
if [ -n "$pid" ]; then
	btime=$(awk '/^btime/ {print $2}' /proc/stat)
	ticks=$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null)
	hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
	[ -n "$ticks" ] && kv k3s.started $((btime + ticks / hz))
	kv k3s.pid "$pid"
fi
# The address k3s's etcd member was configured with: etcd keeps a
# server's peer address in its data, so a server whose address changes must
# move its member.
if [ -d /var/lib/rancher/k3s/server/db/etcd/member ]; then
	kv k3s.etcd.ip "$(sed -n 's/^node-ip: *//p' /etc/rancher/k3s/config.yaml 2>/dev/null | head -1)"
fi
pgrep -f '^/usr/local/bin/phonefarm-agent health' >/dev/null 2>&1 && kv health.running 1
for s in k3s k3s-agent tailscale tailscaled phonefarm-health; do
	if [ -d /run/systemd/system ]; then
		systemctl is-enabled "$s" >/dev/null 2>&1 && kv "service:$s" enabled
	elif [ -e "/etc/runlevels/default/$s" ]; then
		kv "service:$s" enabled
	fi
done
# Tailscale: is tailscaled running, and what does it say about itself.
pgrep -x tailscaled >/dev/null 2>&1 && kv ts.running 1
if has tailscale; then
	kv ts.installed "$(command -v tailscale)"
	echo ts.status.begin
	# tailscale's JSON does not end with a newline: give the marker its own line.
	timeout 5 tailscale status --json 2>/dev/null
	echo
	echo ts.status.end
	echo ts.prefs.begin
	timeout 5 tailscale debug prefs 2>/dev/null
	echo
	echo ts.prefs.end
fi
if has ip; then
	ip -4 -o addr show 2>/dev/null | awk '{split($4, a, "/"); print "addr=" $2 " " a[1]}'
fi
kv end 1
