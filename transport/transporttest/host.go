// Package transporttest is an in-memory transport.Host for the failure
// paths a real phone cannot be made to take on demand: commands answer as
// a test scripts them, files live in a map, and faults (a command that
// fails, a write that breaks) are injected. It runs in microseconds, so a
// step's rollback is tested beside the real-part tests that prove the
// step itself on sshd and OpenRC.
package transporttest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"sort"
	"sync"

	"github.com/phonefarm/phonefarm/transport"
)

// Reply is what a scripted command does.
type Reply struct {
	Stdout, Stderr string
	// Status is the exit status; non-zero makes Run return a
	// *transport.ExitError.
	Status int
	// Err, when set, is returned as is (e.g. a connection that dropped).
	Err error
	// Do runs before the reply, with the host's files, for commands that
	// change them (rm, mv).
	Do func(h *Host)
}

type rule struct {
	re    *regexp.Regexp
	reply func(cmd string) Reply
}

// Host is an in-memory phone. The zero value is not usable; use New.
type Host struct {
	name string

	mu    sync.Mutex
	files map[string]file
	rules []rule
	log   []string
	// WriteErr, when set, fails every WriteFile for paths it returns an
	// error for, leaving the file as it was.
	writeErr func(path string) error
}

type file struct {
	mode fs.FileMode
	data []byte
}

var _ transport.Host = (*Host)(nil)

// New returns a host named name with no files, on which every command
// fails with status 127 until On scripts it.
func New(name string) *Host {
	return &Host{name: name, files: map[string]file{}}
}

// On scripts the commands matching the regular expression pattern; the
// last matching rule added wins.
func (h *Host) On(pattern string, reply Reply) *Host {
	return h.OnFunc(pattern, func(string) Reply { return reply })
}

// OnFunc scripts matching commands with a function of the command line.
func (h *Host) OnFunc(pattern string, reply func(cmd string) Reply) *Host {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rules = append(h.rules, rule{re: regexp.MustCompile(pattern), reply: reply})
	return h
}

// FailWrites makes WriteFile fail for the paths f returns an error for.
func (h *Host) FailWrites(f func(path string) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.writeErr = f
}

// SetFile puts a file on the host.
func (h *Host) SetFile(path string, mode fs.FileMode, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.files[path] = file{mode: mode, data: append([]byte(nil), data...)}
}

// RemoveFile deletes a file, as a scripted rm does.
func (h *Host) RemoveFile(path string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.files, path)
}

// File returns a file's content and whether it exists.
func (h *Host) File(path string) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.files[path]
	return f.data, ok
}

// Files lists the paths of every file, sorted.
func (h *Host) Files() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.files))
	for p := range h.files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Commands returns the command lines run so far, in order.
func (h *Host) Commands() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.log...)
}

func (h *Host) Name() string { return h.name }

func (h *Host) Describe() transport.Description {
	return transport.Description{Transport: "memory", Address: h.name}
}

func (h *Host) Close() error { return nil }

func (h *Host) Run(ctx context.Context, c transport.Command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h.mu.Lock()
	h.log = append(h.log, c.Cmd)
	var reply *Reply
	for i := len(h.rules) - 1; i >= 0; i-- {
		if h.rules[i].re.MatchString(c.Cmd) {
			r := h.rules[i].reply(c.Cmd)
			reply = &r
			break
		}
	}
	h.mu.Unlock()
	if reply == nil {
		reply = &Reply{Stderr: "sh: command not scripted\n", Status: 127}
	}
	if reply.Do != nil {
		reply.Do(h)
	}
	if reply.Err != nil {
		return reply.Err
	}
	if c.Stdout != nil {
		io.WriteString(c.Stdout, reply.Stdout)
	}
	if c.Stderr != nil {
		io.WriteString(c.Stderr, reply.Stderr)
	}
	if reply.Status != 0 {
		return &transport.ExitError{Host: h.name, Cmd: c.Cmd, Status: reply.Status}
	}
	return nil
}

// WriteFile replaces path whole, or (with an injected fault) leaves it
// as it was, as an atomic write does.
func (h *Host) WriteFile(ctx context.Context, path string, mode fs.FileMode, r io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.writeErr != nil {
		if err := h.writeErr(path); err != nil {
			return fmt.Errorf("write %s on %s: %w", path, h.name, err)
		}
	}
	h.files[path] = file{mode: mode, data: data}
	return nil
}

func (h *Host) ReadFile(ctx context.Context, path string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.files[path]
	if !ok {
		return nil, fmt.Errorf("read %s on %s: %w", path, h.name, fs.ErrNotExist)
	}
	return bytes.Clone(f.data), nil
}

func (h *Host) Sha256(ctx context.Context, path string) (string, error) {
	b, err := h.ReadFile(ctx, path)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}
