package testbed

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/phonefarm/phonefarm/internal/oci"
)

// E2EVersion names the build of scripts/build-e2e.sh: Kubernetes' e2e.test
// and agnhost from the Kubernetes source k3s v1.32.0+k3s1 builds from.
const E2EVersion = "k8s1.32.0-k3s1"

// E2EBinaries are the files scripts/build-e2e.sh leaves in E2ETools'
// directory (agnhost's porter serves the certificate and key).
var E2EBinaries = []string{"e2e.test", "agnhost", "localhost.crt", "localhost.key"}

// E2ETools returns the directory scripts/build-e2e.sh builds, or an error
// saying how to build it.
func E2ETools() (string, error) {
	d := filepath.Join(DefaultCacheDir(), "e2e", E2EVersion+"-"+runtime.Version())
	waitBuilt(d)
	for _, b := range E2EBinaries {
		if _, err := os.Stat(filepath.Join(d, b)); err != nil {
			return "", fmt.Errorf("no %s in %s; scripts/build-e2e.sh builds it", b, d)
		}
	}
	return d, nil
}

// The images Kubernetes' e2e tests run, by the references its test/utils
// names for v1.32. The test bed builds them here: agnhost from source, the
// rest from Debian's packages where upstream uses Alpine or Debian
// jessie, with the same programs on the same paths.
const (
	E2EPause    = "registry.k8s.io/pause:3.10"
	E2EBusybox  = "registry.k8s.io/e2e-test-images/busybox:1.36.1-1"
	E2EAgnhost  = "registry.k8s.io/e2e-test-images/agnhost:2.53"
	E2EDNSUtils = "registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7"
	E2ENginx    = "registry.k8s.io/e2e-test-images/nginx:1.14-4"
	E2ENginxNew = "registry.k8s.io/e2e-test-images/nginx:1.15-4"
	E2EHttpd    = "registry.k8s.io/e2e-test-images/httpd:2.4.38-4"
	E2EHttpdNew = "registry.k8s.io/e2e-test-images/httpd:2.4.39-4"
)

// e2eUserland is the Debian userland under agnhost and the other e2e
// images: what their tests run inside them (dig, curl, nc, ip, bash) and
// the web servers of the nginx and httpd images.
var e2eUserland = []string{"bash", "bind9-dnsutils", "curl", "netcat-openbsd", "iproute2", "iputils-ping", "procps", "nginx-light", "apache2", "ca-certificates"}

// e2eCustomize adds what agnhost's image has beyond its packages: the user
// and group a SupplementalGroups test expects in the image, the upload
// directory netexec writes to, and httpd's foreground command.
const e2eCustomize = `set -e
r=$1
chroot "$r" groupadd -g 50000 group-defined-in-image
chroot "$r" useradd -u 1000 -M -G group-defined-in-image user-defined-in-image
mkdir -p "$r/uploads"
cat > "$r/usr/local/bin/httpd-foreground" <<'EOF'
#!/bin/sh
. /etc/apache2/envvars
mkdir -p "$APACHE_RUN_DIR" "$APACHE_LOCK_DIR" "$APACHE_LOG_DIR"
rm -f "$APACHE_PID_FILE"
exec apache2 -DFOREGROUND "$@"
EOF
chmod 755 "$r/usr/local/bin/httpd-foreground"
# Logs to the container's output, as the upstream images do.
ln -sf /dev/stdout "$r/var/log/nginx/access.log"
ln -sf /dev/stderr "$r/var/log/nginx/error.log"
ln -sf /dev/stdout "$r/var/log/apache2/access.log"
ln -sf /dev/stderr "$r/var/log/apache2/error.log"
rm -rf "$r/var/cache/apt/archives"/*.deb "$r/var/lib/apt/lists"/*
`

// BashStaticPath is Debian's static bash (bash-static, which
// scripts/setup.sh installs): sh of the e2e busybox image. Debian's busybox
// ash drops environment variables whose names are not shell names
// ("data-1"), which Kubernetes passes from ConfigMaps and Secrets and the
// upstream busybox image keeps; bash keeps them too.
const BashStaticPath = "/bin/bash-static"

// E2EImages builds the images Kubernetes' e2e tests pull, from the e2e
// tools (E2ETools), the workload tools (for pause) and a Debian userland
// built with mmdebstrap from this machine's mirror. The result is cached
// under cacheDir, keyed by its inputs.
func E2EImages(ctx context.Context, cacheDir, e2e, workloads string) (map[string]v1.Image, error) {
	inputs := []string{BusyboxPath, BashStaticPath, filepath.Join(workloads, "pause")}
	for _, b := range E2EBinaries {
		inputs = append(inputs, filepath.Join(e2e, b))
	}
	recipe := "e2e-images-2 " + strings.Join(e2eUserland, ",") + "\n" + e2eCustomize
	return cachedImages(cacheDir, "e2e", recipe, inputs, func(tmp string) (map[string]v1.Image, error) {
		return buildE2EImages(ctx, tmp, e2e, workloads)
	})
}

func buildE2EImages(ctx context.Context, tmp, e2e, workloads string) (map[string]v1.Image, error) {
	arch := goArch()
	root := filepath.Join(tmp, "userland")
	mirror, err := debianMirror()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "mmdebstrap", "--variant=minbase", "--include="+strings.Join(e2eUserland, ","),
		"--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
		"--dpkgopt=path-exclude=/usr/share/doc/*", "bookworm", root, mirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the e2e images' userland with mmdebstrap: %w\n%s", err, tail(out, 3000))
	}
	if out, err := exec.CommandContext(ctx, "sh", "-c", e2eCustomize, "customize", root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("customize the e2e images' userland: %w\n%s", err, out)
	}
	base, err := oci.DirLayer(root, tmp)
	if err != nil {
		return nil, err
	}
	agnhost, err := oci.Layer([]oci.File{
		{Path: "/agnhost", Mode: 0o755, Source: filepath.Join(e2e, "agnhost")},
		{Path: "/agnhost-2", Mode: fs.ModeSymlink | 0o777, Link: "agnhost"},
		{Path: "/localhost.crt", Mode: 0o644, Source: filepath.Join(e2e, "localhost.crt")},
		{Path: "/localhost.key", Mode: 0o644, Source: filepath.Join(e2e, "localhost.key")},
	})
	if err != nil {
		return nil, err
	}
	pause, err := oci.Layer([]oci.File{{Path: "/pause", Mode: 0o755, Source: filepath.Join(workloads, "pause")}})
	if err != nil {
		return nil, err
	}
	bb, err := busybox()
	if err != nil {
		return nil, err
	}
	sh, err := oci.Layer([]oci.File{{Path: "/bin/bash", Mode: 0o755, Source: BashStaticPath}, {Path: "/bin/sh", Mode: fs.ModeSymlink | 0o777, Link: "bash"}})
	if err != nil {
		return nil, err
	}
	out := map[string]v1.Image{}
	for _, im := range []struct {
		ref    string
		cfg    oci.Config
		layers []v1.Layer
	}{
		{E2EPause, oci.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"}, []v1.Layer{pause}},
		{E2EBusybox, oci.Config{Cmd: []string{"sh"}}, []v1.Layer{bb, sh}},
		{E2EAgnhost, oci.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}, Ports: []int{80, 8080, 8081, 9376, 5000}}, []v1.Layer{base, agnhost}},
		{E2EDNSUtils, oci.Config{Cmd: []string{"bash"}}, []v1.Layer{base}},
		{E2ENginx, oci.Config{Cmd: []string{"nginx", "-g", "daemon off;"}, Ports: []int{80}}, []v1.Layer{base}},
		{E2ENginxNew, oci.Config{Cmd: []string{"nginx", "-g", "daemon off;"}, Ports: []int{80}}, []v1.Layer{base}},
		{E2EHttpd, oci.Config{Cmd: []string{"httpd-foreground"}, Ports: []int{80}}, []v1.Layer{base}},
		{E2EHttpdNew, oci.Config{Cmd: []string{"httpd-foreground"}, Ports: []int{80}}, []v1.Layer{base}},
	} {
		img, err := oci.Image(arch, im.cfg, im.layers...)
		if err != nil {
			return nil, err
		}
		out[im.ref] = img
	}
	return out, nil
}
