# phonefarm reset of the tailnet: log the phone out of its tailnet, stop
# tailscaled and remove the tailscale phonefarm installed (its service
# script and static builds). A tailscale from the package manager stays:
# the phone's own package is the package manager's to remove. POSIX sh.
command -v tailscale >/dev/null 2>&1 && timeout 20 tailscale logout >/dev/null 2>&1
if [ -d /run/systemd/system ]; then
	svc=/etc/systemd/system/tailscaled.service
	systemctl disable --now tailscaled >/dev/null 2>&1
	head -n 2 "$svc" 2>/dev/null | grep -q '^# Managed by phonefarm' && rm -f "$svc"
	systemctl daemon-reload
else
	svc=/etc/init.d/tailscale
	rc-service tailscale stop >/dev/null 2>&1 || rc-service tailscale zap >/dev/null 2>&1
	rc-update del tailscale default >/dev/null 2>&1
	head -n 2 "$svc" 2>/dev/null | grep -q '^# Managed by phonefarm' && rm -f "$svc"
fi
rm -f /usr/local/bin/tailscale /usr/local/sbin/tailscaled /var/lib/tailscale/tailscaled.state.phonefarm-before /run/phonefarm-tailscale-authkey
# The shell remembers where it found tailscale: forget it before asking.
hash -r 2>/dev/null
if command -v tailscale >/dev/null 2>&1; then
	echo "package kept $(command -v tailscale)"
fi
echo "tailnet reset"
