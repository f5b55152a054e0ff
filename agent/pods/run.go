package pods

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podRun is one pod while the node runs it.
type podRun struct {
	m   *Manager
	dir string

	mu       sync.Mutex
	pod      *corev1.Pod
	inits    []*container
	mains    []*container
	prepared bool   // volumes and files in place
	setupErr string // why the pod cannot start its containers yet
	phase    corev1.PodPhase
	reason   string // a terminal phase's reason (DeadlineExceeded)
	message  string
	conds    map[corev1.PodConditionType]corev1.PodCondition

	ctx      context.Context // ends when the pod is stopped
	cancel   context.CancelFunc
	stopping bool
	stopped  chan struct{}
	wg       sync.WaitGroup // container supervisors
}

func newPodRun(m *Manager, pod *corev1.Pod) *podRun {
	ctx, cancel := context.WithCancel(context.Background())
	p := &podRun{m: m, pod: pod, dir: filepath.Join(m.Dir, string(pod.UID)), phase: corev1.PodPending, ctx: ctx, cancel: cancel, stopped: make(chan struct{})}
	for i := range pod.Spec.InitContainers {
		p.inits = append(p.inits, newContainer(p, pod.Spec.InitContainers[i], true))
	}
	for i := range pod.Spec.Containers {
		p.mains = append(p.mains, newContainer(p, pod.Spec.Containers[i], false))
	}
	now := metav1.NewTime(m.now())
	pod.Status.StartTime = &now
	return p
}

// run takes the pod from Pending through its init containers to its
// containers, until it completes or is stopped.
func (p *podRun) run(ctx context.Context) {
	p.changed()
	if !p.prepare() {
		return
	}
	go p.watchDeadline()
	for _, c := range p.inits {
		if !c.runToCompletion() {
			return // failed (restartPolicy Never) or stopped
		}
	}
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return
	}
	p.phase = corev1.PodRunning
	p.mu.Unlock()
	p.changed()
	for _, c := range p.mains {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			c.supervise()
		}()
	}
	p.wg.Wait()
	p.mu.Lock()
	if !p.stopping {
		p.phase = p.finalPhase()
	}
	p.mu.Unlock()
	p.changed()
}

// prepare lays out the pod's directory, volumes and network files,
// retrying while something it needs (a ConfigMap, a Secret) is missing.
func (p *podRun) prepare() bool {
	for attempt := 0; ; attempt++ {
		err := p.setUp(p.ctx)
		p.mu.Lock()
		if err == nil {
			p.prepared, p.setupErr = true, ""
			p.mu.Unlock()
			p.changed()
			return true
		}
		p.setupErr = err.Error()
		p.mu.Unlock()
		p.m.log().Warn("pod cannot start yet", "pod", key(p.pod.Namespace, p.pod.Name), "err", err)
		p.changed()
		select {
		case <-p.ctx.Done():
			return false
		case <-time.After(min(time.Duration(attempt+1)*2*time.Second, 30*time.Second)):
		}
	}
}

// setUp writes the pod's files: its directory, recorded for cleanup, the
// volumes and /etc files every container binds.
func (p *podRun) setUp(ctx context.Context) error {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	if err := p.writeNetworkFiles(); err != nil {
		return err
	}
	return p.setUpVolumes(ctx)
}

// watchDeadline fails the pod when activeDeadlineSeconds passes.
func (p *podRun) watchDeadline() {
	for {
		p.mu.Lock()
		d := p.pod.Spec.ActiveDeadlineSeconds
		start := p.pod.Status.StartTime.Time
		p.mu.Unlock()
		wait := time.Minute
		if d != nil {
			left := time.Until(start.Add(time.Duration(*d) * time.Second))
			if left <= 0 {
				p.mu.Lock()
				p.phase, p.reason = corev1.PodFailed, "DeadlineExceeded"
				p.message = fmt.Sprintf("Pod was active on the node longer than the specified deadline (%ds)", *d)
				p.mu.Unlock()
				p.stop(0, false)
				return
			}
			wait = min(wait, left)
		}
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// update takes a changed pod from the API.
func (p *podRun) update(pod *corev1.Pod) {
	p.mu.Lock()
	p.pod.Labels, p.pod.Annotations = pod.Labels, pod.Annotations
	p.pod.Spec.ActiveDeadlineSeconds = pod.Spec.ActiveDeadlineSeconds
	var restart []*container
	for _, c := range p.mains {
		for _, nc := range pod.Spec.Containers {
			if nc.Name == c.name() && nc.Image != c.spec().Image {
				c.setImage(nc.Image)
				restart = append(restart, c)
			}
		}
	}
	p.mu.Unlock()
	for _, c := range restart {
		c.kill("the container's image changed")
	}
	p.changed()
}

// stop ends every container (SIGTERM, SIGKILL after grace) and, with
// final, removes the pod's files.
func (p *podRun) stop(grace time.Duration, final bool) {
	p.mu.Lock()
	already := p.stopping
	p.stopping = true
	p.mu.Unlock()
	if !already {
		p.cancel()
		var wg sync.WaitGroup
		for _, c := range append(append([]*container{}, p.inits...), p.mains...) {
			wg.Add(1)
			go func() { defer wg.Done(); c.terminate(grace) }()
		}
		wg.Wait()
		p.wg.Wait()
		p.mu.Lock()
		if p.phase != corev1.PodFailed {
			p.phase = p.finalPhase()
		}
		p.mu.Unlock()
		p.changed()
		close(p.stopped)
	}
	<-p.stopped
	if final {
		if err := os.RemoveAll(p.dir); err != nil {
			p.m.log().Warn("remove pod directory", "dir", p.dir, "err", err)
		}
	}
}

// finalPhase is the phase once no container runs (caller holds mu):
// Failed when a container's last run failed, else Succeeded.
func (p *podRun) finalPhase() corev1.PodPhase {
	for _, c := range p.mains {
		st := c.statusNoLock()
		t := st.State.Terminated
		if t == nil {
			t = st.LastTerminationState.Terminated
		}
		if t != nil && t.ExitCode != 0 {
			return corev1.PodFailed
		}
	}
	return corev1.PodSucceeded
}

// changed pushes the pod's status to the API.
func (p *podRun) changed() { p.m.push(p.snapshot()) }

// containerID names a container's run for statuses.
func (p *podRun) containerID(name string, restarts int32) string {
	return "proot://" + string(p.pod.UID) + "-" + name + "-" + strconv.Itoa(int(restarts))
}

var errStopped = errors.New("the pod is stopping")
