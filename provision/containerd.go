package provision

import (
	"regexp"
)

// ContainerdTemplatePath is where k3s looks for a template of its
// containerd configuration.
const ContainerdTemplatePath = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl"

// restrictedOOMTemplate is containerd's configuration as k3s v1.32
// (containerd 1.7, configuration version 2) renders it on a Linux phone,
// with restrict_oom_score_adj set: containerd then never asks runc for an
// oom_score_adj below its own. Without it, on a system whose root cannot
// lower oom_score_adj (no CAP_SYS_RESOURCE, as in many containers and
// restricted VMs), runc fails every pod sandbox with "failed to update
// /proc/self/oom_score_adj: permission denied". k3s sets the same option
// itself only when it runs in a user namespace.
//
// k3s renders the template with its own data; the fields used here are
// those of k3s v1.32's templates.ContainerdConfig.
const restrictedOOMTemplate = `{{- /* */ -}}
# Managed by phonefarm: k3s's containerd configuration with restrict_oom_score_adj,
# because root on this phone cannot lower oom_score_adj.
version = 2

[plugins."io.containerd.internal.v1.opt"]
  path = "{{ .NodeConfig.Containerd.Opt }}"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "10010"
  enable_selinux = {{ .NodeConfig.SELinux }}
  enable_unprivileged_ports = {{ .EnableUnprivileged }}
  enable_unprivileged_icmp = {{ .EnableUnprivileged }}
  device_ownership_from_security_context = {{ .NonrootDevices }}
  restrict_oom_score_adj = true
{{- if .DisableCgroup }}
  disable_cgroup = true
{{- end }}
{{- if .IsRunningInUserNS }}
  disable_apparmor = true
{{- end }}
{{- if .NodeConfig.AgentConfig.PauseImage }}
  sandbox_image = "{{ .NodeConfig.AgentConfig.PauseImage }}"
{{- end }}
{{ if .NodeConfig.AgentConfig.Snapshotter }}
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "{{ .NodeConfig.AgentConfig.Snapshotter }}"
  disable_snapshot_annotations = {{ if eq .NodeConfig.AgentConfig.Snapshotter "stargz" }}false{{ else }}true{{ end }}
{{- if .NodeConfig.DefaultRuntime }}
  default_runtime_name = "{{ .NodeConfig.DefaultRuntime }}"
{{- end }}
{{ end }}
{{- if not .NodeConfig.NoFlannel }}
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{{ .NodeConfig.AgentConfig.CNIBinDir }}"
  conf_dir = "{{ .NodeConfig.AgentConfig.CNIConfDir }}"
{{ end }}
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = {{ .SystemdCgroup }}

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "{{ .NodeConfig.Containerd.Registry }}"
{{ if .PrivateRegistryConfig }}
{{- range $host, $c := .PrivateRegistryConfig.Configs }}
{{- if $c.Auth }}
[plugins."io.containerd.grpc.v1.cri".registry.configs."{{ $host }}".auth]
  {{ if $c.Auth.Username }}username = {{ printf "%q" $c.Auth.Username }}{{ end }}
  {{ if $c.Auth.Password }}password = {{ printf "%q" $c.Auth.Password }}{{ end }}
  {{ if $c.Auth.Auth }}auth = {{ printf "%q" $c.Auth.Auth }}{{ end }}
  {{ if $c.Auth.IdentityToken }}identitytoken = {{ printf "%q" $c.Auth.IdentityToken }}{{ end }}
{{ end }}
{{- end }}
{{- end }}
{{ range $name, $rt := .ExtraRuntimes }}
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."{{ $name }}"]
  runtime_type = "{{ $rt.RuntimeType }}"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."{{ $name }}".options]
  BinaryName = "{{ $rt.BinaryName }}"
  SystemdCgroup = {{ $.SystemdCgroup }}
{{ end }}`

var k3s132 = regexp.MustCompile(`^v1\.32\.[0-9]+\+k3s[0-9]+$`)

// containerdTemplateFor returns the template that restricts oom_score_adj
// for a k3s version, or nil when phonefarm does not know that version's
// containerd configuration.
func containerdTemplateFor(k3sVersion string) []byte {
	if k3s132.MatchString(k3sVersion) {
		return []byte(restrictedOOMTemplate)
	}
	return nil
}
