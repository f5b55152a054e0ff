package pods

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/phonefarm/phonefarm/agent/image"
	"github.com/phonefarm/phonefarm/agent/proot"
)

// container is one container of a pod: its runs, restarts and status.
type container struct {
	p    *podRun
	init bool
	dir  string

	mu       sync.Mutex
	c        corev1.Container
	st       corev1.ContainerStatus
	proc     *process
	img      *image.Image
	restarts int32
	// killed says why the current run was killed (a liveness probe, a new
	// image), for its terminated state's reason.
	killed string
	out    *fanout // live output, for attach
	stdin  io.WriteCloser
}

// process is one run of a container.
type process struct {
	cmd     *exec.Cmd
	pgid    int
	started time.Time
	done    chan struct{}
	exit    int
	// sent is the last signal the agent sent it.
	mu   sync.Mutex
	sent syscall.Signal
}

func (p *process) signal(sig syscall.Signal, first bool) {
	p.mu.Lock()
	p.sent = sig
	p.mu.Unlock()
	if first {
		_ = proot.SignalFirst(p.pgid, sig)
	} else {
		_ = proot.Signal(p.pgid, sig)
	}
}

func newContainer(p *podRun, c corev1.Container, init bool) *container {
	ct := &container{p: p, init: init, c: c, dir: filepath.Join(p.dir, "containers", c.Name), out: newFanout()}
	reason := "ContainerCreating"
	if !init && len(p.pod.Spec.InitContainers) > 0 {
		reason = "PodInitializing"
	}
	ct.st = corev1.ContainerStatus{Name: c.Name, Image: c.Image, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}
	return ct
}

func (c *container) name() string { return c.c.Name }

func (c *container) spec() corev1.Container {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c
}

func (c *container) setImage(ref string) {
	c.mu.Lock()
	c.c.Image = ref
	c.st.Image = ref
	c.mu.Unlock()
}

func (c *container) status() corev1.ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.statusNoLock()
}

func (c *container) statusNoLock() corev1.ContainerStatus {
	st := *c.st.DeepCopy()
	st.RestartCount = c.restarts
	return st
}

func (c *container) setWaiting(reason, message string) {
	c.mu.Lock()
	c.st.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}
	c.st.Ready, c.st.Started = false, ptr(false)
	c.mu.Unlock()
	c.p.changed()
}

// supervise runs a main container and restarts it as its pod's
// restartPolicy says, with back-off, until the pod stops.
func (c *container) supervise() {
	policy := c.p.pod.Spec.RestartPolicy
	backoff := time.Duration(0)
	for {
		ran, code, err := c.runOnce()
		if c.p.ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			// Not started (image pull, setup): always retried.
		case policy == corev1.RestartPolicyNever:
			return
		case policy == corev1.RestartPolicyOnFailure && code == 0:
			return
		}
		if ran > 10*time.Minute {
			backoff = 0
		}
		backoff = c.p.m.nextBackoff(backoff)
		if err == nil {
			c.mu.Lock()
			c.restarts++
			last := c.st.State.Terminated
			c.st.LastTerminationState = corev1.ContainerState{Terminated: last}
			c.mu.Unlock()
			c.setWaiting("CrashLoopBackOff", fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", backoff, c.name(), c.p.pod.Name))
		}
		select {
		case <-c.p.ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// runToCompletion runs an init container until it exits 0, restarting it
// unless the pod's restartPolicy is Never. It reports whether the pod may
// go on.
func (c *container) runToCompletion() bool {
	backoff := time.Duration(0)
	for {
		_, code, err := c.runOnce()
		if c.p.ctx.Err() != nil {
			return false
		}
		if err == nil && code == 0 {
			return true
		}
		if err == nil && c.p.pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			c.p.mu.Lock()
			c.p.phase = corev1.PodFailed
			c.p.mu.Unlock()
			c.p.changed()
			return false
		}
		backoff = c.p.m.nextBackoff(backoff)
		if err == nil {
			c.mu.Lock()
			c.restarts++
			c.st.LastTerminationState = corev1.ContainerState{Terminated: c.st.State.Terminated}
			c.mu.Unlock()
			c.setWaiting("CrashLoopBackOff", fmt.Sprintf("back-off %s restarting failed init container=%s pod=%s", backoff, c.name(), c.p.pod.Name))
		}
		select {
		case <-c.p.ctx.Done():
			return false
		case <-time.After(backoff):
		}
	}
}

func (m *Manager) nextBackoff(prev time.Duration) time.Duration {
	base, limit := m.BackoffBase, m.BackoffMax
	if base == 0 {
		base = 10 * time.Second
	}
	if limit == 0 {
		limit = 5 * time.Minute
	}
	if prev == 0 {
		return base
	}
	return min(2*prev, limit)
}

// runOnce pulls the image, makes a fresh root, runs the container to its
// exit and records it. err means it never started.
func (c *container) runOnce() (time.Duration, int, error) {
	ctx := c.p.ctx
	spec := c.spec()
	img, err := c.pull(ctx, spec)
	if err != nil {
		return 0, 0, err
	}
	proc, err := c.start(ctx, spec, img)
	if err != nil {
		if ctx.Err() == nil {
			c.setWaiting("CreateContainerError", err.Error())
		}
		return 0, 0, err
	}
	probeCtx, stopProbes := context.WithCancel(ctx)
	go c.probe(probeCtx, proc)
	if h := spec.Lifecycle; h != nil && h.PostStart != nil {
		if err := c.hook(ctx, h.PostStart, time.Duration(30)*time.Second); err != nil {
			c.p.m.log().Warn("postStart hook failed; killing the container", "pod", c.p.pod.Name, "container", spec.Name, "err", err)
			c.kill("FailedPostStartHook")
		}
	}
	<-proc.done
	stopProbes()
	finished := c.p.m.now()
	c.mu.Lock()
	reason := "Completed"
	if proc.exit != 0 {
		reason = "Error"
	}
	if c.killed != "" {
		reason, c.killed = c.killed, ""
	}
	started := c.st.State.Running
	startedAt := metav1.NewTime(proc.started)
	if started != nil {
		startedAt = started.StartedAt
	}
	c.st.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: int32(proc.exit), Reason: reason, Message: c.terminationMessage(spec, proc.exit),
		StartedAt: startedAt, FinishedAt: metav1.NewTime(finished), ContainerID: c.st.ContainerID,
	}}
	c.st.Ready, c.st.Started = false, ptr(false)
	c.proc = nil
	if c.stdin != nil {
		c.stdin.Close()
		c.stdin = nil
	}
	c.mu.Unlock()
	c.p.changed()
	return time.Since(proc.started), proc.exit, nil
}

// pull gets the container's image as its pull policy says.
func (c *container) pull(ctx context.Context, spec corev1.Container) (*image.Image, error) {
	policy := spec.ImagePullPolicy
	if policy == "" {
		policy = corev1.PullIfNotPresent
		if strings.HasSuffix(spec.Image, ":latest") || !strings.Contains(lastPart(spec.Image), ":") && !strings.Contains(spec.Image, "@") {
			policy = corev1.PullAlways
		}
	}
	if policy == corev1.PullNever {
		img, err := c.p.m.Images.Cached(spec.Image)
		if err != nil {
			c.setWaiting("ErrImageNeverPull", fmt.Sprintf("Container image %q is not present with pull policy of Never", spec.Image))
			return nil, err
		}
		c.setImg(img)
		return img, nil
	}
	secrets, err := c.p.pullSecrets(ctx)
	if err != nil {
		c.p.m.log().Warn("image pull secrets", "pod", c.p.pod.Name, "err", err)
	}
	img, err := c.p.m.Images.Pull(ctx, spec.Image, secrets, policy == corev1.PullAlways)
	if err != nil {
		if ctx.Err() == nil {
			c.mu.Lock()
			reason := "ErrImagePull"
			if w := c.st.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
				reason = "ImagePullBackOff"
			}
			c.mu.Unlock()
			c.setWaiting(reason, err.Error())
		}
		return nil, err
	}
	c.setImg(img)
	return img, nil
}

func (c *container) setImg(img *image.Image) {
	c.mu.Lock()
	c.img = img
	c.st.ImageID = img.Digest
	c.mu.Unlock()
}

func lastPart(ref string) string { return ref[strings.LastIndex(ref, "/")+1:] }

// start makes the container's root (a fresh copy of the image) and starts
// its process under proot.
func (c *container) start(ctx context.Context, spec corev1.Container, img *image.Image) (*process, error) {
	c.mu.Lock()
	restarts := c.restarts
	c.mu.Unlock()
	root := filepath.Join(c.dir, "rootfs")
	if err := os.RemoveAll(root); err != nil {
		return nil, err
	}
	if err := copyTree(img.RootFS, root); err != nil {
		return nil, fmt.Errorf("make the container's root from %s: %w", spec.Image, err)
	}
	ps, err := c.p.procSpec(ctx, spec, img, root, c.dir)
	if err != nil {
		return nil, err
	}
	cmd, err := c.p.m.Proot.Command(ps)
	if err != nil {
		return nil, err
	}
	logFile := filepath.Join(c.dir, "logs", strconv.Itoa(int(restarts))+".log")
	lw, err := newLogWriter(logFile, c.p.m.now)
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.MultiWriter(lw.stream("stdout"), c.out.stream("stdout"))
	cmd.Stderr = io.MultiWriter(lw.stream("stderr"), c.out.stream("stderr"))
	var stdin io.WriteCloser
	if spec.Stdin {
		if stdin, err = cmd.StdinPipe(); err != nil {
			lw.Close()
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		lw.Close()
		return nil, fmt.Errorf("start proot: %w", err)
	}
	proc := &process{cmd: cmd, pgid: cmd.Process.Pid, started: c.p.m.now(), done: make(chan struct{})}
	_ = os.WriteFile(filepath.Join(c.dir, "pgid"), []byte(strconv.Itoa(proc.pgid)), 0o644)
	go func() {
		err := cmd.Wait()
		proc.mu.Lock()
		proc.exit = proot.ExitCode(exitCode(err), proc.sent)
		proc.mu.Unlock()
		lw.Close()
		_ = os.Remove(filepath.Join(c.dir, "pgid"))
		close(proc.done)
	}()
	c.mu.Lock()
	c.proc, c.stdin = proc, stdin
	c.st.ContainerID = c.p.containerID(spec.Name, restarts)
	c.st.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(proc.started)}}
	// Without a startup probe a container counts as started at once;
	// without a readiness probe, as ready.
	c.st.Started = ptr(spec.StartupProbe == nil)
	c.st.Ready = spec.ReadinessProbe == nil && spec.StartupProbe == nil && !c.init
	c.mu.Unlock()
	c.p.changed()
	return proc, nil
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return 128 + int(st.Signal())
		}
		return ee.ExitCode()
	}
	return 128
}

// terminationMessage reads what the container left at its
// terminationMessagePath, or its log's end when it failed and the policy
// says so; at most 4 kB, as the kubelet keeps.
func (c *container) terminationMessage(spec corev1.Container, exit int) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "termination-log"))
	if len(b) == 0 && exit != 0 && spec.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
		b = lastLogLines(c.dir, 80, 2048)
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// kill stops the current run at once (a failed liveness probe, a new
// image); the supervisor restarts it as the policy says.
func (c *container) kill(reason string) {
	c.mu.Lock()
	proc := c.proc
	if proc != nil {
		c.killed = reason
	}
	c.mu.Unlock()
	if proc == nil {
		return
	}
	grace := 30 * time.Second
	if g := c.p.pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	stopProcess(proc, grace)
}

// terminate runs the preStop hook, then stops the current run: SIGTERM
// to its process group, SIGKILL once grace has passed.
func (c *container) terminate(grace time.Duration) {
	c.mu.Lock()
	proc, spec := c.proc, c.c
	c.mu.Unlock()
	if proc == nil {
		return
	}
	deadline := time.Now().Add(grace)
	if h := spec.Lifecycle; h != nil && h.PreStop != nil && grace > 0 {
		if err := c.hook(context.Background(), h.PreStop, grace); err != nil {
			c.p.m.log().Warn("preStop hook failed", "pod", c.p.pod.Name, "container", spec.Name, "err", err)
		}
	}
	stopProcess(proc, max(time.Until(deadline), 0))
}

// stopProcess sends SIGTERM to a run's first process, then SIGKILL to all
// of it after grace, and waits until nothing of it is left.
func stopProcess(proc *process, grace time.Duration) {
	proc.signal(syscall.SIGTERM, true)
	select {
	case <-proc.done:
	case <-time.After(grace):
	}
	for i := 0; proot.Alive(proc.pgid) && i < 100; i++ {
		proc.signal(syscall.SIGKILL, false)
		time.Sleep(20 * time.Millisecond)
	}
	<-proc.done
}

// killRecorded kills the process groups a killed agent left in a pod
// directory.
func killRecorded(podDir string) {
	pids, _ := filepath.Glob(filepath.Join(podDir, "containers", "*", "pgid"))
	for _, f := range pids {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pgid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pgid > 1 {
			for i := 0; proot.Alive(pgid) && i < 100; i++ {
				_ = proot.Signal(pgid, syscall.SIGKILL)
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }
