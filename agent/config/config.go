// Package config is the rootless agent's configuration file: what
// phonefarm writes next to the agent on a phone, and the agent reads. It
// is a leaf, so the provisioning engine writes the same type the agent
// reads without carrying the agent.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Config is the agent's configuration file (JSON), which phonefarm writes
// next to the agent on the phone. The join token is kept in its own file,
// readable only by the agent's user.
type Config struct {
	// Server is the k3s server's URL, https://HOST:6443.
	Server string `json:"server"`
	// TokenFile holds the cluster's join token (K10<ca-hash>::<creds> or a
	// bare token).
	TokenFile string `json:"tokenFile"`
	// NodeName is the node's name (a DNS-1123 subdomain).
	NodeName string `json:"nodeName"`
	// NodeIP is the phone's address other nodes reach it at; every pod's
	// IP.
	NodeIP string `json:"nodeIP"`
	// Dir keeps the agent's state: node password, images, pods.
	Dir string `json:"dir"`
	// Proot is the proot binary; Link2Symlink and KillOnExit when it has
	// those options (Termux's proot does, Debian's 5.1 does not).
	Proot             string `json:"proot"`
	ProotLink2Symlink bool   `json:"prootLink2Symlink,omitempty"`
	ProotKillOnExit   bool   `json:"prootKillOnExit,omitempty"`
	// KubeletPort is where the kubelet API listens (10250 when zero);
	// the API server reaches it through the agent's tunnel.
	KubeletPort int `json:"kubeletPort,omitempty"`
	// Labels are added to the node's.
	Labels map[string]string `json:"labels,omitempty"`
	// Taints at registration, "key=value:Effect"; the proot taint when
	// nil, none when empty.
	Taints []string `json:"taints"`
	// DNS are the name servers pods resolve with (the phone's).
	DNS []string `json:"dns,omitempty"`
	// Registries are mirrors and credentials for pulling images.
	Registries Registries `json:"registries,omitzero"`
	// MaxPods is the pods capacity (30 when zero).
	MaxPods int `json:"maxPods,omitempty"`
	// ReservedMemoryMiB is kept for Android (a quarter of memory when
	// zero).
	ReservedMemoryMiB int `json:"reservedMemoryMiB,omitempty"`
	// Thresholds for the node's conditions; DefaultThresholds' for zeros.
	BatteryLowPercent int     `json:"batteryLowPercent,omitempty"`
	HotCelsius        float64 `json:"hotCelsius,omitempty"`
	// HealthKubeconfig is a kubeconfig whose credential may patch this
	// node (phonefarm apply writes one): with it the agent keeps the
	// phonefarm.dev/phone-health NoSchedule taint while the phone is hot
	// or low on battery off the charger. The node's own credential may not
	// change its taints, so without it the agent reports the conditions
	// only.
	HealthKubeconfig string `json:"healthKubeconfig,omitempty"`
	// Sys and Proc point the sensors elsewhere than /sys and /proc
	// (tests; phones whose sysfs is mounted elsewhere).
	Sys  string `json:"sys,omitempty"`
	Proc string `json:"proc,omitempty"`
}

// Load reads and checks a configuration file; unknown fields are
// errors.
func Load(file string) (*Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read agent configuration: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &c, nil
}

// Validate names every field that is wrong and what would be valid.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) { errs = append(errs, fmt.Errorf(field+": "+format, a...)) }
	if u, err := url.Parse(c.Server); err != nil || u.Scheme != "https" || u.Host == "" {
		bad("server", "%q is not an https:// URL of the k3s server", c.Server)
	}
	if c.TokenFile == "" {
		bad("tokenFile", "is required: the file holding the cluster's join token")
	}
	if msgs := validation.IsDNS1123Subdomain(c.NodeName); len(msgs) > 0 {
		bad("nodeName", "%q: %s", c.NodeName, strings.Join(msgs, "; "))
	}
	if net.ParseIP(c.NodeIP) == nil {
		bad("nodeIP", "%q is not an IP address", c.NodeIP)
	}
	if !filepath.IsAbs(c.Dir) {
		bad("dir", "%q is not an absolute path", c.Dir)
	}
	if !filepath.IsAbs(c.Proot) {
		bad("proot", "%q is not an absolute path to a proot binary", c.Proot)
	}
	if c.HealthKubeconfig != "" && !filepath.IsAbs(c.HealthKubeconfig) {
		bad("healthKubeconfig", "%q is not an absolute path", c.HealthKubeconfig)
	}
	if c.KubeletPort < 0 || c.KubeletPort > 65535 {
		bad("kubeletPort", "%d is not a port (1-65535)", c.KubeletPort)
	}
	if _, err := c.NodeTaints(); err != nil {
		errs = append(errs, err)
	}
	for _, d := range c.DNS {
		if net.ParseIP(d) == nil {
			bad("dns", "%q is not an IP address", d)
		}
	}
	return errors.Join(errs...)
}

func (c *Config) Port() int {
	if c.KubeletPort == 0 {
		return 10250
	}
	return c.KubeletPort
}

// NodeTaints parses "key=value:Effect" (value optional).
func (c *Config) NodeTaints() ([]corev1.Taint, error) {
	if c.Taints == nil {
		return []corev1.Taint{DefaultTaint}, nil
	}
	out := []corev1.Taint{}
	for _, s := range c.Taints {
		kv, effect, ok := strings.Cut(s, ":")
		k, v, _ := strings.Cut(kv, "=")
		switch corev1.TaintEffect(effect) {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			ok = false
		}
		if !ok || k == "" || len(validation.IsQualifiedName(k)) > 0 {
			return nil, fmt.Errorf("taints: %q is not key[=value]:Effect with Effect NoSchedule, PreferNoSchedule or NoExecute", s)
		}
		out = append(out, corev1.Taint{Key: k, Value: v, Effect: corev1.TaintEffect(effect)})
	}
	return out, nil
}

// Mirror is where to pull one registry's images from instead, as in k3s's
// registries.yaml.
type Mirror struct {
	Endpoints []string          `json:"endpoints"`
	Rewrites  map[string]string `json:"rewrites,omitempty"`
}

// RegistryAuth is how to talk to one registry host.
type RegistryAuth struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Token    string `json:"token,omitempty"`
	Insecure bool   `json:"insecure,omitempty"`
}

// Registries are the farm's mirrors (by registry name, "*" for all) and
// credentials (by host).
type Registries struct {
	Mirrors map[string]Mirror       `json:"mirrors,omitempty"`
	Configs map[string]RegistryAuth `json:"configs,omitempty"`
}

// Labels and the taint the agent's nodes carry.
const (
	// RuntimeLabel says how the node runs containers.
	RuntimeLabel = "phonefarm.dev/runtime"
	// Runtime is the value of RuntimeLabel and of the default taint: pods
	// run under proot, without namespaces, on the phone's network.
	Runtime = "proot"
	// ModelLabel and SDKLabel are the Android model and SDK level.
	ModelLabel = "phonefarm.dev/android-model"
	SDKLabel   = "phonefarm.dev/android-sdk"
)

// DefaultTaint keeps pods that do not tolerate proot off the node.
var DefaultTaint = corev1.Taint{Key: RuntimeLabel, Value: Runtime, Effect: corev1.TaintEffectNoSchedule}
