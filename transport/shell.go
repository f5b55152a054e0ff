package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
)

// statusNotExist is the exit status the shell helpers use for a missing
// file (EX_NOINPUT), so callers can tell it from a failing command.
const statusNotExist = 66

var sha256Re = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ShellSha256 computes the SHA-256 of path with the host's sha256sum (GNU
// coreutils, busybox and toybox all have it). Hosts use it to implement
// Host.Sha256.
func ShellSha256(ctx context.Context, h Host, path string) (string, error) {
	q := Quote(path)
	out, err := Output(ctx, h, fmt.Sprintf("[ -e %s ] || exit %d; sha256sum %s", q, statusNotExist, q))
	if err != nil {
		return "", notExist(h, "sha256", path, err)
	}
	sum, _, _ := strings.Cut(strings.TrimSpace(out), " ")
	if !sha256Re.MatchString(sum) {
		return "", fmt.Errorf("sha256 of %s on %s: unexpected sha256sum output %q", path, h.Name(), shorten(out, 100))
	}
	return sum, nil
}

// ShellReadFile reads path with cat, for hosts whose file protocol cannot
// reach privileged files.
func ShellReadFile(ctx context.Context, h Host, path string) ([]byte, error) {
	q := Quote(path)
	var stdout, stderr bytes.Buffer
	err := h.Run(ctx, Command{Cmd: fmt.Sprintf("[ -e %s ] || exit %d; cat %s", q, statusNotExist, q), Stdout: &stdout, Stderr: &stderr})
	var ee *ExitError
	if errors.As(err, &ee) && ee.Stderr == "" {
		ee.Stderr = tail(stderr.String(), 2000)
	}
	if err != nil {
		return nil, notExist(h, "read", path, err)
	}
	return stdout.Bytes(), nil
}

func notExist(h Host, op, path string, err error) error {
	var ee *ExitError
	if errors.As(err, &ee) && ee.Status == statusNotExist {
		return fmt.Errorf("%s %s on %s: %w", op, path, h.Name(), fs.ErrNotExist)
	}
	return fmt.Errorf("%s %s on %s: %w", op, path, h.Name(), err)
}

// ContextReader makes reads from r fail once ctx is done, so a long upload
// stops when the user presses Ctrl-C.
func ContextReader(ctx context.Context, r interface{ Read([]byte) (int, error) }) *ctxReader {
	return &ctxReader{ctx: ctx, r: r}
}

type ctxReader struct {
	ctx context.Context
	r   interface{ Read([]byte) (int, error) }
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Runner runs commands; every Host is one. Packages that only run
// commands declare the same two methods as their own interface.
type Runner interface {
	Name() string
	Run(ctx context.Context, c Command) error
}

// RunScript runs a POSIX shell script on the host and returns its standard
// output. The script goes to `sh -s` on standard input, so its length is
// not limited by a command line; env is prefixed to the command, e.g.
// "VAR='value'" (quote values with Quote).
func RunScript(ctx context.Context, r Runner, env, script string) (string, error) {
	var stdout, stderr strings.Builder
	cmd := "sh -s"
	if env != "" {
		cmd = env + " " + cmd
	}
	err := r.Run(ctx, Command{Cmd: cmd, Stdin: strings.NewReader(script), Stdout: &stdout, Stderr: &stderr})
	var ee *ExitError
	if errors.As(err, &ee) && ee.Stderr == "" {
		ee.Stderr = tail(stderr.String(), 2000)
	}
	return stdout.String(), err
}
