package pods

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilexec "k8s.io/utils/exec"

	"github.com/phonefarm/phonefarm/agent/image"
	"github.com/phonefarm/phonefarm/agent/proot"
	"github.com/phonefarm/phonefarm/internal/testenv"
)

// busyboxRoot is a root filesystem with this machine's static busybox and
// its applets, as a busybox image unpacks.
func busyboxRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "busybox")
	out, err := exec.Command("/bin/busybox", "--list-full").Output()
	if err != nil {
		testenv.Unavailable(t, "busybox-static: %v (scripts/setup.sh installs it)", err)
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a != "bin/busybox" {
			_ = os.Symlink("/bin/busybox", filepath.Join(root, a))
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// fakeImages serves every image from one root filesystem.
type fakeImages struct{ root string }

func (f fakeImages) Pull(_ context.Context, ref string, _ []image.PullSecret, _ bool) (*image.Image, error) {
	if strings.Contains(ref, "missing") {
		return nil, errors.New("manifest unknown")
	}
	return &image.Image{Ref: ref, Digest: "sha256:busybox", RootFS: f.root, Config: fakeConfig}, nil
}

func (f fakeImages) Cached(ref string) (*image.Image, error) {
	return f.Pull(context.Background(), ref, nil, false)
}

var fakeConfig = imageConfig()

// fakeObjects holds ConfigMaps and Secrets by name.
type fakeObjects struct {
	mu   sync.Mutex
	cms  map[string]*corev1.ConfigMap
	secs map[string]*corev1.Secret
}

func (f *fakeObjects) ConfigMap(_ context.Context, _, name string) (*corev1.ConfigMap, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cm, ok := f.cms[name]; ok {
		return cm, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (f *fakeObjects) Secret(_ context.Context, _, name string) (*corev1.Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.secs[name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func (f *fakeObjects) ServiceAccountToken(context.Context, *corev1.Pod, string, int64) (string, error) {
	return "token", nil
}

type harness struct {
	t   *testing.T
	m   *Manager
	obj *fakeObjects
	mu  sync.Mutex
	got map[string]*corev1.Pod
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	pr, err := exec.LookPath("proot")
	if err != nil {
		testenv.Unavailable(t, "proot: %v (scripts/setup.sh installs it)", err)
	}
	h := &harness{t: t, obj: &fakeObjects{cms: map[string]*corev1.ConfigMap{}, secs: map[string]*corev1.Secret{}}, got: map[string]*corev1.Pod{}}
	h.m = &Manager{
		Dir: t.TempDir(), Images: fakeImages{root: busyboxRoot(t)}, Objects: h.obj,
		Proot:       &proot.Proot{Path: pr, TmpDir: t.TempDir()},
		Node:        Node{Name: "pixel", IP: "10.0.0.9", DNS: []string{"10.0.0.1"}, APIServer: "10.0.0.2:6443"},
		BackoffBase: 200 * time.Millisecond, BackoffMax: time.Second,
	}
	h.m.NotifyPods(context.Background(), func(p *corev1.Pod) {
		h.mu.Lock()
		h.got[p.Name] = p
		h.mu.Unlock()
	})
	t.Cleanup(func() { h.m.Shutdown(time.Second) })
	return h
}

// wait polls the last pushed status of a pod until cond holds.
func (h *harness) wait(name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h.mu.Lock()
		p := h.got[name]
		h.mu.Unlock()
		if p != nil && cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("pod %s: no status with %s; last: %+v", name, what, p)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pod(name string, spec corev1.PodSpec) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)}, Spec: spec}
}

func sh(name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: "busybox:1.36", Command: []string{"sh", "-c", script}}
}

func condition(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

// A pod with an init container, two containers, a ConfigMap volume, an
// emptyDir shared between them, environment from the downward API and a
// readiness probe runs, answers exec and logs, and stops leaving no
// process behind.
func TestPodRunsUnderProot(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.obj.cms["greeting"] = &corev1.ConfigMap{Data: map[string]string{"hello": "hello from a ConfigMap\n"}}
	web := sh("web", `cat /config/hello > /shared/index; echo "pod $POD on $NODE ip $POD_IP"; trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.2; done`)
	web.Env = []corev1.EnvVar{
		{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
	}
	web.VolumeMounts = []corev1.VolumeMount{{Name: "config", MountPath: "/config"}, {Name: "shared", MountPath: "/shared"}}
	web.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-s", "/shared/index"}}}, PeriodSeconds: 1}
	side := sh("side", `trap "" TERM; while true; do cat /shared/init 2>/dev/null; sleep 1; done`)
	side.VolumeMounts = []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}
	init := sh("prepare", `echo prepared > /shared/init`)
	init.VolumeMounts = []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}
	grace := int64(5)
	p := pod("web", corev1.PodSpec{
		InitContainers: []corev1.Container{init}, Containers: []corev1.Container{web, side}, TerminationGracePeriodSeconds: &grace,
		Volumes: []corev1.Volume{
			{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "greeting"}}}},
			{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
	})
	if err := h.m.CreatePod(ctx, p); err != nil {
		t.Fatal(err)
	}
	got := h.wait("web", "Ready", func(p *corev1.Pod) bool { return condition(p, corev1.PodReady) == corev1.ConditionTrue })
	if got.Status.Phase != corev1.PodRunning || got.Status.PodIP != "10.0.0.9" || got.Status.HostIP != "10.0.0.9" {
		t.Errorf("status: phase %s podIP %s hostIP %s, want Running on the phone's IP", got.Status.Phase, got.Status.PodIP, got.Status.HostIP)
	}
	if t0 := got.Status.InitContainerStatuses[0].State.Terminated; t0 == nil || t0.ExitCode != 0 || t0.Reason != "Completed" {
		t.Errorf("init container: %+v, want terminated with 0", got.Status.InitContainerStatuses[0].State)
	}
	for _, cs := range got.Status.ContainerStatuses {
		if cs.State.Running == nil || !cs.Ready || !strings.HasPrefix(cs.ContainerID, "proot://") {
			t.Errorf("container %s: %+v ready=%v id=%q, want running and ready", cs.Name, cs.State, cs.Ready, cs.ContainerID)
		}
	}

	logs := func(c string, o api.ContainerLogOpts) string {
		rc, err := h.m.GetContainerLogs(ctx, "default", "web", c, o)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return string(b)
	}
	if got := logs("web", api.ContainerLogOpts{}); got != "pod web on pixel ip 10.0.0.9\n" {
		t.Errorf("web's log: got %q", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs("side", api.ContainerLogOpts{Tail: 1}), "prepared") && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if got := logs("side", api.ContainerLogOpts{Tail: 1, Timestamps: true}); !strings.HasSuffix(got, " prepared\n") || strings.Count(got, "\n") != 1 {
		t.Errorf("side's last log line with its timestamp: got %q", got)
	}

	var out, errOut bytes.Buffer
	err := h.m.RunInContainer(ctx, "default", "web", "web", []string{"sh", "-c", "cat /shared/index; id -u; echo oops >&2; exit 3"}, attachIO{out: &out, err: &errOut})
	var ee utilexec.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
		t.Errorf("exec: got %v, want exit status 3", err)
	}
	if out.String() != "hello from a ConfigMap\n0\n" || errOut.String() != "oops\n" {
		t.Errorf("exec output: got %q and %q", out.String(), errOut.String())
	}

	pgids := recordedGroups(t, h.m.Dir)
	if len(pgids) != 2 {
		t.Fatalf("recorded process groups: %v, want one per running container", pgids)
	}
	start := time.Now()
	if err := h.m.DeletePod(ctx, p); err != nil {
		t.Fatal(err)
	}
	if pods, _ := h.m.GetPods(ctx); len(pods) != 0 {
		t.Errorf("GetPods after DeletePod: %d pods, want none", len(pods))
	}
	got = h.wait("web", "its containers terminated", func(p *corev1.Pod) bool {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Terminated == nil {
				return false
			}
		}
		return true
	})
	// web handles SIGTERM at once; side ignores it and is killed when the
	// grace period ends.
	if e := time.Since(start); e < 4*time.Second || e > 15*time.Second {
		t.Errorf("stopping took %s, want about the 5 s grace period", e)
	}
	for _, cs := range got.Status.ContainerStatuses {
		want := int32(0)
		if cs.Name == "side" {
			want = 137
		}
		if cs.State.Terminated.ExitCode != want {
			t.Errorf("%s exit code: got %d, want %d", cs.Name, cs.State.Terminated.ExitCode, want)
		}
	}
	for _, g := range pgids {
		if proot.Alive(g) {
			t.Errorf("process group %d still runs after the pod was deleted", g)
		}
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(h.m.Dir, "uid-web")); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Error("the pod's directory is still there after it was deleted")
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Restart policies: OnFailure restarts with back-off and counts restarts;
// Never leaves a failed pod Failed; a failing liveness probe restarts a
// container that still runs.
func TestRestartPolicies(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.m.CreatePod(ctx, pod("flaky", corev1.PodSpec{RestartPolicy: corev1.RestartPolicyOnFailure, Containers: []corev1.Container{sh("c", "echo run; exit 2")}})))
	must(h.m.CreatePod(ctx, pod("once", corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{sh("c", "exit 5")}})))
	must(h.m.CreatePod(ctx, pod("done", corev1.PodSpec{RestartPolicy: corev1.RestartPolicyOnFailure, Containers: []corev1.Container{sh("c", "exit 0")}})))
	live := sh("c", "sleep 1000")
	live.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"false"}}}, PeriodSeconds: 1, FailureThreshold: 2}
	must(h.m.CreatePod(ctx, pod("unhealthy", corev1.PodSpec{RestartPolicy: corev1.RestartPolicyAlways, Containers: []corev1.Container{live}})))

	flaky := h.wait("flaky", "2 restarts", func(p *corev1.Pod) bool { return p.Status.ContainerStatuses[0].RestartCount >= 2 })
	if lt := flaky.Status.ContainerStatuses[0].LastTerminationState.Terminated; lt == nil || lt.ExitCode != 2 {
		t.Errorf("flaky last termination: %+v, want exit 2", lt)
	}
	once := h.wait("once", "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if cs := once.Status.ContainerStatuses[0]; cs.RestartCount != 0 || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 5 {
		t.Errorf("once: %+v, want terminated with 5 and no restart", cs)
	}
	h.wait("done", "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	unhealthy := h.wait("unhealthy", "a restart", func(p *corev1.Pod) bool { return p.Status.ContainerStatuses[0].RestartCount >= 1 })
	if lt := unhealthy.Status.ContainerStatuses[0].LastTerminationState.Terminated; lt == nil || lt.Reason != "LivenessProbeFailed" {
		t.Errorf("unhealthy last termination: %+v, want LivenessProbeFailed", lt)
	}

	// An image that cannot be pulled is retried, whatever the policy.
	must(h.m.CreatePod(ctx, pod("noimage", corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "missing:1"}}})))
	h.wait("noimage", "ImagePullBackOff", func(p *corev1.Pod) bool {
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == "ImagePullBackOff" && strings.Contains(w.Message, "manifest unknown")
	})
	// A missing ConfigMap keeps the pod pending, saying why, until it exists.
	cm := sh("c", "cat /cfg/k; sleep 1000")
	cm.VolumeMounts = []corev1.VolumeMount{{Name: "cfg", MountPath: "/cfg"}}
	must(h.m.CreatePod(ctx, pod("later", corev1.PodSpec{Containers: []corev1.Container{cm}, Volumes: []corev1.Volume{
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "late"}}}},
	}})))
	h.wait("later", "CreateContainerConfigError", func(p *corev1.Pod) bool {
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == "CreateContainerConfigError" && strings.Contains(w.Message, `configmap "late"`)
	})
	h.obj.mu.Lock()
	h.obj.cms["late"] = &corev1.ConfigMap{Data: map[string]string{"k": "v"}}
	h.obj.mu.Unlock()
	h.wait("later", "Running", func(p *corev1.Pod) bool { return p.Status.ContainerStatuses[0].State.Running != nil })
}

func recordedGroups(t *testing.T, dir string) []int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*", "containers", "*", "pgid"))
	var out []int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		var g int
		if _, err := fmt.Sscan(string(b), &g); err == nil {
			out = append(out, g)
		}
	}
	return out
}

// attachIO is the client side of exec for tests.
type attachIO struct {
	in       io.Reader
	out, err io.Writer
}

func (a attachIO) Stdin() io.Reader { return a.in }
func (a attachIO) Stdout() io.WriteCloser {
	if a.out == nil {
		return nil
	}
	return nopCloser{a.out}
}
func (a attachIO) Stderr() io.WriteCloser {
	if a.err == nil {
		return nil
	}
	return nopCloser{a.err}
}
func (a attachIO) TTY() bool                   { return false }
func (a attachIO) Resize() <-chan api.TermSize { return nil }

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func imageConfig() v1.Config { return v1.Config{Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}} }

// A process group's CPU time and resident memory are read from procfs,
// its exited members' time included (their parent waited for them).
func TestReadGroups(t *testing.T) {
	cmd := exec.Command("sh", "-c", `sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done'; exec sleep 30`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		// The busy child has exited once the group's leader is sleep.
		// Just after its exec, before it has run, sleep has no memory
		// yet (seen on a loaded machine): the group is read until it has.
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
		var g groupUsage
		if strings.TrimSpace(string(comm)) == "sleep" {
			if g = readGroups("/proc")[cmd.Process.Pid]; g.rss > 0 {
				if g.cpu <= 0 {
					t.Errorf("group %d: cpu %s, rss %d; want the exited child's CPU time", cmd.Process.Pid, g.cpu, g.rss)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 20 s, the group was not seen with sleep as its leader and in memory: comm %q, cpu %s, rss %d", comm, g.cpu, g.rss)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
