// Package inventory is phonefarm's desired state: the farm.yaml file that
// lists the phones, how to reach them and what they should become.
//
// The Go types here are the single source of truth for the file format: the
// strict decoder reads their `json` names, `jsonschema` enums and required
// markers, and the JSON Schema printed by `phonefarm inventory schema` is
// generated from the same tags. The package imports nothing of phonefarm.
package inventory

// APIVersion and Kind identify a phonefarm inventory.
const (
	APIVersion = "phonefarm.dev/v1alpha1"
	Kind       = "Farm"
)

// Farm is a whole inventory file.
type Farm struct {
	APIVersion string `json:"apiVersion" jsonschema:"required,enum=phonefarm.dev/v1alpha1" jsonschema_description:"Inventory format version."`
	Kind       string `json:"kind" jsonschema:"required,enum=Farm"`
	// Name names the farm (cluster) in kubeconfigs and output.
	Name      string      `json:"name,omitempty" jsonschema_description:"Name of the farm, used as the cluster name in kubeconfigs."`
	K3s       K3s         `json:"k3s,omitempty" jsonschema_description:"Cluster-wide k3s settings."`
	Tailscale *Tailscale  `json:"tailscale,omitempty" jsonschema_description:"Join every phone to a tailnet and run k3s over it."`
	SSH       SSHDefaults `json:"ssh,omitempty" jsonschema_description:"Defaults for every phone reached over SSH."`
	Android   *Android    `json:"android,omitempty" jsonschema_description:"What phonefarm installs on stock Android phones (os: android, role: agent): its rootless node agent and proot."`
	Checks    Checks      `json:"checks,omitempty" jsonschema_description:"Preflight checks this farm skips, each with the reason, so plan and apply agree without flags."`
	Power     *Power      `json:"power,omitempty" jsonschema_description:"How the phones' batteries are kept, for every phone; a phone's own power block overrides it."`
	Health    *Health     `json:"health,omitempty" jsonschema_description:"Report each k3s phone's battery and heat on its node (conditions PhoneOnBattery, PhoneBatteryLow, PhoneHot) and taint it NoSchedule while hot or low off the charger, with phonefarm-agent's health mode run as a service beside k3s."`
	Phones    []Phone     `json:"phones" jsonschema:"required,minItems=1" jsonschema_description:"The phones of the farm."`

	// file is where the inventory was read from, for messages.
	file     string
	pos      map[string]pos
	warnings []Problem
}

// K3s holds the farm-wide k3s settings.
type K3s struct {
	Version     string    `json:"version,omitempty" jsonschema:"pattern=^v[0-9]+\\.[0-9]+\\.[0-9]+\\+k3s[0-9]+$" jsonschema_description:"k3s release, e.g. v1.32.0+k3s1."`
	Source      K3sSource `json:"source,omitempty" jsonschema_description:"Where the k3s binary comes from."`
	Token       SecretRef `json:"token,omitempty" jsonschema_description:"Cluster join token as env:NAME or file:PATH; read from the first server when unset."`
	ClusterCIDR string    `json:"clusterCIDR,omitempty" jsonschema_description:"Pod network, default 10.42.0.0/16."`
	ServiceCIDR string    `json:"serviceCIDR,omitempty" jsonschema_description:"Service network, default 10.43.0.0/16."`
	Disable     []string  `json:"disable,omitempty" jsonschema_description:"Packaged components k3s should not deploy (traefik, servicelb, metrics-server, local-storage, coredns)."`
	ExtraArgs   []string  `json:"extraArgs,omitempty" jsonschema_description:"Extra arguments for every k3s server and agent."`
	// Registries are written to /etc/rancher/k3s/registries.yaml on every
	// phone: where containerd pulls images from, and with what
	// credentials.
	Registries *Registries `json:"registries,omitempty" jsonschema_description:"Registry mirrors and credentials, written to /etc/rancher/k3s/registries.yaml on every phone."`
	// AirgapImages maps an architecture to local image tarballs that k3s
	// imports when it starts, for phones without a (good) link to a
	// registry.
	AirgapImages map[string][]string `json:"airgapImages,omitempty" jsonschema_description:"Image tarballs by architecture (arm64, arm, amd64), uploaded to /var/lib/rancher/k3s/agent/images/ on every phone of that architecture and imported by k3s when it starts: k3s's k3s-airgap-images-ARCH.tar.zst, or any docker save or OCI archive (.tar, .tar.gz, .tgz, .tar.zst, .tzst, .tar.lz4, .tar.bz2, .tbz)."`
}

// Registries configures where containerd on the phones pulls images from.
type Registries struct {
	// Mirrors maps a registry name as images name it (docker.io,
	// registry.k8s.io, or "*" for every registry) to the endpoints to
	// pull it from instead.
	Mirrors map[string]RegistryMirror `json:"mirrors,omitempty" jsonschema_description:"Mirrors by registry name as images name it (docker.io, registry.k8s.io, or * for every registry)."`
	// Configs maps a registry host (host or host:port, as in an endpoint
	// URL) to its credentials and TLS settings.
	Configs map[string]RegistryConfig `json:"configs,omitempty" jsonschema_description:"Credentials and TLS settings by registry host (host or host:port)."`
}

// RegistryMirror is where to pull one registry's images from.
type RegistryMirror struct {
	Endpoints []string `json:"endpoints" jsonschema:"required,minItems=1" jsonschema_description:"Registry URLs tried in order, e.g. https://registry.lan:5000; the upstream registry is tried last."`
	// Rewrites map a regular expression over the repository to its
	// replacement, e.g. "^rancher/(.*)": "mirror/rancher/$1".
	Rewrites map[string]string `json:"rewrites,omitempty" jsonschema_description:"Repository rewrites, regular expression to replacement, e.g. ^rancher/(.*): mirror/rancher/$1."`
}

// RegistryConfig is how to talk to one registry host. Credentials are
// references; the values are written only into the phone's root-only
// registries.yaml.
type RegistryConfig struct {
	Username SecretRef `json:"username,omitempty" jsonschema_description:"User name, as env:NAME or file:PATH."`
	Password SecretRef `json:"password,omitempty" jsonschema_description:"Password, as env:NAME or file:PATH."`
	Token    SecretRef `json:"token,omitempty" jsonschema_description:"Identity token instead of a user name and password, as env:NAME or file:PATH."`
	CAFile   string    `json:"caFile,omitempty" jsonschema_description:"CA certificate (PEM) on this machine that signs the registry's certificate; uploaded to the phones."`
	CertFile string    `json:"certFile,omitempty" jsonschema_description:"Client certificate (PEM) on this machine, for registries that require one; uploaded to the phones."`
	KeyFile  string    `json:"keyFile,omitempty" jsonschema_description:"Private key of certFile on this machine; uploaded to the phones readable by root only."`
	Insecure bool      `json:"insecure,omitempty" jsonschema_description:"Do not verify the registry's TLS certificate."`
}

// K3sSource says where k3s binaries come from.
type K3sSource struct {
	// ReleaseURL is the base URL of k3s releases (the official GitHub
	// releases when empty); assets and sha256sum files are fetched from
	// ReleaseURL/VERSION/.
	ReleaseURL string `json:"releaseURL,omitempty" jsonschema:"format=uri" jsonschema_description:"Base URL of k3s release downloads; assets are verified against the release's sha256sum file."`
	// Files maps an architecture (arm64, arm, amd64) to a local k3s binary
	// for air-gapped farms.
	Files map[string]string `json:"files,omitempty" jsonschema_description:"Local k3s binaries by architecture (arm64, arm, amd64), for air-gapped farms."`
}

// Android says what stock Android phones get: phonefarm's rootless node
// agent and the proot it runs containers with, uploaded over adb.
type Android struct {
	// Agent maps an architecture to a phonefarm-agent binary on this
	// machine (a static build: GOOS=linux, CGO_ENABLED=0).
	Agent map[string]string `json:"agent,omitempty" jsonschema_description:"phonefarm-agent binaries on this machine by architecture (arm64, arm, amd64)."`
	// Proot maps an architecture to a proot binary on this machine that
	// needs no library of the phone's (scripts/build-proot.sh).
	Proot map[string]string `json:"proot,omitempty" jsonschema_description:"proot binaries on this machine by architecture (arm64, arm, amd64) that need no library of the phone's, as scripts/build-proot.sh builds."`
	// ProotOptions are what the proot binaries support beyond Debian's
	// 5.1: Termux's proot has both.
	ProotLink2Symlink bool `json:"prootLink2Symlink,omitempty" jsonschema_description:"The proot binaries support --link2symlink (hard links on /data, which refuses link(2) to the shell user)."`
	ProotKillOnExit   bool `json:"prootKillOnExit,omitempty" jsonschema_description:"The proot binaries support --kill-on-exit."`
	// Dir is where the agent lives on the phone.
	Dir string `json:"dir,omitempty" jsonschema_description:"Directory on the phone the agent, its images and pods live in, writable by adb's shell user; default /data/local/tmp/phonefarm."`
	// DNS are name servers for the agent and its pods, where a phone's
	// own cannot be read (Android keeps them from the shell user on
	// some releases).
	DNS []string `json:"dns,omitempty" jsonschema_description:"Name servers (IP addresses) for the agent and its pods; by default the phone's own, read over adb."`
}

// Checks tune the preflight checks plan and apply run on each phone.
type Checks struct {
	// Skip are checks whose failure does not block a phone, as
	// --skip-checks does, recorded with why.
	Skip []SkippedCheck `json:"skip,omitempty" jsonschema_description:"Checks whose failure does not block a phone."`
}

// SkippedCheck is a check the farm skips and why.
type SkippedCheck struct {
	ID     string `json:"id" jsonschema:"required" jsonschema_description:"Check ID, as phonefarm check lists them (e.g. kernel-config)."`
	Reason string `json:"reason" jsonschema:"required" jsonschema_description:"Why the check does not apply to this farm; shown where the check would have blocked."`
}

// DefaultAndroidDir is where the agent lives on a phone unless the
// inventory says otherwise: the directory adb's shell user may write.
const DefaultAndroidDir = "/data/local/tmp/phonefarm"

// Tailscale configures the tailnet the phones join.
type Tailscale struct {
	LoginServer  string    `json:"loginServer,omitempty" jsonschema:"format=uri" jsonschema_description:"Control server URL (a headscale); Tailscale's own when empty."`
	AuthKey      SecretRef `json:"authKey,omitempty" jsonschema_description:"A pre-made auth key, as env:NAME or file:PATH."`
	APIKey       SecretRef `json:"apiKey,omitempty" jsonschema_description:"API credentials with which phonefarm mints one pre-authorised key per phone, as env:NAME or file:PATH: a headscale API key with loginServer, else a Tailscale API access token (tskey-api-...) or OAuth client secret (tskey-client-..., needs tags)."`
	User         string    `json:"user,omitempty" jsonschema_description:"headscale user that owns minted keys."`
	Tags         []string  `json:"tags,omitempty" jsonschema_description:"ACL tags for the phones, e.g. tag:k3s."`
	AcceptRoutes bool      `json:"acceptRoutes,omitempty"`
	K3sMode      string    `json:"k3sMode,omitempty" jsonschema:"enum=separate,enum=k3s-integrated" jsonschema_description:"separate: phonefarm runs tailscaled and points k3s at it; k3s-integrated: k3s's own vpn-auth."`
	// Binaries maps an architecture to a directory holding tailscale and
	// tailscaled (a static build, for air-gapped farms); without it the
	// phone's package manager installs tailscale.
	Binaries map[string]string `json:"binaries,omitempty" jsonschema_description:"Directories with static tailscale and tailscaled builds, by architecture (arm64, arm, amd64)."`
	// Env is tailscaled's environment (for example TS_DEBUG_* settings a
	// self-hosted control server needs).
	Env map[string]string `json:"env,omitempty" jsonschema_description:"Environment variables for tailscaled."`
}

// SSHDefaults apply to every phone reached over SSH unless it overrides them.
type SSHDefaults struct {
	User          string `json:"user,omitempty"`
	Port          int    `json:"port,omitempty" jsonschema:"minimum=1,maximum=65535"`
	IdentityFile  string `json:"identityFile,omitempty" jsonschema_description:"Private key file; ~ expands to the home directory."`
	Agent         *bool  `json:"agent,omitempty" jsonschema_description:"Use the keys of the running ssh-agent (default true when SSH_AUTH_SOCK is set)."`
	KnownHosts    string `json:"knownHosts,omitempty" jsonschema_description:"known_hosts file, default ~/.ssh/known_hosts."`
	HostKeyPolicy string `json:"hostKeyPolicy,omitempty" jsonschema:"enum=strict,enum=accept-new" jsonschema_description:"strict: the host key must be in known_hosts; accept-new: record unknown keys on first use (a changed key is always refused)."`
	Become        string `json:"become,omitempty" jsonschema:"enum=none,enum=sudo,enum=doas" jsonschema_description:"How to become root when the user is not root."`
}

// Phone is one phone of the farm.
type Phone struct {
	Name   string `json:"name" jsonschema:"required,pattern=^[a-z0-9]([-a-z0-9]*[a-z0-9])?$,maxLength=63" jsonschema_description:"Node name, a DNS-1123 label."`
	Device string `json:"device,omitempty" jsonschema:"pattern=^[a-z0-9][a-z0-9_-]*$" jsonschema_description:"postmarketOS device codename, e.g. oneplus-dumpling."`
	OS     string `json:"os" jsonschema:"required,enum=postmarketos,enum=linux,enum=android" jsonschema_description:"postmarketos, linux (another Linux distribution) or android (stock Android over adb)."`
	Role   string `json:"role,omitempty" jsonschema:"enum=server,enum=agent" jsonschema_description:"k3s role; empty for phones that are only flashed or checked. An android agent runs phonefarm's rootless node agent."`

	SSH *SSH `json:"ssh,omitempty" jsonschema_description:"Reach the phone over SSH."`
	ADB *ADB `json:"adb,omitempty" jsonschema_description:"Reach the phone over adb."`

	Labels       map[string]string `json:"labels,omitempty" jsonschema_description:"Kubernetes node labels."`
	Taints       []string          `json:"taints,omitempty" jsonschema_description:"Kubernetes node taints, key[=value]:Effect."`
	K3sArgs      []string          `json:"k3sArgs,omitempty" jsonschema_description:"Extra k3s arguments for this phone."`
	KernelConfig string            `json:"kernelConfig,omitempty" jsonschema_description:"Path of the kernel config on the phone, when not /proc/config.gz or /boot/config-$(uname -r)."`
	Power        *Power            `json:"power,omitempty" jsonschema_description:"How this phone's battery is kept, over the farm's power block."`
}

// Health is the phone-health reporter phonefarm runs beside k3s on every
// phone that runs k3s.
type Health struct {
	// Agent maps an architecture to a phonefarm-agent binary on this
	// machine (a static Linux build: GOOS=linux, CGO_ENABLED=0).
	Agent map[string]string `json:"agent" jsonschema:"required" jsonschema_description:"phonefarm-agent binaries on this machine by architecture (arm64, arm, amd64): static Linux builds (GOOS=linux CGO_ENABLED=0)."`
	// BatteryLowPercent at or below which, off the charger, the node is
	// tainted (20 when 0).
	BatteryLowPercent int `json:"batteryLowPercent,omitempty" jsonschema:"minimum=1,maximum=99" jsonschema_description:"Battery level at or below which a phone off the charger is tainted; default 20."`
	// HotCelsius at or above which the node is tainted (45 when 0).
	HotCelsius int `json:"hotCelsius,omitempty" jsonschema:"minimum=30,maximum=100" jsonschema_description:"Temperature (hottest thermal zone, °C) at or above which a phone is tainted; default 45."`
	// Interval between readings of the phone (10s when empty).
	Interval string `json:"interval,omitempty" jsonschema:"pattern=^[0-9]+(s|m)$" jsonschema_description:"How often the phone is read, e.g. 10s (the default) or 1m."`
}

// Power is how a phone's battery is kept. A phone that lives on a charger
// for months swells its battery at 100%; holding it lower keeps it.
type Power struct {
	// ChargeLimit holds the battery at this percentage on the charger,
	// through the kernel's charge_control_end_threshold; 0 leaves the
	// phone's own setting alone.
	ChargeLimit int `json:"chargeLimit,omitempty" jsonschema:"minimum=20,maximum=100" jsonschema_description:"Stop charging at this percentage (20-100), through the kernel's charge_control_end_threshold where the phone has it; unset leaves the phone's setting alone."`
}

// SSH is how a phone is reached over SSH. Empty fields take the farm's
// SSH defaults.
type SSH struct {
	Host          string `json:"host" jsonschema:"required" jsonschema_description:"Address or DNS name."`
	Port          int    `json:"port,omitempty" jsonschema:"minimum=1,maximum=65535"`
	User          string `json:"user,omitempty"`
	IdentityFile  string `json:"identityFile,omitempty"`
	Agent         *bool  `json:"agent,omitempty"`
	KnownHosts    string `json:"knownHosts,omitempty"`
	HostKeyPolicy string `json:"hostKeyPolicy,omitempty" jsonschema:"enum=strict,enum=accept-new"`
	Become        string `json:"become,omitempty" jsonschema:"enum=none,enum=sudo,enum=doas"`
}

// ADB is how a phone is reached over adb.
type ADB struct {
	Serial string `json:"serial" jsonschema:"required" jsonschema_description:"Serial as adb devices lists it (host:port for adb over the network)."`
	Server string `json:"server,omitempty" jsonschema_description:"adb server address, default 127.0.0.1:5037."`
}

// Roles and operating systems.
const (
	RoleServer = "server"
	RoleAgent  = "agent"

	OSPostmarketOS = "postmarketos"
	OSLinux        = "linux"
	OSAndroid      = "android"
)
