package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport"
)

// The phone-health reporter (phonefarm-agent health) on phones that run
// k3s: its binary, its credentials and its service.
const (
	HealthBinaryPath     = "/usr/local/bin/phonefarm-agent"
	HealthKubeconfigPath = "/etc/rancher/k3s/phonefarm-health.kubeconfig"
	HealthService        = "phonefarm-health"
	// healthNamespace holds each phone's service account.
	healthNamespace = "kube-system"
)

// healthName names a phone's service account, role and token.
func healthName(node string) string { return "phonefarm-health-" + node }

// ResolveHealthAgents hashes the inventory's phonefarm-agent binaries for
// the architectures of the phones that run k3s.
func ResolveHealthAgents(farm *inventory.Farm, cacheDir string, arches []string) (map[string]Artifact, error) {
	out := map[string]Artifact{}
	if farm.Health == nil {
		return out, nil
	}
	for _, arch := range arches {
		p, ok := farm.Health.Agent[arch]
		if _, done := out[arch]; done || !ok {
			continue
		}
		a, err := fileArtifact(cacheDir, "health.agent["+arch+"]", arch, farm.Resolve(p), "(local)")
		if err != nil {
			return nil, err
		}
		out[arch] = a
	}
	return out, nil
}

// healthArgs are the reporter's arguments for a phone.
func healthArgs(h *inventory.Health, node string) []string {
	args := []string{"health", "-kubeconfig", HealthKubeconfigPath, "-node", node}
	if h.BatteryLowPercent != 0 {
		args = append(args, "-battery-low", strconv.Itoa(h.BatteryLowPercent))
	}
	if h.HotCelsius != 0 {
		args = append(args, "-hot", strconv.Itoa(h.HotCelsius))
	}
	if h.Interval != "" {
		args = append(args, "-interval", h.Interval)
	}
	return args
}

// healthSteps keep the reporter running beside k3s, after the node is
// registered: its binary, its credentials (a service account that may
// read and patch this node alone), its service, and a restart when any
// of them changed or it is not running. A phone whose architecture has no
// binary gets a note.
func healthSteps(in Input, pi PhoneInput, initSys initSystem) ([]Step, []string) {
	h := in.Farm.Health
	st := pi.State
	if h == nil {
		if st.HealthRunning || st.Files[initSys.ServicePath(HealthService)].SHA256 != "" {
			return []Step{&healthRemoveStep{init: initSys}}, nil
		}
		return nil, nil
	}
	art, ok := in.HealthAgents[pi.Facts.Arch]
	if !ok {
		return nil, []string{fmt.Sprintf("health: no phonefarm-agent binary for %s in health.agent, so this phone's battery and heat are not reported", pi.Facts.Arch)}
	}
	var steps []Step
	changed := false
	if cur := st.Files[HealthBinaryPath].SHA256; cur != art.SHA256 {
		why := "not installed"
		if cur != "" {
			why = "installed binary differs"
		}
		steps = append(steps, &uploadStep{art: art, path: HealthBinaryPath, mode: 0o755, title: "upload phonefarm-agent", why: why, old: cur})
		changed = true
	}
	if _, ok := st.Files[HealthKubeconfigPath]; !ok {
		steps = append(steps, &healthCredsStep{node: pi.Phone.Name, path: HealthKubeconfigPath})
		changed = true
	}
	svcPath := initSys.ServicePath(HealthService)
	svc := initSys.AgentService(HealthService, "phonefarm phone-health reporter", HealthBinaryPath, healthArgs(h, pi.Phone.Name))
	if cur := st.Files[svcPath].SHA256; cur != sha(svc) {
		steps = append(steps, &fileStep{path: svcPath, mode: 0o755, content: svc, title: "write " + initSys.Name() + " service " + HealthService,
			why: whyFile(st, svcPath, true, ""), old: cur})
		changed = true
	}
	why := ""
	switch {
	case changed:
		why = "binary, credentials or service changed"
	case !st.HealthRunning:
		why = "the reporter is not running"
	case !st.Enabled[HealthService]:
		why = "service not enabled at boot"
	}
	if why != "" {
		steps = append(steps, &restartStep{init: initSys, service: HealthService, why: why})
	}
	return steps, nil
}

// uploadStep uploads a local binary, checked by its hash.
type uploadStep struct {
	art   Artifact
	path  string
	mode  os.FileMode
	title string
	why   string
	old   string
}

func (s *uploadStep) Title() string {
	return fmt.Sprintf("%s (%s, %d MB)", s.title, s.art.Arch, s.art.Size>>20)
}
func (s *uploadStep) Why() string { return s.why }
func (s *uploadStep) Changes() []Change {
	return []Change{{Resource: "file " + s.path, Old: s.old, New: s.art.SHA256}}
}
func (s *uploadStep) Apply(ctx context.Context, t *Target) error {
	return uploadHashed(ctx, t, s.art, s.path, s.mode)
}

// healthCredsStep gives the reporter a credential that may read and patch
// its own node and that node's status, and nothing else: a service
// account with a role naming the node, and its token in a kubeconfig on
// the phone that only root reads. (The node's own kubelet credential may
// not change its taints.)
type healthCredsStep struct{ node, path string }

func (s *healthCredsStep) Title() string {
	return "write health credentials " + s.path
}
func (s *healthCredsStep) Why() string { return "missing" }
func (s *healthCredsStep) Changes() []Change {
	return []Change{{Resource: "service account " + healthNamespace + "/" + healthName(s.node), New: "nodes/" + s.node + " get, patch"}}
}

func (s *healthCredsStep) Apply(ctx context.Context, t *Target) error {
	// An Android phone's credentials are written as soon as the first
	// server has a join token, while its API may still be starting.
	var token string
	var c *Cluster
	err := withAPI(ctx, t, "node "+s.node+" health credentials", func(cl *Cluster) error {
		var err error
		c = cl
		token, err = healthToken(ctx, cl.Client, s.node)
		return err
	})
	if err != nil {
		return fmt.Errorf("the health credentials' service account: %w", err)
	}
	server, err := t.Env.ServerURL(ctx)
	if err != nil {
		return err
	}
	admin, err := clientcmd.Load(c.Kubeconfig)
	if err != nil {
		return err
	}
	var ca []byte
	for _, cl := range admin.Clusters {
		ca = cl.CertificateAuthorityData
	}
	name := healthName(s.node)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["farm"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["farm"] = &clientcmdapi.Context{Cluster: "farm", AuthInfo: name}
	kc.CurrentContext = "farm"
	b, err := clientcmd.Write(*kc)
	if err != nil {
		return err
	}
	return t.Host.WriteFile(ctx, s.path, 0o600, bytes.NewReader(b))
}

// RemoveHealthCredentials deletes node's health service account, its
// role, binding and token (healthCredsStep), when its phone leaves the
// farm. Objects already gone are not an error.
func RemoveHealthCredentials(ctx context.Context, c kubernetes.Interface, node string) error {
	name := healthName(node)
	gone := func(err error) error {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	return errors.Join(
		gone(c.CoreV1().Secrets(healthNamespace).Delete(ctx, name+"-token", metav1.DeleteOptions{})),
		gone(c.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{})),
		gone(c.RbacV1().ClusterRoles().Delete(ctx, name, metav1.DeleteOptions{})),
		gone(c.CoreV1().ServiceAccounts(healthNamespace).Delete(ctx, name, metav1.DeleteOptions{})),
	)
}

// healthToken makes (or finds) node's service account, its role and
// binding, and a long-lived token for it, and returns the token.
func healthToken(ctx context.Context, c kubernetes.Interface, node string) (string, error) {
	name := healthName(node)
	meta := metav1.ObjectMeta{Name: name, Namespace: healthNamespace, Labels: map[string]string{"app.kubernetes.io/managed-by": "phonefarm"}}
	create := func(err error) error {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	if _, err := c.CoreV1().ServiceAccounts(healthNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta}, metav1.CreateOptions{}); create(err) != nil {
		return "", err
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: meta.Labels}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, ResourceNames: []string{node}, Verbs: []string{"get", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes/status"}, ResourceNames: []string{node}, Verbs: []string{"patch"}},
	}}
	if _, err := c.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); create(err) != nil {
		return "", err
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: meta.Labels},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: healthNamespace}}}
	if _, err := c.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); create(err) != nil {
		return "", err
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-token", Namespace: healthNamespace, Labels: meta.Labels,
		Annotations: map[string]string{corev1.ServiceAccountNameKey: name}}, Type: corev1.SecretTypeServiceAccountToken}
	if _, err := c.CoreV1().Secrets(healthNamespace).Create(ctx, secret, metav1.CreateOptions{}); create(err) != nil {
		return "", err
	}
	// The token controller fills the secret in.
	deadline := time.Now().Add(time.Minute)
	for {
		s, err := c.CoreV1().Secrets(healthNamespace).Get(ctx, name+"-token", metav1.GetOptions{})
		if err == nil && len(s.Data[corev1.ServiceAccountTokenKey]) > 0 {
			return string(s.Data[corev1.ServiceAccountTokenKey]), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the token of %s/%s was not issued within a minute (%v)", healthNamespace, name, err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// healthRemoveStep stops and removes the reporter when the inventory no
// longer asks for it.
type healthRemoveStep struct{ init initSystem }

func (s *healthRemoveStep) Title() string { return "remove the health reporter" }
func (s *healthRemoveStep) Why() string   { return "the inventory has no health block" }
func (s *healthRemoveStep) Apply(ctx context.Context, t *Target) error {
	cmd := s.init.Command(HealthService, "stop") + "; " + s.init.Command(HealthService, "disable") +
		"; rm -f " + s.init.ServicePath(HealthService) + " " + HealthKubeconfigPath + " " + HealthBinaryPath
	_, err := transport.Output(ctx, t.Host, cmd)
	return err
}
