package pods

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/phonefarm/phonefarm/agent/image"
	"github.com/phonefarm/phonefarm/agent/proot"
)

// procSpec is how proot runs a container: its command, environment,
// working directory, user and the files and volumes bound into it.
func (p *podRun) procSpec(ctx context.Context, c corev1.Container, img *image.Image, root, cdir string) (proot.Spec, error) {
	env, err := p.env(ctx, c, img.Config.Env)
	if err != nil {
		return proot.Spec{}, err
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	argv := command(c, img.Config.Entrypoint, img.Config.Cmd, vars)
	wd := c.WorkingDir
	if wd == "" {
		wd = img.Config.WorkingDir
	}
	uid, gid, err := p.user(c, img.Config.User, root)
	if err != nil {
		return proot.Spec{}, err
	}
	binds, err := p.binds(c, cdir)
	if err != nil {
		return proot.Spec{}, err
	}
	return proot.Spec{RootFS: root, WorkDir: wd, Argv: argv, Env: env, Binds: binds, UID: uid, GID: gid}, nil
}

// command merges the container's command and args with the image's
// entrypoint and cmd as Kubernetes does, expanding $(VAR) references.
func command(c corev1.Container, entrypoint, cmd []string, vars map[string]string) []string {
	var argv []string
	switch {
	case len(c.Command) > 0:
		argv = append(append(argv, c.Command...), c.Args...)
	case len(c.Args) > 0:
		argv = append(append(argv, entrypoint...), c.Args...)
	default:
		argv = append(append(argv, entrypoint...), cmd...)
	}
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = expand(a, vars)
	}
	return out
}

var varRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][-._A-Za-z0-9]*)\)`)

// expand replaces $(VAR) with its value ($$ escapes a $); unknown
// references stay as they are.
func expand(s string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		if v, ok := vars[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// env is the container's environment, later entries winning: the image's,
// the services' (as docker links), then envFrom and env, resolved.
func (p *podRun) env(ctx context.Context, c corev1.Container, imageEnv []string) ([]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	for _, kv := range imageEnv {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	set("HOSTNAME", p.hostname())
	if p.pod.Spec.EnableServiceLinks == nil || *p.pod.Spec.EnableServiceLinks {
		for _, kv := range p.serviceEnv() {
			set(kv[0], kv[1])
		}
	}
	p.kubernetesEnv(set)
	for _, from := range c.EnvFrom {
		data, err := p.envFrom(ctx, from)
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			set(from.Prefix+k, data[k])
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, vars))
			continue
		}
		v, ok, err := p.valueFrom(ctx, c, e.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("environment variable %s: %w", e.Name, err)
		}
		if ok {
			set(e.Name, v)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

// Reasons of the events that say an environment source is missing: the
// ones virtual-kubelet's own resolution gives, which its provider suite
// and its users know.
const (
	ReasonOptionalConfigMapNotFound     = "OptionalConfigMapNotFound"
	ReasonOptionalConfigMapKeyNotFound  = "OptionalConfigMapKeyNotFound"
	ReasonMandatoryConfigMapNotFound    = "MandatoryConfigMapNotFound"
	ReasonMandatoryConfigMapKeyNotFound = "MandatoryConfigMapKeyNotFound"
	ReasonOptionalSecretNotFound        = "OptionalSecretNotFound"
	ReasonOptionalSecretKeyNotFound     = "OptionalSecretKeyNotFound"
	ReasonMandatorySecretNotFound       = "MandatorySecretNotFound"
	ReasonMandatorySecretKeyNotFound    = "MandatorySecretKeyNotFound"
)

// missing records an event on the pod for an environment source that is
// not there (a warning either way: an optional one is skipped).
func (p *podRun) missing(reason, format string, args ...any) {
	if p.m.Event != nil {
		p.m.Event(p.pod, corev1.EventTypeWarning, reason, fmt.Sprintf(format, args...))
	}
}

// notFound tells a missing object from a failure to read it.
func notFound(err error) bool { return apierrors.IsNotFound(err) }

func (p *podRun) envFrom(ctx context.Context, from corev1.EnvFromSource) (map[string]string, error) {
	switch {
	case from.ConfigMapRef != nil:
		name := from.ConfigMapRef.Name
		cm, err := p.m.Objects.ConfigMap(ctx, p.pod.Namespace, name)
		if err != nil {
			if !notFound(err) {
				return nil, fmt.Errorf("configmap %q: %w", name, err)
			}
			if optional(from.ConfigMapRef.Optional) {
				p.missing(ReasonOptionalConfigMapNotFound, "configmap %q not found", name)
				return nil, nil
			}
			p.missing(ReasonMandatoryConfigMapNotFound, "configmap %q not found", name)
			return nil, fmt.Errorf("configmap %q: %w", name, err)
		}
		return cm.Data, nil
	case from.SecretRef != nil:
		name := from.SecretRef.Name
		s, err := p.m.Objects.Secret(ctx, p.pod.Namespace, name)
		if err != nil {
			if !notFound(err) {
				return nil, fmt.Errorf("secret %q: %w", name, err)
			}
			if optional(from.SecretRef.Optional) {
				p.missing(ReasonOptionalSecretNotFound, "secret %q not found", name)
				return nil, nil
			}
			p.missing(ReasonMandatorySecretNotFound, "secret %q not found", name)
			return nil, fmt.Errorf("secret %q: %w", name, err)
		}
		out := map[string]string{}
		for k, v := range s.Data {
			out[k] = string(v)
		}
		return out, nil
	}
	return nil, nil
}

func optional(b *bool) bool { return b != nil && *b }

// valueFrom resolves one variable's source; ok is false for an optional
// key that is missing.
func (p *podRun) valueFrom(ctx context.Context, c corev1.Container, src *corev1.EnvVarSource) (string, bool, error) {
	switch {
	case src.FieldRef != nil:
		v, err := p.field(src.FieldRef.FieldPath)
		return v, err == nil, err
	case src.ResourceFieldRef != nil:
		v, err := resourceValue(c, src.ResourceFieldRef)
		return v, err == nil, err
	case src.ConfigMapKeyRef != nil:
		r := src.ConfigMapKeyRef
		cm, err := p.m.Objects.ConfigMap(ctx, p.pod.Namespace, r.Name)
		if err != nil {
			if !notFound(err) {
				return "", false, fmt.Errorf("configmap %q: %w", r.Name, err)
			}
			if optional(r.Optional) {
				p.missing(ReasonOptionalConfigMapNotFound, "skipping optional envvar: configmap %q not found", r.Name)
				return "", false, nil
			}
			p.missing(ReasonMandatoryConfigMapNotFound, "configmap %q not found", r.Name)
			return "", false, fmt.Errorf("configmap %q: %w", r.Name, err)
		}
		v, ok := cm.Data[r.Key]
		switch {
		case !ok && optional(r.Optional):
			p.missing(ReasonOptionalConfigMapKeyNotFound, "skipping optional envvar: key %q does not exist in configmap %q", r.Key, r.Name)
		case !ok:
			p.missing(ReasonMandatoryConfigMapKeyNotFound, "key %q does not exist in configmap %q", r.Key, r.Name)
			return "", false, fmt.Errorf("configmap %q has no key %q", r.Name, r.Key)
		}
		return v, ok, nil
	case src.SecretKeyRef != nil:
		r := src.SecretKeyRef
		s, err := p.m.Objects.Secret(ctx, p.pod.Namespace, r.Name)
		if err != nil {
			if !notFound(err) {
				return "", false, fmt.Errorf("secret %q: %w", r.Name, err)
			}
			if optional(r.Optional) {
				p.missing(ReasonOptionalSecretNotFound, "skipping optional envvar: secret %q not found", r.Name)
				return "", false, nil
			}
			p.missing(ReasonMandatorySecretNotFound, "secret %q not found", r.Name)
			return "", false, fmt.Errorf("secret %q: %w", r.Name, err)
		}
		v, ok := s.Data[r.Key]
		switch {
		case !ok && optional(r.Optional):
			p.missing(ReasonOptionalSecretKeyNotFound, "skipping optional envvar: key %q does not exist in secret %q", r.Key, r.Name)
		case !ok:
			p.missing(ReasonMandatorySecretKeyNotFound, "key %q does not exist in secret %q", r.Key, r.Name)
			return "", false, fmt.Errorf("secret %q has no key %q", r.Name, r.Key)
		}
		return string(v), ok, nil
	}
	return "", false, nil
}

// field resolves a downward API field path.
func (p *podRun) field(path string) (string, error) {
	pod := p.pod
	if k, ok := strings.CutPrefix(path, "metadata.labels['"); ok {
		return pod.Labels[strings.TrimSuffix(k, "']")], nil
	}
	if k, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
		return pod.Annotations[strings.TrimSuffix(k, "']")], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return p.m.Node.Name, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.podIP", "status.hostIPs", "status.podIPs":
		return p.m.Node.IP, nil
	}
	return "", fmt.Errorf("unsupported field %q", path)
}

func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}

// resourceValue resolves a resource field (limits.cpu, requests.memory,
// ...) with its divisor, rounding up as the kubelet does.
func resourceValue(c corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	var q resource.Quantity
	kind, name, _ := strings.Cut(ref.Resource, ".")
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	if v, ok := list[corev1.ResourceName(name)]; ok {
		q = v
	} else if kind == "limits" {
		// No limit: the node's allocatable would apply; report the request
		// when there is one.
		q = c.Resources.Requests[corev1.ResourceName(name)]
	}
	div := ref.Divisor
	if div.IsZero() {
		div = resource.MustParse("1")
	}
	if name == "cpu" {
		return strconv.FormatInt((q.MilliValue()+div.MilliValue()-1)/div.MilliValue(), 10), nil
	}
	return strconv.FormatInt((q.Value()+div.Value()-1)/div.Value(), 10), nil
}

// serviceEnv are the docker-link variables of the Services in the pod's
// namespace (and the master service), as the kubelet sets them.
func (p *podRun) serviceEnv() [][2]string {
	if p.m.Services == nil {
		return nil
	}
	svcs, err := p.m.Services.Services(p.pod.Namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Name < svcs[j].Name })
	var out [][2]string
	for _, s := range svcs {
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == corev1.ClusterIPNone || (s.Namespace == "default" && s.Name == "kubernetes") {
			continue
		}
		out = append(out, linkVars(s.Name, s.Spec.ClusterIP, s.Spec.Ports)...)
	}
	return out
}

// kubernetesEnv points KUBERNETES_SERVICE_* at the API server itself: a
// rootless phone has no kube-proxy, so the kubernetes Service's cluster
// IP is out of its pods' reach, while the server's own address is not.
func (p *podRun) kubernetesEnv(set func(k, v string)) {
	host, portStr, err := net.SplitHostPort(p.m.Node.APIServer)
	if err != nil {
		return
	}
	port, _ := strconv.Atoi(portStr)
	for _, kv := range linkVars("kubernetes", host, []corev1.ServicePort{{Name: "https", Port: int32(port), Protocol: corev1.ProtocolTCP}}) {
		set(kv[0], kv[1])
	}
}

func linkVars(name, ip string, ports []corev1.ServicePort) [][2]string {
	n := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	var out [][2]string
	add := func(k, v string) { out = append(out, [2]string{k, v}) }
	add(n+"_SERVICE_HOST", ip)
	for i, sp := range ports {
		port := strconv.Itoa(int(sp.Port))
		proto := string(sp.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		if i == 0 {
			add(n+"_SERVICE_PORT", port)
			add(n+"_PORT", strings.ToLower(proto)+"://"+net.JoinHostPort(ip, port))
		}
		if sp.Name != "" {
			add(n+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(sp.Name, "-", "_")), port)
		}
		pfx := n + "_PORT_" + port + "_" + proto
		add(pfx, strings.ToLower(proto)+"://"+net.JoinHostPort(ip, port))
		add(pfx+"_PROTO", strings.ToLower(proto))
		add(pfx+"_PORT", port)
		add(pfx+"_ADDR", ip)
	}
	return out
}

// user is the uid and gid the container runs as: its security context's,
// else the image's USER (a name looked up in the image's /etc/passwd).
func (p *podRun) user(c corev1.Container, imageUser, root string) (int, int, error) {
	var uid, gid *int64
	if sc := p.pod.Spec.SecurityContext; sc != nil {
		uid, gid = sc.RunAsUser, sc.RunAsGroup
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
	}
	u, g := 0, 0
	if imageUser != "" {
		name, group, _ := strings.Cut(imageUser, ":")
		var err error
		if u, g, err = lookupUser(root, name); err != nil {
			return 0, 0, err
		}
		if group != "" {
			if n, err := strconv.Atoi(group); err == nil {
				g = n
			} else if n, ok := lookupGroup(root, group); ok {
				g = n
			}
		}
	}
	if uid != nil {
		u = int(*uid)
	}
	if gid != nil {
		g = int(*gid)
	}
	return u, g, nil
}

func lookupUser(root, name string) (int, int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, n, nil
	}
	if line, ok := lookupDB(filepath.Join(root, "etc/passwd"), name); ok && len(line) > 3 {
		uid, _ := strconv.Atoi(line[2])
		gid, _ := strconv.Atoi(line[3])
		return uid, gid, nil
	}
	return 0, 0, fmt.Errorf("the image's user %q is not in its /etc/passwd", name)
}

func lookupGroup(root, name string) (int, bool) {
	if line, ok := lookupDB(filepath.Join(root, "etc/group"), name); ok && len(line) > 2 {
		gid, err := strconv.Atoi(line[2])
		return gid, err == nil
	}
	return 0, false
}
