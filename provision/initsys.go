package provision

import (
	"fmt"
	"strings"

	"github.com/phonefarm/phonefarm/transport"
)

// initSystem is what differs between service managers: where a service's
// definition lives, what it says, and the commands that start and stop
// it. Each phone gets one, chosen once from its facts (initSystemFor);
// the steps ask it instead of branching on the init system's name.
type initSystem interface {
	// Name is the init system as facts name it: openrc, systemd.
	Name() string
	// ServicePath is where service's definition lives.
	ServicePath(service string) string
	// K3sService is the service definition of k3s in role.
	K3sService(role nodeRole, args []string, tailnet bool) []byte
	// TailscaledName is tailscaled's service name.
	TailscaledName() string
	// TailscaledService is tailscaled's service definition running bin.
	TailscaledService(bin string, env map[string]string) []byte
	// AgentService is the definition of a supervised service running bin
	// with args, restarted when it exits, started after k3s.
	AgentService(name, description, bin string, args []string) []byte
	// Command is the shell command for action on service: "restart"
	// enables it at boot and (re)starts it; "start", "stop", "reload" and
	// "disable" (at boot) do only that.
	Command(service, action string) string
}

// initSystemFor is the init system a phone's facts name, or false when
// phonefarm does not manage services under it.
func initSystemFor(name string) (initSystem, bool) {
	switch name {
	case "openrc":
		return openRC{}, true
	case "systemd":
		return systemd{}, true
	}
	return nil, false
}

// openRC is postmarketOS's and Alpine's init system.
type openRC struct{}

func (openRC) Name() string                      { return "openrc" }
func (openRC) ServicePath(service string) string { return "/etc/init.d/" + service }
func (openRC) K3sService(role nodeRole, args []string, tailnet bool) []byte {
	return renderOpenRC(role, args, tailnet)
}

// TailscaledName is "tailscale", as Alpine's and postmarketOS's package
// calls it (phonefarm's script replaces the package's, so one tailscaled
// runs).
func (openRC) TailscaledName() string { return "tailscale" }
func (openRC) TailscaledService(bin string, env map[string]string) []byte {
	return renderTailscaledOpenRC(bin, env)
}

func (openRC) AgentService(name, description, bin string, args []string) []byte {
	return fmt.Appendf(nil, `#!/sbin/openrc-run
%sdescription=%q
supervisor=supervise-daemon
command=%s
command_args="%s"
output_log=/var/log/%s.log
error_log=/var/log/%s.log
pidfile=/run/%s.pid
respawn_delay=5
respawn_max=0

depend() {
	after net k3s k3s-agent
}
`, managedHeader, description, bin, strings.ReplaceAll(transport.QuoteArgs(args...), `"`, `\"`), name, name, name)
}

// Command: services that died uncleanly are zapped to stop them.
func (openRC) Command(name, action string) string {
	switch action {
	case "restart":
		return fmt.Sprintf("rc-update add %[1]s default >/dev/null 2>&1; rc-service %[1]s stop >/dev/null 2>&1 || rc-service %[1]s zap; rc-service %[1]s start", name)
	case "stop":
		return fmt.Sprintf("rc-service %[1]s stop >/dev/null 2>&1 || rc-service %[1]s zap >/dev/null 2>&1", name)
	case "disable":
		return fmt.Sprintf("rc-update del %s default >/dev/null 2>&1 || true", name)
	}
	return fmt.Sprintf("rc-service %s %s >/dev/null", name, action)
}

// systemd is most other Linux distributions' init system.
type systemd struct{}

func (systemd) Name() string { return "systemd" }
func (systemd) ServicePath(service string) string {
	return "/etc/systemd/system/" + service + ".service"
}
func (systemd) K3sService(role nodeRole, args []string, tailnet bool) []byte {
	return renderSystemd(role, args, tailnet)
}

func (systemd) AgentService(name, description, bin string, args []string) []byte {
	return fmt.Appendf(nil, `%s[Unit]
Description=%s
After=network-online.target k3s.service k3s-agent.service

[Service]
ExecStart=%s
Restart=always
RestartSec=5s

[Install]
WantedBy=multi-user.target
`, managedHeader, description, transport.QuoteArgs(append([]string{bin}, args...)...))
}

// TailscaledName is "tailscaled", as Tailscale's and Debian's packages
// call it.
func (systemd) TailscaledName() string { return "tailscaled" }
func (systemd) TailscaledService(bin string, env map[string]string) []byte {
	return renderTailscaledSystemd(bin, env)
}

func (systemd) Command(name, action string) string {
	switch action {
	case "restart":
		return fmt.Sprintf("systemctl daemon-reload && systemctl enable %[1]s && systemctl restart %[1]s", name)
	case "reload":
		return fmt.Sprintf("systemctl reload %[1]s || systemctl restart %[1]s", name)
	case "disable":
		return fmt.Sprintf("systemctl disable %s 2>/dev/null || true", name)
	}
	return "systemctl " + action + " " + name
}
