package pods

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/phonefarm/phonefarm/agent/image"
	"github.com/phonefarm/phonefarm/agent/proot"
)

func (p *podRun) volumeDir(name string) string { return filepath.Join(p.dir, "volumes", name) }

func (p *podRun) hostname() string {
	if p.pod.Spec.Hostname != "" {
		return p.pod.Spec.Hostname
	}
	return p.pod.Name
}

// writeNetworkFiles writes the pod's /etc/hosts, /etc/hostname and
// /etc/resolv.conf. Pods share the phone's network, so names resolve with
// the phone's DNS servers (and the pod's dnsConfig).
func (p *podRun) writeNetworkFiles() error {
	etc := filepath.Join(p.dir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	spec := p.pod.Spec
	var hosts strings.Builder
	hosts.WriteString("# Kubernetes-managed hosts file (phonefarm agent).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	fqdn := p.hostname()
	if spec.Subdomain != "" {
		fqdn += "." + spec.Subdomain + "." + p.pod.Namespace + ".svc.cluster.local\t" + p.hostname()
	}
	fmt.Fprintf(&hosts, "%s\t%s\n", p.m.Node.IP, fqdn)
	for _, a := range spec.HostAliases {
		fmt.Fprintf(&hosts, "# Entries added by HostAliases.\n%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
	}
	var resolv strings.Builder
	servers := p.m.Node.DNS
	var search, options []string
	if c := spec.DNSConfig; c != nil {
		servers = append(append([]string{}, servers...), c.Nameservers...)
		if spec.DNSPolicy == corev1.DNSNone {
			servers = c.Nameservers
		}
		search = c.Searches
		for _, o := range c.Options {
			if o.Value != nil {
				options = append(options, o.Name+":"+*o.Value)
			} else {
				options = append(options, o.Name)
			}
		}
	}
	for _, s := range servers {
		fmt.Fprintf(&resolv, "nameserver %s\n", s)
	}
	if len(search) > 0 {
		fmt.Fprintf(&resolv, "search %s\n", strings.Join(search, " "))
	}
	if len(options) > 0 {
		fmt.Fprintf(&resolv, "options %s\n", strings.Join(options, " "))
	}
	for name, content := range map[string]string{"hosts": hosts.String(), "hostname": p.hostname() + "\n", "resolv.conf": resolv.String()} {
		if err := writeFileAtomic(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// setUpVolumes makes every volume of the pod on the phone: directories for
// emptyDir, files for configMap, secret, downwardAPI and projected
// volumes, hostPath as it is.
func (p *podRun) setUpVolumes(ctx context.Context) error {
	for _, v := range p.pod.Spec.Volumes {
		dir := p.volumeDir(v.Name)
		src := v.VolumeSource
		var files map[string]volFile
		var err error
		switch {
		case src.EmptyDir != nil:
			err = os.MkdirAll(dir, 0o777)
			if err == nil {
				err = os.Chmod(dir, 0o777)
			}
			continue
		case src.HostPath != nil:
			continue
		case src.ConfigMap != nil:
			files, err = p.configMapFiles(ctx, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.DefaultMode, src.ConfigMap.Optional)
		case src.Secret != nil:
			files, err = p.secretFiles(ctx, src.Secret.SecretName, src.Secret.Items, src.Secret.DefaultMode, src.Secret.Optional)
		case src.DownwardAPI != nil:
			files, err = p.downwardFiles(src.DownwardAPI.Items, src.DownwardAPI.DefaultMode)
		case src.Projected != nil:
			files, err = p.projectedFiles(ctx, src.Projected)
		default:
			return fmt.Errorf("volume %q: only emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes run on a rootless phone", v.Name)
		}
		if err != nil {
			return fmt.Errorf("volume %q: %w", v.Name, err)
		}
		if err := writeVolume(dir, files); err != nil {
			return fmt.Errorf("volume %q: %w", v.Name, err)
		}
	}
	return nil
}

type volFile struct {
	data []byte
	mode fs.FileMode
}

func modeOr(m *int32, def fs.FileMode) fs.FileMode {
	if m != nil {
		return fs.FileMode(*m)
	}
	return def
}

func keyFiles(data map[string][]byte, items []corev1.KeyToPath, def fs.FileMode) (map[string]volFile, error) {
	out := map[string]volFile{}
	if len(items) == 0 {
		for k, v := range data {
			out[k] = volFile{v, def}
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("no key %q", it.Key)
		}
		out[it.Path] = volFile{v, modeOr(it.Mode, def)}
	}
	return out, nil
}

func (p *podRun) configMapFiles(ctx context.Context, name string, items []corev1.KeyToPath, mode *int32, opt *bool) (map[string]volFile, error) {
	cm, err := p.m.Objects.ConfigMap(ctx, p.pod.Namespace, name)
	if err != nil {
		if optional(opt) {
			return map[string]volFile{}, nil
		}
		return nil, fmt.Errorf("configmap %q: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyFiles(data, items, modeOr(mode, 0o644))
}

func (p *podRun) secretFiles(ctx context.Context, name string, items []corev1.KeyToPath, mode *int32, opt *bool) (map[string]volFile, error) {
	s, err := p.m.Objects.Secret(ctx, p.pod.Namespace, name)
	if err != nil {
		if optional(opt) {
			return map[string]volFile{}, nil
		}
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	return keyFiles(s.Data, items, modeOr(mode, 0o644))
}

func (p *podRun) downwardFiles(items []corev1.DownwardAPIVolumeFile, mode *int32) (map[string]volFile, error) {
	out := map[string]volFile{}
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = p.field(it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			c := corev1.Container{}
			for _, ct := range p.pod.Spec.Containers {
				if ct.Name == it.ResourceFieldRef.ContainerName {
					c = ct
				}
			}
			v, err = resourceValue(c, it.ResourceFieldRef)
		}
		if err != nil {
			return nil, err
		}
		out[it.Path] = volFile{[]byte(v), modeOr(it.Mode, modeOr(mode, 0o644))}
	}
	return out, nil
}

func (p *podRun) projectedFiles(ctx context.Context, pr *corev1.ProjectedVolumeSource) (map[string]volFile, error) {
	out := map[string]volFile{}
	def := modeOr(pr.DefaultMode, 0o644)
	for _, s := range pr.Sources {
		var files map[string]volFile
		var err error
		switch {
		case s.ConfigMap != nil:
			files, err = p.configMapFiles(ctx, s.ConfigMap.Name, s.ConfigMap.Items, nil, s.ConfigMap.Optional)
		case s.Secret != nil:
			files, err = p.secretFiles(ctx, s.Secret.Name, s.Secret.Items, nil, s.Secret.Optional)
		case s.DownwardAPI != nil:
			files, err = p.downwardFiles(s.DownwardAPI.Items, nil)
		case s.ServiceAccountToken != nil:
			secs := int64(3600)
			if s.ServiceAccountToken.ExpirationSeconds != nil {
				secs = *s.ServiceAccountToken.ExpirationSeconds
			}
			var tok string
			tok, err = p.m.Objects.ServiceAccountToken(ctx, p.pod, s.ServiceAccountToken.Audience, secs)
			files = map[string]volFile{s.ServiceAccountToken.Path: {[]byte(tok), 0o600}}
		}
		if err != nil {
			return nil, err
		}
		for k, f := range files {
			if f.mode == 0o644 || f.mode == 0 {
				f.mode = def
			}
			out[k] = f
		}
	}
	return out, nil
}

// writeVolume replaces a volume's files: they are written into a new
// directory that is then renamed into place, so a container reading them
// never sees half a set.
func writeVolume(dir string, files map[string]volFile) error {
	tmp := dir + ".new"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		clean := path.Clean("/" + n)
		if strings.Contains(n, "..") || clean == "/" {
			return fmt.Errorf("file path %q leaves the volume", n)
		}
		target := filepath.Join(tmp, clean)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(target, files[n].data, files[n].mode.Perm()|0o200); err != nil {
			return err
		}
		if err := os.Chmod(target, files[n].mode.Perm()); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// binds are what a container sees of its pod: the network files, its
// termination-log and its volume mounts.
func (p *podRun) binds(c corev1.Container, cdir string) ([]proot.Bind, error) {
	etc := filepath.Join(p.dir, "etc")
	binds := []proot.Bind{
		{Host: filepath.Join(etc, "hosts"), Guest: "/etc/hosts"},
		{Host: filepath.Join(etc, "hostname"), Guest: "/etc/hostname"},
		{Host: filepath.Join(etc, "resolv.conf"), Guest: "/etc/resolv.conf"},
	}
	msgPath := c.TerminationMessagePath
	if msgPath == "" {
		msgPath = corev1.TerminationMessagePathDefault
	}
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		return nil, err
	}
	tl := filepath.Join(cdir, "termination-log")
	if err := os.WriteFile(tl, nil, 0o666); err != nil {
		return nil, err
	}
	binds = append(binds, proot.Bind{Host: tl, Guest: msgPath})
	vols := map[string]corev1.Volume{}
	for _, v := range p.pod.Spec.Volumes {
		vols[v.Name] = v
	}
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volume mount %q names no volume of the pod", vm.Name)
		}
		host := p.volumeDir(vm.Name)
		if v.HostPath != nil {
			host = v.HostPath.Path
		}
		if vm.SubPath != "" {
			sub := path.Clean("/" + vm.SubPath)
			if strings.Contains(vm.SubPath, "..") {
				return nil, fmt.Errorf("volume mount %q: subPath %q leaves the volume", vm.Name, vm.SubPath)
			}
			host = filepath.Join(host, sub)
			if _, err := os.Stat(host); os.IsNotExist(err) && v.HostPath == nil {
				if err := os.MkdirAll(host, 0o777); err != nil {
					return nil, err
				}
			}
		}
		binds = append(binds, proot.Bind{Host: host, Guest: vm.MountPath})
	}
	return binds, nil
}

// lookupDB finds name in a passwd- or group-style file.
func lookupDB(file, name string) ([]string, bool) {
	f, err := os.Open(file)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) > 0 && fields[0] == name {
			return fields, true
		}
	}
	return nil, false
}

// copyTree copies a root filesystem, keeping modes and symbolic links.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			return os.Chmod(target, info.Mode().Perm()|0o700|info.Mode()&(fs.ModeSticky|fs.ModeSetgid))
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			return copyFile(p, target, info.Mode())
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm()|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode.Perm()|mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
}

func writeFileAtomic(file string, b []byte, mode fs.FileMode) error {
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// pullSecrets reads the pod's image pull secrets.
func (p *podRun) pullSecrets(ctx context.Context) ([]image.PullSecret, error) {
	var out []image.PullSecret
	var errs []string
	for _, ref := range p.pod.Spec.ImagePullSecrets {
		s, err := p.m.Objects.Secret(ctx, p.pod.Namespace, ref.Name)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", ref.Name, err))
			continue
		}
		b := s.Data[corev1.DockerConfigJsonKey]
		if len(b) == 0 {
			b = s.Data[corev1.DockerConfigKey]
			if len(b) > 0 {
				b = []byte(`{"auths":` + string(b) + `}`)
			}
		}
		ps, err := image.ParseDockerConfig(b)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", ref.Name, err))
			continue
		}
		out = append(out, ps)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}
