// Package transport defines the one interface phonefarm's engine uses to talk
// to a phone, whatever carries the bytes: SSH (package transport/ssh), the adb
// server (transport/adb) or the local machine (transport/local).
//
// A Host runs shell commands and reads and writes files. Privilege escalation
// (sudo, doas) is a property of the host, chosen in the inventory, and applies
// to every command and file operation, so callers never prefix commands.
package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// Host is a machine phonefarm manages.
type Host interface {
	// Name is the inventory name of the phone; it appears in every error.
	Name() string
	// Run runs c.Cmd with /bin/sh -c on the host. A non-zero exit status is
	// returned as *ExitError. Cancelling ctx ends the remote command.
	Run(ctx context.Context, c Command) error
	// WriteFile replaces path atomically: the content goes to a temporary
	// file in the same directory, which is synced, given mode and renamed
	// over path. A failure at any point leaves the old file as it was.
	WriteFile(ctx context.Context, path string, mode fs.FileMode, r io.Reader) error
	// ReadFile returns the content of path; a missing file is an error
	// wrapping fs.ErrNotExist.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// Sha256 returns the lower-case hex SHA-256 of path; a missing file is an
	// error wrapping fs.ErrNotExist.
	Sha256(ctx context.Context, path string) (string, error)
	// Describe says how the host is reached, for logs and facts.
	Describe() Description
	// Close releases the connection.
	Close() error
}

// Command is one shell command line.
type Command struct {
	// Cmd is passed to /bin/sh -c on the host.
	Cmd    string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Description says what a Host is, without secrets.
type Description struct {
	Transport string `json:"transport"` // "ssh", "adb" or "local"
	Address   string `json:"address"`   // host:port, adb serial, or "localhost"
	User      string `json:"user,omitempty"`
	Become    string `json:"become,omitempty"` // "sudo", "doas" or ""
}

// ExitError is a command that ran and exited non-zero (or was killed by a
// signal, Status -1).
type ExitError struct {
	Host   string
	Cmd    string
	Status int
	// Stderr holds the tail of the command's standard error when the caller
	// did not collect it itself.
	Stderr string
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%s: command %q exited with status %d", e.Host, shorten(e.Cmd, 80), e.Status)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + shorten(s, 400)
	}
	return msg
}

// ErrUnreachable marks errors where the host could not be reached at all (as
// opposed to a command failing on it). Callers branch on it to report a phone
// as unreachable and go on with the others.
var ErrUnreachable = errors.New("host unreachable")

// Output runs cmd and returns its standard output. Standard error is kept and
// put into the *ExitError when the command fails.
func Output(ctx context.Context, h Host, cmd string) (string, error) {
	var stdout, stderr strings.Builder
	err := h.Run(ctx, Command{Cmd: cmd, Stdout: &stdout, Stderr: &stderr})
	var ee *ExitError
	if errors.As(err, &ee) && ee.Stderr == "" {
		ee.Stderr = tail(stderr.String(), 2000)
	}
	return stdout.String(), err
}

// Quote quotes s for a POSIX shell.
func Quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// QuoteArgs quotes each argument for a POSIX shell and joins them with
// spaces, as a command line.
func QuoteArgs(args ...string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = Quote(a)
	}
	return strings.Join(quoted, " ")
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
