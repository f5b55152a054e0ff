// Package agent is phonefarm's rootless node agent: on a stock Android
// phone, started over adb as the shell user, it joins a k3s cluster as a
// k3s agent does, registers a Node with the phone's real capacity and
// conditions, renews its Lease, runs the pods bound to it under proot and
// serves the kubelet API (through a tunnel to the server) for logs, exec,
// attach and port-forward.
//
// It is built from the pieces below it: k3s (joining, the tunnel), node
// (the Node and its conditions), pods (running pods), image (pulling and
// unpacking images), proot; virtual-kubelet drives node and pods against
// the API server.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	vklogrus "github.com/virtual-kubelet/virtual-kubelet/log/logrus"
	vknode "github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/phonefarm/phonefarm/agent/config"
	"github.com/phonefarm/phonefarm/agent/health"
	"github.com/phonefarm/phonefarm/agent/image"
	"github.com/phonefarm/phonefarm/agent/k3s"
	"github.com/phonefarm/phonefarm/agent/node"
	"github.com/phonefarm/phonefarm/agent/pods"
	"github.com/phonefarm/phonefarm/agent/proot"
)

// Lease and status cadence, as the kubelet's: the Lease lasts 40 s and is
// renewed every 10 s; the status is patched every minute, and at once
// when a condition flips.
const (
	leaseSeconds   = 40
	leaseRenew     = 10 * time.Second
	statusInterval = time.Minute
)

// Run joins the cluster and serves as its node until ctx ends; then it
// stops the pods it runs (their processes must not outlive it).
func Run(ctx context.Context, c *config.Config, log *slog.Logger) error {
	if err := c.Validate(); err != nil {
		return err
	}
	log = log.With("node", c.NodeName)
	useNameServers(c.DNS, log)
	tok, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return fmt.Errorf("read the join token: %w", err)
	}
	token, err := k3s.ParseToken(strings.TrimSpace(string(tok)))
	if err != nil {
		return fmt.Errorf("%s: %w", c.TokenFile, err)
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("create the agent's directory: %w", err)
	}

	log.Info("joining the cluster", "server", c.Server)
	creds, err := (&k3s.Joiner{Server: c.Server, Token: token, NodeName: c.NodeName, NodeIPs: []string{c.NodeIP},
		PasswordFile: filepath.Join(c.Dir, "node-password"), Log: log}).Join(ctx)
	if err != nil {
		return fmt.Errorf("join %s: %w", c.Server, err)
	}
	restCfg := &rest.Config{
		Host:            creds.Server,
		TLSClientConfig: rest.TLSClientConfig{CAData: creds.ServerCA, CertData: creds.ClientCert, KeyData: creds.ClientKey},
		UserAgent:       "phonefarm-agent/" + c.NodeName,
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	// The heartbeat has a connection of its own (HTTP/1.1, its own dialer,
	// every request bounded): a renewal never waits behind a stalled
	// shared HTTP/2 connection, and one that times out takes its
	// connection with it, so the next attempt dials afresh.
	leaseCfg := rest.CopyConfig(restCfg)
	leaseCfg.Timeout = 5 * time.Second
	leaseCfg.TLSClientConfig.NextProtos = []string{"http/1.1"}
	leaseCfg.Dial = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext
	leaseCS, err := kubernetes.NewForConfig(leaseCfg)
	if err != nil {
		return err
	}
	version, err := cs.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("ask the API server its version: %w", err)
	}

	// virtual-kubelet logs through logrus; send it to our logger.
	lr := logrus.New()
	lr.SetOutput(slogWriter{log})
	lr.SetLevel(logrus.WarnLevel)
	ctx = vklog.WithLogger(ctx, vklogrus.FromLogrus(logrus.NewEntry(lr)))

	taints, _ := c.NodeTaints()
	reserved := uint64(c.ReservedMemoryMiB) << 20
	thresholds := node.DefaultThresholds
	if c.BatteryLowPercent > 0 {
		thresholds.BatteryLowPercent = c.BatteryLowPercent
	}
	if c.HotCelsius > 0 {
		thresholds.HotC = c.HotCelsius
	}
	np := &node.Provider{
		Info: node.Info{
			Name: c.NodeName, IP: c.NodeIP, Arch: runtime.GOARCH, Labels: c.Labels, Taints: taints,
			KubeletPort: int32(c.Port()), KubeletVersion: version.GitVersion,
			OSImage: osImage(), KernelVersion: kernelVersion(), MaxPods: c.MaxPods,
			ReservedMemory: reserved, ReservedDiskPercent: 10,
		},
		Sensors:    node.Sensors{Dir: c.Dir, Sys: c.Sys, Proc: c.Proc},
		Thresholds: thresholds,
		Log:        log,
	}
	if c.HealthKubeconfig != "" {
		// Without it the node still runs pods and reports its
		// conditions; only the taint is missing.
		if err := keepHealthTaint(ctx, c, np, log); err != nil {
			log.Warn("the node's health taint is not kept", "err", err)
		}
	}
	first, err := np.Initial(ctx)
	if err != nil {
		return err
	}

	store := &image.Store{Dir: filepath.Join(c.Dir, "images"), Registries: c.Registries, Log: log}
	pm := &pods.Manager{
		Dir:    filepath.Join(c.Dir, "pods"),
		Images: store,
		Proot:  &proot.Proot{Path: c.Proot, TmpDir: filepath.Join(c.Dir, "tmp"), Link2Symlink: c.ProotLink2Symlink, KillOnExit: c.ProotKillOnExit},
		Node:   pods.Node{Name: c.NodeName, IP: c.NodeIP, DNS: c.DNS, APIServer: hostOf(creds.Server), CA: creds.ServerCA},
		Log:    log,
	}
	if err := os.MkdirAll(pm.Proot.TmpDir, 0o700); err != nil {
		return err
	}
	pm.Objects = objects{cs}
	if err := pm.CleanStale(); err != nil {
		log.Warn("clean up after a previous agent", "err", err)
	}
	defer pm.Shutdown(10 * time.Second)

	// Pods bound to this node only; Services for their environment.
	podInformers := informers.NewSharedInformerFactoryWithOptions(cs, time.Minute, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", c.NodeName).String()
	}))
	svcInformers := informers.NewSharedInformerFactory(cs, 10*time.Minute)
	unstarted := informers.NewSharedInformerFactory(cs, 0)
	podInformer := podInformers.Core().V1().Pods()
	svcInformer := svcInformers.Core().V1().Services()
	pm.Services = svcInformer.Lister()

	// virtual-kubelet registers the node and patches its status; the
	// Lease is renewed by node.Lease, which retries within a second of a
	// failure instead of a renew interval later.
	// Without its lease, virtual-kubelet patches the status at every ping:
	// once a minute, and at once when a condition flips.
	nc, err := vknode.NewNodeController(np, first, cs.CoreV1().Nodes(),
		vknode.WithNodePingInterval(statusInterval), vknode.WithNodeStatusUpdateInterval(statusInterval))
	if err != nil {
		return err
	}
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "phonefarm-agent", Host: c.NodeName})
	pm.Event = func(pod *corev1.Pod, typ, reason, msg string) { recorder.Event(pod, typ, reason, msg) }
	pc, err := vknode.NewPodController(vknode.PodControllerConfig{
		PodClient:     cs.CoreV1(),
		PodInformer:   podInformer,
		EventRecorder: recorder,
		Provider:      pm,
		// Never started: a node may not list Secrets and ConfigMaps; the
		// pods package reads them by name.
		ConfigMapInformer: unstarted.Core().V1().ConfigMaps(),
		SecretInformer:    unstarted.Core().V1().Secrets(),
		ServiceInformer:   svcInformer,
		// Environment and volumes are resolved by the pods package, by
		// name, as the node authorizer allows.
		SkipDownwardAPIResolution: true,
	})
	if err != nil {
		return err
	}

	st := &stats{node: c.NodeName, started: time.Now(), sensors: np.Sensors, pods: pm, proc: c.Proc, now: time.Now}
	ks, err := listenKubelet("", c.Port(), creds.Serving, creds.ClientCA, api.PodHandlerConfig{
		RunInContainer:    pm.RunInContainer,
		AttachToContainer: pm.AttachToContainer,
		PortForward:       pm.PortForward,
		GetContainerLogs:  pm.GetContainerLogs,
		GetPods:           pm.RunningPods,
		GetPodsFromKubernetes: func(context.Context) ([]*corev1.Pod, error) {
			return podInformer.Lister().List(labels.Everything())
		},
		GetStatsSummary:       st.Summary,
		GetMetricsResource:    st.MetricsResource,
		StreamIdleTimeout:     4 * time.Hour,
		StreamCreationTimeout: 30 * time.Second,
	}, log)
	if err != nil {
		return fmt.Errorf("serve the kubelet API: %w", err)
	}
	defer ks.close(context.WithoutCancel(ctx))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go (&k3s.Tunnel{Creds: creds, KubeletPort: c.Port(), Log: log}).Run(ctx)
	go np.Run(ctx)
	errc := make(chan error, 2)
	go func() { errc <- fmt.Errorf("node controller: %w", nc.Run(ctx)) }()
	select {
	case <-nc.Ready():
	case err := <-errc:
		return err
	case <-ctx.Done():
		return nil
	}
	log.Info("node registered", "kubelet", version.GitVersion)
	registered, err := cs.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read the registered node: %w", err)
	}
	go (&node.Lease{
		Client: leaseCS.CoordinationV1().Leases(corev1.NamespaceNodeLease), Node: c.NodeName, UID: registered.UID,
		Duration: leaseSeconds * time.Second, Renew: leaseRenew, Retry: time.Second, Timeout: 5 * time.Second, Log: log,
	}).Run(ctx)
	podInformer.Informer() // registered before Start
	svcInformer.Informer()
	podInformers.Start(ctx.Done())
	svcInformers.Start(ctx.Done())
	go func() { errc <- fmt.Errorf("pod controller: %w", pc.Run(ctx, 4)) }()
	select {
	case <-ctx.Done():
		log.Info("stopping: the agent's pods stop with it")
		return nil
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

// keepHealthTaint keeps the node's health taint (NoSchedule while the
// phone is hot, or low on battery off the charger) with the credential in
// c.HealthKubeconfig: the node's own may not change its taints. The taint
// is written when the conditions call for another one, and checked again
// every minute; a failure is retried at the next measurement.
func keepHealthTaint(ctx context.Context, c *config.Config, np *node.Provider, log *slog.Logger) error {
	rc, err := clientcmd.BuildConfigFromFlags("", c.HealthKubeconfig)
	if err != nil {
		return fmt.Errorf("healthKubeconfig: %w", err)
	}
	rc.UserAgent = "phonefarm-agent/" + c.NodeName
	hc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("healthKubeconfig: %w", err)
	}
	t := &health.Tainter{Client: hc, Node: c.NodeName, Log: log}
	latest := make(chan []corev1.NodeCondition, 1)
	np.OnConditions = func(conds []corev1.NodeCondition) {
		select { // keep only the newest reading
		case <-latest:
		default:
		}
		latest <- conds
	}
	go func() {
		var synced *corev1.Taint
		var ok bool
		var at time.Time
		for {
			var conds []corev1.NodeCondition
			select {
			case <-ctx.Done():
				return
			case conds = <-latest:
			}
			want := health.WantTaint(conds)
			if ok && health.SameTaint(want, synced) && time.Since(at) < time.Minute {
				continue
			}
			if err := t.Sync(ctx, conds); err != nil {
				ok = false
				if ctx.Err() == nil {
					log.Warn("keep the node's health taint", "err", err)
				}
				continue
			}
			synced, ok, at = want, true, time.Now()
		}
	}()
	return nil
}

func hostOf(server string) string {
	u, err := url.Parse(server)
	if err != nil {
		return server
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return u.Host
}

// objects reads what pods refer to, by name, with the node's identity.
type objects struct{ cs kubernetes.Interface }

func (o objects) Secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	return o.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

func (o objects) ConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	return o.cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

func (o objects) ServiceAccountToken(ctx context.Context, pod *corev1.Pod, audience string, seconds int64) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		ExpirationSeconds: &seconds,
		BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if audience != "" {
		req.Spec.Audiences = []string{audience}
	}
	tr, err := o.cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

// slogWriter turns virtual-kubelet's log lines into warnings of ours.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(b []byte) (int, error) {
	w.log.Warn(strings.TrimSpace(string(b)), "from", "virtual-kubelet")
	return len(b), nil
}

// getprop reads an Android system property.
func getprop(name string) (string, error) {
	out, err := exec.Command("getprop", name).Output()
	return strings.TrimSpace(string(out)), err
}

// osImage is what the node reports as its OS: Android's release when the
// agent runs there.
func osImage() string {
	if v, err := getprop("ro.build.version.release"); err == nil && v != "" {
		return "Android " + v
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				return strings.Trim(v, `"`)
			}
		}
	}
	return "Linux"
}

func kernelVersion() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// useNameServers makes the agent's own lookups (registries by name) ask
// servers where the system has no /etc/resolv.conf, as on Android: Go's
// resolver would otherwise ask 127.0.0.1, where nothing answers. The
// process's resolver is set once, at its start.
func useNameServers(servers []string, log *slog.Logger) {
	if _, err := os.Stat("/etc/resolv.conf"); err == nil || len(servers) == 0 {
		return
	}
	var d net.Dialer
	var next atomic.Uint32
	net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		// Each query starts at the next server, so one that is down
		// costs only the queries that land on it.
		i := int(next.Add(1)) % len(servers)
		return d.DialContext(ctx, network, net.JoinHostPort(servers[i], "53"))
	}}
	log.Info("no /etc/resolv.conf: resolving names with the phone's name servers", "servers", servers)
}
