# phonefarm checks: the run-time state k3s readiness depends on, beyond the
# facts. POSIX sh for GNU, busybox and toybox. Prints key=value lines, then
# the kernel config base64-encoded between kconfig.begin and kconfig.end.
nl='
'
kv() { printf '%s=%s\n' "$1" "${2%%"$nl"*}"; }
has() { command -v "$1" >/dev/null 2>&1; }

kv time.unix "$(date +%s)"
kv swap.devices "$(awk 'NR > 1' /proc/swaps 2>/dev/null | wc -l)"
kv keys.root_maxkeys "$(cat /proc/sys/kernel/keys/root_maxkeys 2>/dev/null)"
kv apparmor.enabled "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)"
has apparmor_parser && kv apparmor.parser 1
# Listening TCP ports and bound UDP ports, hex, from the kernel's tables.
kv listen.tcp "$(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4 == "0A" {split($2, a, ":"); printf "%s ", a[2]}')"
kv listen.udp "$(cat /proc/net/udp /proc/net/udp6 2>/dev/null | awk 'NR > 1 && $4 == "07" {split($2, a, ":"); printf "%s ", a[2]}')"
# flannel's VXLAN device: a k3s that was stopped leaves it, and its
# kernel socket holds 8472/udp until k3s takes it back.
[ -e /sys/class/net/flannel.1 ] && kv flannel.link 1
awk 'NR > 1 {printf "route=%s %s %s\n", $1, $2, $8}' /proc/net/route 2>/dev/null
if has getprop; then
	d=/data/local/tmp
	t="$d/.phonefarm-exec-$$"
	if printf '#!/system/bin/sh\necho ok\n' > "$t" 2>/dev/null && chmod 755 "$t" 2>/dev/null; then
		kv android.tmpexec "$("$t" 2>/dev/null)"
	fi
	rm -f "$t"
fi
if ! has getprop; then
	# What blocks pods once k3s runs. Can root lower oom_score_adj, as runc
	# does for every pod sandbox (CAP_SYS_RESOURCE)?
	sh -c 'v=$(cat /proc/$$/oom_score_adj) && { [ "$v" -le -1000 ] || echo $((v - 1)) > /proc/$$/oom_score_adj; }' 2>/dev/null &&
		kv oom.lower 1 || kv oom.lower 0
	# The CNI plugins where k3s looks: the directory of host-local, found on
	# PATH after k3s's own data directory.
	k3sbin=/var/lib/rancher/k3s/data/current/bin
	[ -x /usr/local/bin/k3s ] && kv k3s.installed 1
	hl=$(PATH="$k3sbin:$PATH" command -v host-local 2>/dev/null)
	if [ -n "$hl" ]; then
		d=${hl%/*}
		kv cni.dir "$d"
		p=
		for c in flannel bridge host-local loopback portmap bandwidth; do [ -x "$d/$c" ] && p="$p $c"; done
		kv cni.plugins "$p"
	fi
	# The pause image, once k3s has rendered containerd's configuration.
	cfg=/var/lib/rancher/k3s/agent/etc/containerd/config.toml
	sock=/run/k3s/containerd/containerd.sock
	img=$(sed -n 's/^ *sandbox_image = "\(.*\)"/\1/p' "$cfg" 2>/dev/null | head -1)
	if [ -n "$img" ] && [ -S "$sock" ]; then
		kv pause.image "$img"
		# crictl is k3s under that name (the link k3s's installer and
		# phonefarm make).
		crictl=$(command -v crictl 2>/dev/null || echo /usr/local/bin/crictl)
		if "$crictl" --runtime-endpoint "unix://$sock" inspecti "$img" >/dev/null 2>&1; then
			kv pause.present 1
		else
			for l in /var/log/k3s.log /var/log/k3s-agent.log; do
				[ -f "$l" ] && e=$(grep -E 'failed to (get sandbox image|pull image)' "$l" | grep -F "$img" | tail -1)
				[ -n "${e:-}" ] && kv pause.error "$e"
			done
			if [ -z "${e:-}" ] && has journalctl; then
				e=$(journalctl -u k3s -u k3s-agent -n 2000 --no-pager 2>/dev/null | grep -E 'failed to (get sandbox image|pull image)' | grep -F "$img" | tail -1)
				[ -n "$e" ] && kv pause.error "$e"
			fi
		fi
	fi
fi
src=
for f in "${PHONEFARM_KCONFIG:-}" /proc/config.gz "/boot/config-$(uname -r)"; do
	if [ -n "$f" ] && [ -r "$f" ]; then src=$f; break; fi
done
kv kconfig.path "$src"
if [ -n "$src" ] && has base64; then
	echo kconfig.begin
	base64 < "$src"
	echo kconfig.end
fi
kv end 1
