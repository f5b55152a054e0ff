package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/phonefarm/phonefarm/checks"
	"github.com/phonefarm/phonefarm/examples/apps"
	"github.com/phonefarm/phonefarm/internal/demo"
	"github.com/phonefarm/phonefarm/internal/kube"
	"github.com/phonefarm/phonefarm/internal/oci"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testbed/farmtest"
	"github.com/phonefarm/phonefarm/internal/testenv"
	"github.com/phonefarm/phonefarm/provision"
)

// workloadBed is a test bed whose hosts can run pods, with a registry on
// its network that mirrors the upstream registries, and an inventory and
// kubeconfig for it.
type workloadBed struct {
	*farmtest.Farm
	t    *testing.T
	tb   *testbed.Testbed
	file string
	kc   string
}

func newWorkloadBed(t *testing.T, hosts ...testbed.HostSpec) *workloadBed {
	t.Helper()
	f := farmtest.New(t, farmtest.Options{Apps: true}, hosts...)
	dir := t.TempDir()
	return &workloadBed{Farm: f, t: t, tb: f.Testbed, file: filepath.Join(dir, "farm.yaml"), kc: filepath.Join(dir, "kubeconfig")}
}

// write writes the inventory: the first host the server, every upstream
// registry mirrored to the test bed's registry.
func (b *workloadBed) write(o testbed.InventoryOptions) {
	b.t.Helper()
	o.Name = "workfarm"
	if err := os.WriteFile(b.file, []byte(b.Inventory(o)), 0o600); err != nil {
		b.t.Fatal(err)
	}
}

// apply runs phonefarm apply and returns each phone's result and the log.
func (b *workloadBed) apply() (map[string]provision.PhoneResult, string) {
	b.t.Helper()
	code, stdout, stderr := run(b.t, "apply", "-f", b.file, "--skip-checks=kernel-config", "-o", "json")
	if code != 0 {
		b.t.Fatalf("apply: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var res []provision.PhoneResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		b.t.Fatalf("%v: %s\n%s", err, stdout, stderr)
	}
	out := map[string]provision.PhoneResult{}
	for _, r := range res {
		out[r.Phone] = r
	}
	return out, stderr
}

func (b *workloadBed) client() *kube.Client {
	b.t.Helper()
	kc, err := os.ReadFile(b.kc)
	if err != nil {
		b.t.Fatal(err)
	}
	c, err := kube.NewClient(kc)
	if err != nil {
		b.t.Fatal(err)
	}
	return c
}

// podStarts is every running container of the cluster by pod UID and
// name, with its restart count and start time: what must not change when
// nothing should have interrupted a pod.
func (b *workloadBed) podStarts() map[string]string {
	b.t.Helper()
	pods, err := b.client().Core.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		b.t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			started := ""
			if r := cs.State.Running; r != nil {
				started = r.StartedAt.String()
			}
			out[string(p.UID)+"/"+p.Name+"/"+cs.Name] = fmt.Sprintf("restarts=%d started=%s", cs.RestartCount, started)
		}
	}
	return out
}

func (b *workloadBed) url(host *testbed.Host, app demo.App) string {
	return fmt.Sprintf("http://%s:%d%s", host.Addr, app.NodePort, app.Path)
}

// phonesIn returns the phones named in answers like "[pod on phone] ..."
// or "pong from pod on phone".
func phonesIn(answers []string) []string {
	var phones []string
	for _, a := range answers {
		a = strings.TrimPrefix(a, "[")
		_, rest, ok := strings.Cut(a, " on ")
		if !ok {
			continue
		}
		phone, _, _ := strings.Cut(rest, "]")
		phone = strings.Fields(phone)[0]
		if !slices.Contains(phones, phone) {
			phones = append(phones, phone)
		}
	}
	slices.Sort(phones)
	return phones
}

// The farm runs workloads: k3s's DNS and storage, the example apps spread
// over the phones and reached through Services, a pod's DNS lookups and a
// local-path volume; a converged re-apply and a registries change on one
// phone interrupt no pod; images shipped as air-gap tarballs run where no
// registry has them; a rolling k3s upgrade keeps a 3-replica Deployment
// serving.
func TestWorkloadsOnRealK3s(t *testing.T) {
	t.Parallel()
	b := newWorkloadBed(t, testbed.HostSpec{Name: "server1", PostmarketOS: true}, testbed.HostSpec{Name: "agent1", PostmarketOS: true},
		testbed.HostSpec{Name: "agent2", PostmarketOS: true}, testbed.HostSpec{Name: "agent3"})
	ctx := context.Background()
	labels := map[string]map[string]string{"agent1": {"phonefarm.dev/assistant": "true"}}
	b.write(testbed.InventoryOptions{PhoneLabels: labels})
	res, _ := b.apply()
	for _, h := range b.tb.Hosts {
		if r := res[h.Name]; r.Outcome != provision.Changed {
			t.Errorf("%s: got %s %q, want changed", h.Name, r.Outcome, r.Reason)
		}
	}
	if code, out, errOut := run(t, "kubeconfig", "-f", b.file, "--out", b.kc); code != 0 {
		t.Fatalf("kubeconfig: %d %s %s", code, out, errOut)
	}

	t.Run("apps spread over the phones", func(t *testing.T) {
		var phones []string
		for _, h := range b.tb.Hosts {
			phones = append(phones, h.Addr)
		}
		pods, err := demo.DeployApps(ctx, b.kc, phones, testWriter{t})
		if err != nil {
			t.Fatal(err)
		}
		if got := distinct(pods["pong"]); len(got) != 3 {
			t.Errorf("pong's 3 replicas run on %v, want 3 different phones", got)
		}
		if got := distinct(pods["assistant"]); !slices.Equal(got, []string{"agent1"}) {
			t.Errorf("assistant runs on %v, want only agent1, the labelled phone", got)
		}
		answers, err := demo.Ask(ctx, b.url(b.tb.Hosts[0], demo.Apps[1]), 24)
		if err != nil {
			t.Fatal(err)
		}
		if got := phonesIn(answers); len(got) < 2 {
			t.Errorf("chat through its Service was answered by %v, want more than one phone:\n%s", got, strings.Join(answers, "\n"))
		}
		for _, a := range answers {
			if !strings.Contains(a, "Hello from ") {
				t.Errorf("chat answer %q does not come from its ConfigMap's hello command", a)
			}
		}
	})

	t.Run("a deleted pod comes back on another phone", func(t *testing.T) {
		c := b.client()
		const ns, sel = "phonefarm-examples", "app.kubernetes.io/name=pong"
		pods, err := c.PodsByNode(ctx, ns, sel)
		if err != nil || len(pods) != 3 {
			t.Fatalf("pong pods: %v %v, want 3 running", pods, err)
		}
		var victim, phone string
		for p, n := range pods {
			victim, phone = p, n
			break
		}
		// The phone is taken out of scheduling (as a drained or hot phone
		// is), so the replacement cannot land where the pod was.
		cordon := func(on bool) {
			patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, on)
			if _, err := c.Core.CoreV1().Nodes().Patch(ctx, phone, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		cordon(true)
		defer cordon(false)
		if err := c.Core.CoreV1().Pods(ns).Delete(ctx, victim, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		var after map[string]string
		deadline := time.Now().Add(2 * time.Minute)
		for {
			after, err = c.PodsByNode(ctx, ns, sel)
			_, old := after[victim]
			if err == nil && len(after) == 3 && !old {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pong after deleting %s on %s: %v %v, want 3 running replicas again", victim, phone, after, err)
			}
			time.Sleep(time.Second)
		}
		for p, n := range after {
			if _, kept := pods[p]; !kept && n == phone {
				t.Errorf("replacement %s runs on %s, the cordoned phone", p, n)
			}
		}
		if got := distinct(after); len(got) != 3 {
			t.Errorf("pong's replicas run on %v after the replacement, want 3 different phones", got)
		}
		if _, err := demo.Ask(ctx, b.url(b.tb.Hosts[0], demo.Apps[0]), 6); err != nil {
			t.Errorf("pong through its Service after the replacement: %v", err)
		}
	})

	t.Run("cluster DNS, a Service by name and a local-path volume", func(t *testing.T) {
		manifest := `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: local-path
  resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: dns-and-disk, namespace: default}
spec:
  restartPolicy: Never
  containers:
    - name: probe
      image: rancher/mirrored-library-busybox:1.36.1
      command: [sh, -c]
      args:
        - nslookup pong.phonefarm-examples.svc.cluster.local && wget -qO- http://pong.phonefarm-examples/ && echo kept > /data/file && cat /data/file
      volumeMounts: [{name: data, mountPath: /data}]
  volumes:
    - name: data
      persistentVolumeClaim: {claimName: data}
`
		c := b.client()
		if err := c.Apply(ctx, "dns-and-disk.yaml", []byte(manifest)); err != nil {
			t.Fatal(err)
		}
		var phase string
		deadline := time.Now().Add(3 * time.Minute)
		for time.Now().Before(deadline) {
			p, err := c.Core.CoreV1().Pods("default").Get(ctx, "dns-and-disk", metav1.GetOptions{})
			if err == nil {
				phase = string(p.Status.Phase)
				if phase == "Succeeded" || phase == "Failed" {
					break
				}
			}
			time.Sleep(2 * time.Second)
		}
		logs, err := c.Core.CoreV1().Pods("default").GetLogs("dns-and-disk", &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			t.Errorf("logs of the probe pod: %v", err)
		}
		if phase != "Succeeded" || !strings.Contains(string(logs), "pong from pong-") || !strings.Contains(string(logs), "kept") {
			t.Errorf("probe pod: %s; logs:\n%s", phase, logs)
		}
		pvc, err := c.Core.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{})
		if err != nil || pvc.Status.Phase != "Bound" {
			t.Errorf("local-path claim: %v %v, want Bound", pvc.Status.Phase, err)
		}
	})

	t.Run("check says what blocks pods", func(t *testing.T) {
		// The hosts share this machine's kernel and capabilities: root
		// here can lower oom_score_adj exactly when theirs can.
		oom := checks.Pass
		if os.WriteFile("/proc/self/oom_score_adj", []byte("-1"), 0) != nil {
			oom = checks.Warn
		}
		reports := checkReports(t, b.file)
		for _, h := range b.tb.Hosts {
			for id, want := range map[string]checks.Status{"cni-plugins": checks.Pass, "pause-image": checks.Pass, "oom-score-adj": oom} {
				if got, msg := checkResult(reports, h.Name, id); got != want {
					t.Errorf("%s %s: got %s (%s), want %s", h.Name, id, got, msg, want)
				}
			}
		}
		agent3 := b.tb.Host("agent3")
		if _, err := b.tb.Exec(ctx, agent3, "rm /usr/local/bin/flannel"); err != nil {
			t.Fatal(err)
		}
		reports = checkReports(t, b.file)
		if got, msg := checkResult(reports, "agent3", "cni-plugins"); got != checks.Fail || !strings.Contains(msg, "lacks flannel") {
			t.Errorf("agent3 without the flannel plugin: got %s %q, want a failure naming flannel", got, msg)
		}
		if got, _ := checkResult(reports, "agent2", "cni-plugins"); got != checks.Pass {
			t.Errorf("agent2: got %s, want pass", got)
		}
		if _, err := b.tb.Exec(ctx, agent3, "ln -s /opt/phonefarm-testbed/flannel /usr/local/bin/flannel"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a converged re-apply interrupts nothing", func(t *testing.T) {
		before := b.podStarts()
		res, progress := b.apply()
		for _, h := range b.tb.Hosts {
			if r := res[h.Name]; r.Outcome != provision.Unchanged {
				t.Errorf("%s: got %s (%d steps), want unchanged", h.Name, r.Outcome, r.Applied)
			}
		}
		if t.Failed() {
			t.Logf("apply's log:\n%s", progress)
		}
		if diff := diffStarts(before, b.podStarts()); diff != "" {
			t.Errorf("containers restarted by a converged re-apply:\n%s", diff)
		}
	})

	t.Run("registries changed on one phone restart only it", func(t *testing.T) {
		agent2 := b.tb.Host("agent2")
		if _, err := b.tb.Exec(ctx, agent2, "echo '# edited by hand' >> "+provision.RegistriesPath); err != nil {
			t.Fatal(err)
		}
		before := b.podStarts()
		res, progress := b.apply()
		for _, h := range b.tb.Hosts {
			want := provision.Unchanged
			if h == agent2 {
				want = provision.Changed
			}
			if r := res[h.Name]; r.Outcome != want {
				t.Errorf("%s: got %s (%d steps), want %s", h.Name, r.Outcome, r.Applied, want)
			}
		}
		if t.Failed() {
			t.Logf("apply's log:\n%s", progress)
		}
		if got := res["agent2"].Applied; got != 3 {
			t.Errorf("agent2: %d steps, want 3 (write registries, restart, wait for Ready)", got)
		}
		if diff := diffStarts(before, b.podStarts()); diff != "" {
			t.Errorf("containers restarted when k3s restarted on agent2:\n%s", diff)
		}
	})

	t.Run("a private registry over TLS, credentials from files", func(t *testing.T) {
		dir := t.TempDir()
		gw := b.tb.Gateway
		caPEM, cert, roots, err := testbed.RegistryCertificate(gw)
		if err != nil {
			t.Fatal(err)
		}
		const user, password = "farmer", "s3cret-registry-password"
		host := gw + ":5443"
		reg, err := testbed.StartPrivateRegistry(ctx, host, filepath.Join(dir, "blobs"), cert, roots, user, password,
			map[string]v1.Image{"phonefarm.dev/examples/pong:private": b.Images[apps.PongImage]})
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Close()
		ref, err := reg.Ref("phonefarm.dev/examples/pong:private")
		if err != nil {
			t.Fatal(err)
		}
		// Without the credentials the registry refuses: the pods below
		// run only because containerd got them from registries.yaml.
		anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 5 * time.Second}
		if resp, err := anon.Get(reg.URL + "/v2/"); err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("anonymous request to the private registry: %v %v, want 401", resp, err)
		} else {
			resp.Body.Close()
		}
		files := map[string]string{"ca.pem": string(caPEM), "user": user, "password": password + "\n"}
		for n, c := range files {
			if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		b.write(testbed.InventoryOptions{PhoneLabels: labels, RegistryConfigs: map[string]string{
			host: fmt.Sprintf("{username: %q, password: %q, caFile: %q}", "file:"+filepath.Join(dir, "user"), "file:"+filepath.Join(dir, "password"), filepath.Join(dir, "ca.pem")),
		}})
		code, planOut, planErr := run(t, "plan", "-f", b.file, "--skip-checks=kernel-config")
		if code != 0 || strings.Count(planOut, "write registry certificate") != 4 || strings.Contains(planOut+planErr, password) {
			t.Errorf("plan: exit %d, want the CA written on every phone and no password:\n%s\n%s", code, planOut, planErr)
		}
		before := b.podStarts()
		res, log := b.apply()
		for _, h := range b.tb.Hosts {
			if r := res[h.Name]; r.Outcome != provision.Changed {
				t.Errorf("%s: got %s, want changed", h.Name, r.Outcome)
			}
		}
		if strings.Contains(log, password) {
			t.Errorf("apply's output shows the registry password:\n%s", log)
		}
		if diff := diffStarts(before, b.podStarts()); diff != "" {
			t.Errorf("containers restarted when k3s restarted for the registry change:\n%s", diff)
		}
		ds := fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata: {name: pong-private, namespace: default}
spec:
  selector: {matchLabels: {app: pong-private}}
  template:
    metadata: {labels: {app: pong-private}}
    spec:
      containers:
        - name: pong
          image: %s
          imagePullPolicy: Always
`, ref)
		c := b.client()
		if err := c.Apply(ctx, "pong-private.yaml", []byte(ds)); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = c.Core.AppsV1().DaemonSets("default").Delete(ctx, "pong-private", metav1.DeleteOptions{})
		}()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			d, err := c.Core.AppsV1().DaemonSets("default").Get(ctx, "pong-private", metav1.GetOptions{})
			if err == nil && d.Status.DesiredNumberScheduled == 4 && d.Status.NumberReady == 4 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pong-private (from the private registry) not running on every phone: %+v %v%s", d.Status, err, c.PodTrouble(ctx, "default"))
			}
			time.Sleep(2 * time.Second)
		}
	})

	t.Run("air-gap images run where no registry has them", func(t *testing.T) {
		// The registry has pong:v1 only; pong:airgap reaches the phones
		// only as a tarball in the inventory.
		tag := "phonefarm.dev/examples/pong:airgap"
		tarball := filepath.Join(t.TempDir(), "pong-airgap.tar")
		if err := oci.WriteArchive(tarball, map[string]v1.Image{tag: b.Images[apps.PongImage]}); err != nil {
			t.Fatal(err)
		}
		if _, err := name.ParseReference(tag); err != nil {
			t.Fatal(err)
		}
		b.write(testbed.InventoryOptions{PhoneLabels: labels, AirgapImages: []string{tarball}})
		code, planOut, _ := run(t, "plan", "-f", b.file, "--skip-checks=kernel-config")
		if code != 0 || strings.Count(planOut, "upload airgap images pong-airgap.tar") != 4 {
			t.Errorf("plan: exit %d, want every phone to lack pong-airgap.tar:\n%s", code, planOut)
		}
		res, _ := b.apply()
		for _, h := range b.tb.Hosts {
			if r := res[h.Name]; r.Outcome != provision.Changed {
				t.Errorf("%s: got %s, want changed", h.Name, r.Outcome)
			}
		}
		ds := fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata: {name: pong-airgap, namespace: default}
spec:
  selector: {matchLabels: {app: pong-airgap}}
  template:
    metadata: {labels: {app: pong-airgap}}
    spec:
      containers:
        - name: pong
          image: %s
          imagePullPolicy: Never
`, tag)
		c := b.client()
		if err := c.Apply(ctx, "pong-airgap.yaml", []byte(ds)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			d, err := c.Core.AppsV1().DaemonSets("default").Get(ctx, "pong-airgap", metav1.GetOptions{})
			if err == nil && d.Status.DesiredNumberScheduled == 4 && d.Status.NumberReady == 4 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pong-airgap (imagePullPolicy Never) not running on every phone: %+v %v", d.Status, err)
			}
			time.Sleep(2 * time.Second)
		}
		res, _ = b.apply()
		for _, h := range b.tb.Hosts {
			if r := res[h.Name]; r.Outcome != provision.Unchanged {
				t.Errorf("%s on re-apply: got %s (%d steps), want unchanged", h.Name, r.Outcome, r.Applied)
			}
		}
		// This inventory names no private registry: its CA went.
		if out, err := b.tb.Exec(ctx, b.tb.Host("agent1"), "ls -A "+provision.RegistryFilesDir+" 2>/dev/null; true"); err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("%s on agent1 after the private registry left the inventory: %q %v, want empty", provision.RegistryFilesDir, out, err)
		}
	})

	t.Run("a rolling k3s upgrade keeps pong serving", func(t *testing.T) {
		next, err := testbed.K3sBinaryVersion(testbed.K3sUpgradeVersion)
		if err != nil {
			testenv.Unavailable(t, "%v", err)
		}
		b.write(testbed.InventoryOptions{PhoneLabels: labels, K3s: next, Version: testbed.K3sUpgradeVersion})
		var ok, failed atomic.Int64
		var mu sync.Mutex
		var failures []string
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				h := b.tb.Hosts[i%len(b.tb.Hosts)]
				if _, err := demo.Ask(ctx, b.url(h, demo.Apps[0]), 1); err != nil {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s via %s: %v", time.Now().Format("15:04:05.000"), h.Name, err))
					mu.Unlock()
				} else {
					ok.Add(1)
				}
			}
		}()
		res, log := b.apply()
		close(stop)
		wg.Wait()
		for _, h := range b.tb.Hosts {
			if r := res[h.Name]; r.Outcome != provision.Changed {
				t.Errorf("%s: got %s, want changed by the upgrade", h.Name, r.Outcome)
			}
		}
		t.Logf("pong during the upgrade: %d answered, %d failed", ok.Load(), failed.Load())
		if failed.Load() > 0 || ok.Load() < 50 {
			t.Errorf("pong during the rolling upgrade: %d answered, %d failed, want none failed:\n%s\napply:\n%s", ok.Load(), failed.Load(), strings.Join(failures, "\n"), log)
		}
	})
}

func checkReports(t *testing.T, file string) []checks.Report {
	t.Helper()
	_, stdout, stderr := run(t, "check", "-f", file, "-o", "json")
	var reports []checks.Report
	if err := json.Unmarshal([]byte(stdout), &reports); err != nil {
		t.Fatalf("check -o json: %v\n%s\n%s", err, stdout, stderr)
	}
	return reports
}

func checkResult(reports []checks.Report, phone, id string) (checks.Status, string) {
	for _, r := range reports {
		if r.Phone != phone {
			continue
		}
		for _, res := range r.Results {
			if res.ID == id {
				return res.Status, res.Message
			}
		}
	}
	return "", "no result"
}

func distinct(podsByNode map[string]string) []string {
	var out []string
	for _, n := range podsByNode {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// diffStarts lists containers whose restarts or start time changed, or
// that went away.
func diffStarts(before, after map[string]string) string {
	var lines []string
	for k, v := range before {
		if a, ok := after[k]; !ok {
			lines = append(lines, k+": gone")
		} else if a != v {
			lines = append(lines, fmt.Sprintf("%s: %s -> %s", k, v, a))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
