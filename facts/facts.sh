# phonefarm facts: everything phonefarm needs to know about a phone, in one
# round trip. POSIX sh; works with GNU coreutils, busybox and toybox. Prints
# key=value lines; a missing tool or file just leaves its keys out.
nl='
'
kv() { printf '%s=%s\n' "$1" "${2%%"$nl"*}"; }
has() { command -v "$1" >/dev/null 2>&1; }

kv hostname "$(cat /proc/sys/kernel/hostname 2>/dev/null)"
kv kernel "$(uname -r)"
kv machine "$(uname -m)"
if [ -r /etc/os-release ]; then
	( . /etc/os-release; kv os.id "$ID"; kv os.version "$VERSION_ID"; kv os.name "$PRETTY_NAME" )
fi
# Android's Linux terminal: the Debian VM AVF runs on a phone. Its kernel
# is Debian's with an avf flavour; its port forwarder runs beside ttyd.
case "$(uname -r)" in *-avf-*) kv os.avf kernel ;; esac
for u in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
	[ -f "$u/forwarder_guest_launcher.service" ] && kv os.avf forwarder && break
done
if has getprop; then
	kv android.release "$(getprop ro.build.version.release)"
	kv android.sdk "$(getprop ro.build.version.sdk)"
	kv android.abi "$(getprop ro.product.cpu.abi)"
	kv android.model "$(getprop ro.product.model)"
	kv android.device "$(getprop ro.product.device)"
	command -v su >/dev/null 2>&1 && kv android.su 1
fi
kv init.comm "$(cat /proc/1/comm 2>/dev/null)"
[ -d /run/systemd/system ] && kv init.systemd 1
{ has openrc || [ -x /sbin/openrc ]; } && kv init.openrc 1
kv cpus "$(grep -c '^processor' /proc/cpuinfo 2>/dev/null)"
while read -r k v _; do
	case "$k" in
	MemTotal:) kv mem.total.kb "$v" ;;
	MemAvailable:) kv mem.available.kb "$v" ;;
	SwapTotal:) kv swap.total.kb "$v" ;;
	esac
done < /proc/meminfo
for d in /var/lib /data /; do
	if [ -d "$d" ]; then
		kv disk.path "$d"
		kv disk.free.kb "$(df -Pk "$d" 2>/dev/null | awk 'NR==2 {print $4}')"
		break
	fi
done
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	kv cgroup.version 2
	kv cgroup.controllers "$(cat /sys/fs/cgroup/cgroup.controllers)"
elif [ -r /proc/cgroups ]; then
	kv cgroup.version 1
	kv cgroup.controllers "$(awk '!/^#/ && $4 == 1 {printf "%s ", $1}' /proc/cgroups)"
fi
if has nft; then kv nft.version "$(nft --version 2>/dev/null)"; fi
if has iptables; then kv iptables.version "$(iptables --version 2>/dev/null)"; fi
if has k3s; then
	kv k3s.version "$(k3s --version 2>/dev/null)"
elif [ -x /usr/local/bin/k3s ]; then
	kv k3s.version "$(/usr/local/bin/k3s --version 2>/dev/null)"
fi
for s in k3s k3s-agent; do
	if [ -f "/etc/init.d/$s" ] || [ -f "/etc/systemd/system/$s.service" ]; then
		kv k3s.service "$s"
		if [ -d /run/systemd/system ]; then
			kv k3s.active "$(systemctl is-active "$s" 2>/dev/null)"
		elif has rc-service; then
			rc-service "$s" status >/dev/null 2>&1 && kv k3s.active active || kv k3s.active inactive
		fi
	fi
done
if has tailscale; then
	kv tailscale.version "$(tailscale version 2>/dev/null)"
	kv tailscale.ipv4 "$(tailscale ip -4 2>/dev/null)"
fi
for b in /sys/class/power_supply/*; do
	[ "$(cat "$b/type" 2>/dev/null)" = Battery ] || continue
	kv battery.capacity "$(cat "$b/capacity" 2>/dev/null)"
	kv battery.status "$(cat "$b/status" 2>/dev/null)"
	# The kernel's charge limit, where the phone's driver has one.
	if [ -f "$b/charge_control_end_threshold" ]; then
		kv battery.limit.file "$b/charge_control_end_threshold"
		kv battery.limit "$(cat "$b/charge_control_end_threshold" 2>/dev/null)"
	fi
	break
done
for b in /sys/class/power_supply/*; do
	case "$(cat "$b/type" 2>/dev/null)" in Mains | USB* | Wireless) ;; *) continue ;; esac
	[ "$(cat "$b/online" 2>/dev/null)" = 1 ] && kv power.external 1 && break
done
t=0
for z in /sys/class/thermal/thermal_zone*/temp; do
	v=$(cat "$z" 2>/dev/null) || continue
	case "$v" in '' | *[!0-9]*) continue ;; esac
	[ "$v" -gt "$t" ] && t=$v
done
[ "$t" -gt 0 ] && kv thermal.max.millicelsius "$t"
# Throttling: the thermal framework's cooling devices in use (a CPU or GPU
# frequency cap at a state above 0), as type:state/max.
c=
for d in /sys/class/thermal/cooling_device*; do
	s=$(cat "$d/cur_state" 2>/dev/null) || continue
	case "$s" in '' | 0 | *[!0-9]*) continue ;; esac
	ty=$(cat "$d/type" 2>/dev/null)
	case "$ty" in [Ff]an* | '') continue ;; esac
	c="$c $ty:$s/$(cat "$d/max_state" 2>/dev/null)"
done
[ -n "$c" ] && kv thermal.throttled "${c# }"
kv uptime.seconds "$(cut -d' ' -f1 /proc/uptime 2>/dev/null)"
kv end 1
