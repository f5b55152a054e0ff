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
awk 'NR > 1 {printf "route=%s %s %s\n", $1, $2, $8}' /proc/net/route 2>/dev/null
if has getprop; then
	d=/data/local/tmp
	t="$d/.phonefarm-exec-$$"
	if printf '#!/system/bin/sh\necho ok\n' > "$t" 2>/dev/null && chmod 755 "$t" 2>/dev/null; then
		kv android.tmpexec "$("$t" 2>/dev/null)"
	fi
	rm -f "$t"
	has su && kv android.su 1
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
