package ssh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/phonefarm/phonefarm/transport"
)

// wrap applies the host's privilege escalation to a command line and tags
// the command's processes with run, an environment variable every
// descendant inherits, so a cancelled command can be found and killed.
func (h *Host) wrap(cmd, run string) string {
	if run != "" {
		cmd = "PHONEFARM_RUN=" + run + "; export PHONEFARM_RUN; " + cmd
	}
	switch h.become {
	case "sudo":
		return "sudo -n -- sh -c " + transport.Quote(cmd)
	case "doas":
		return "doas -n sh -c " + transport.Quote(cmd)
	}
	return "sh -c " + transport.Quote(cmd)
}

// newSession opens a session, giving up when ctx ends: on a connection
// whose phone vanished, opening blocks until keepalives notice.
func (h *Host) newSession(ctx context.Context) (*ssh.Session, error) {
	type result struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := h.client.NewSession()
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("%s: open session: %w: %w", h.cfg.Name, transport.ErrUnreachable, r.err)
		}
		return r.s, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, fmt.Errorf("%s: open session: %w", h.cfg.Name, ctx.Err())
	}
}

// killRun kills every process tagged with run. OpenSSH ignores signal
// requests for root logins and a signal could not reach commands run
// through sudo or doas anyway, so phonefarm finds the processes itself.
func (h *Host) killRun(ctx context.Context, run string) {
	sess, err := h.newSession(ctx)
	if err != nil {
		return
	}
	defer sess.Close()
	script := `for e in /proc/[0-9]*/environ; do tr '\000' '\n' < "$e" 2>/dev/null | grep -qx 'PHONEFARM_RUN=` + run + `' || continue; p=${e#/proc/}; kill -9 "${p%/environ}" 2>/dev/null; done; true`
	done := make(chan error, 1)
	go func() { done <- sess.Run(h.wrap(script, "")) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func newRunID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Run implements transport.Host. Cancelling ctx sends SIGKILL to the remote
// command and closes its channel.
func (h *Host) Run(ctx context.Context, c transport.Command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sess, err := h.newSession(ctx)
	if err != nil {
		return err
	}
	defer sess.Close()
	errTail := &tailBuffer{max: 4096}
	sess.Stdin = c.Stdin
	sess.Stdout = c.Stdout
	if c.Stdout == nil {
		sess.Stdout = io.Discard
	}
	sess.Stderr = errTail
	if c.Stderr != nil {
		sess.Stderr = io.MultiWriter(c.Stderr, errTail)
	}
	run := newRunID()
	h.log.Debug("run", "cmd", c.Cmd)
	if err := sess.Start(h.wrap(c.Cmd, run)); err != nil {
		return fmt.Errorf("%s: start %q: %w", h.cfg.Name, c.Cmd, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		h.killRun(kctx, run)
		cancel()
		sess.Close()
		return fmt.Errorf("%s: %q: %w", h.cfg.Name, c.Cmd, ctx.Err())
	}
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit):
		status := exit.ExitStatus()
		if exit.Signal() != "" {
			status = -1
		}
		return &transport.ExitError{Host: h.cfg.Name, Cmd: c.Cmd, Status: status, Stderr: errTail.String()}
	case errors.As(err, &missing), errors.Is(err, io.EOF):
		return fmt.Errorf("%s: connection lost while running %q: %w", h.cfg.Name, c.Cmd, transport.ErrUnreachable)
	default:
		return fmt.Errorf("%s: %q: %w", h.cfg.Name, c.Cmd, err)
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
