package pods

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"golang.org/x/sys/unix"
	utilexec "k8s.io/utils/exec"

	"github.com/phonefarm/phonefarm/agent/proot"
)

func (p *podRun) container(name string) *container {
	for _, c := range append(append([]*container{}, p.mains...), p.inits...) {
		if c.name() == name {
			return c
		}
	}
	return nil
}

// running finds a running container of a pod.
func (m *Manager) running(namespace, pod, name string) (*container, error) {
	p := m.get(namespace, pod)
	if p == nil {
		return nil, errdefs.NotFoundf("pod %s/%s is not on this node", namespace, pod)
	}
	if name == "" && len(p.mains) > 0 {
		name = p.mains[0].name()
	}
	c := p.container(name)
	if c == nil {
		return nil, errdefs.NotFoundf("container %s is not in pod %s/%s", name, namespace, pod)
	}
	c.mu.Lock()
	running := c.proc != nil
	c.mu.Unlock()
	if !running {
		return nil, errdefs.InvalidInputf("container %s of pod %s/%s is not running", name, namespace, pod)
	}
	return c, nil
}

// execSpec is how to run cmd beside the container's process: the same
// root, environment, user and binds.
func (c *container) execSpec(ctx context.Context, cmd []string) (proot.Spec, error) {
	c.mu.Lock()
	img, spec := c.img, c.c
	c.mu.Unlock()
	if img == nil {
		return proot.Spec{}, errors.New("the container has not started")
	}
	s, err := c.p.procSpec(ctx, spec, img, c.dir+"/rootfs", c.dir)
	if err != nil {
		return proot.Spec{}, err
	}
	s.Argv = cmd
	return s, nil
}

// execQuiet runs cmd in the container and returns its exit code (for
// probes and hooks); it is killed when ctx ends.
func (c *container) execQuiet(ctx context.Context, cmd []string) (int, error) {
	s, err := c.execSpec(ctx, cmd)
	if err != nil {
		return 0, err
	}
	pc, err := c.p.m.Proot.Command(s)
	if err != nil {
		return 0, err
	}
	if err := pc.Start(); err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- pc.Wait() }()
	select {
	case err := <-done:
		return exitCode(err), nil
	case <-ctx.Done():
		_ = proot.Signal(pc.Process.Pid, syscall.SIGKILL)
		<-done
		return 0, ctx.Err()
	}
}

// RunInContainer runs cmd in a container, with a terminal when asked
// (kubectl exec -it), and returns its exit status as the kubelet does.
func (m *Manager) RunInContainer(ctx context.Context, namespace, podName, containerName string, cmd []string, attach api.AttachIO) error {
	c, err := m.running(namespace, podName, containerName)
	if err != nil {
		return err
	}
	s, err := c.execSpec(ctx, cmd)
	if err != nil {
		return err
	}
	pc, err := m.Proot.Command(s)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	if attach.TTY() {
		ptm, pts, err := openPTY()
		if err != nil {
			return fmt.Errorf("terminal: %w", err)
		}
		defer ptm.Close()
		pc.Stdin, pc.Stdout, pc.Stderr = pts, pts, pts
		pc.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
		if err := pc.Start(); err != nil {
			pts.Close()
			return err
		}
		pts.Close()
		if rs := attach.Resize(); rs != nil {
			go func() {
				for sz := range rs {
					_ = unix.IoctlSetWinsize(int(ptm.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: sz.Height, Col: sz.Width})
				}
			}()
		}
		if in := attach.Stdin(); in != nil {
			go func() { _, _ = io.Copy(ptm, in) }()
		}
		if out := attach.Stdout(); out != nil {
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = io.Copy(out, ptm) }()
		}
	} else {
		if in := attach.Stdin(); in != nil {
			stdin, err := pc.StdinPipe()
			if err != nil {
				return err
			}
			go func() { _, _ = io.Copy(stdin, in); stdin.Close() }()
		}
		if out := attach.Stdout(); out != nil {
			pc.Stdout = out
		}
		if e := attach.Stderr(); e != nil {
			pc.Stderr = e
		}
		if err := pc.Start(); err != nil {
			return err
		}
	}
	done := make(chan error, 1)
	go func() { done <- pc.Wait() }()
	var werr error
	select {
	case werr = <-done:
	case <-ctx.Done():
		_ = proot.Signal(pc.Process.Pid, syscall.SIGKILL)
		werr = <-done
	}
	wg.Wait()
	if code := exitCode(werr); code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

// AttachToContainer connects a client to a running container's output,
// and its input when the container keeps stdin open, until the container
// exits or the client leaves.
func (m *Manager) AttachToContainer(ctx context.Context, namespace, podName, containerName string, attach api.AttachIO) error {
	c, err := m.running(namespace, podName, containerName)
	if err != nil {
		return err
	}
	c.mu.Lock()
	proc, stdin := c.proc, c.stdin
	c.mu.Unlock()
	out, errw := attach.Stdout(), attach.Stderr()
	var mu sync.Mutex
	unsub := c.out.subscribe(func(stream string, p []byte) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case stream == "stderr" && errw != nil:
			_, _ = errw.Write(p)
		case out != nil:
			_, _ = out.Write(p)
		}
	})
	defer unsub()
	if in := attach.Stdin(); in != nil && stdin != nil {
		go func() { _, _ = io.Copy(stdin, in) }()
	}
	select {
	case <-proc.done:
	case <-ctx.Done():
	}
	return nil
}

// PortForward connects a stream to a port of the pod, which is the
// phone's own.
func (m *Manager) PortForward(ctx context.Context, namespace, podName string, port int32, stream io.ReadWriteCloser) error {
	if m.get(namespace, podName) == nil {
		return errdefs.NotFoundf("pod %s/%s is not on this node", namespace, podName)
	}
	defer stream.Close()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		return fmt.Errorf("port %d of pod %s/%s: %w", port, namespace, podName, err)
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, stream); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, conn); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// openPTY opens a pseudo-terminal pair through /dev/ptmx.
func openPTY() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, err
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, s, nil
}
