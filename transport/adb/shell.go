package adb

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/phonefarm/phonefarm/transport"
)

// Shell protocol v2 packet ids: each packet is [id byte][uint32 LE
// length][data].
const (
	idStdin      = 0
	idStdout     = 1
	idStderr     = 2
	idExit       = 3
	idCloseStdin = 4
	// 5 is a terminal's window size, for pty sessions only.
)

// stdinChunk keeps stdin packets within the smallest adb payload (4 KiB,
// MAX_PAYLOAD_V1), which every adbd with shell v2 accepts.
const stdinChunk = 4096 - 5

// stderrTail is how much standard error an *ExitError keeps when the caller
// does not collect it.
const stderrTail = 2000

// Run runs c.Cmd on the phone with the phone's /bin/sh -c (adbd runs it
// with its shell). A non-zero exit status is an *transport.ExitError.
// Cancelling ctx closes the connection, and adbd then kills the command.
func (h *Host) Run(ctx context.Context, c transport.Command) error {
	cmd := shortCmd(c.Cmd)
	h.log.Debug("run", "cmd", cmd)
	nc, stop, err := h.open(ctx, "shell,v2,raw:"+c.Cmd)
	if err != nil {
		return fmt.Errorf("%s: run %q: %w", h.name, cmd, err)
	}
	defer nc.Close()
	defer stop()

	go sendStdin(nc, c.Stdin)

	var stdout, stderr io.Writer = io.Discard, new(tailBuffer)
	if c.Stdout != nil {
		stdout = callerWriter{c.Stdout}
	}
	if c.Stderr != nil {
		stderr = callerWriter{c.Stderr}
	}
	status, err := readShell(nc, stdout, stderr)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: run %q: %w", h.name, cmd, ctx.Err())
		}
		return fmt.Errorf("%s: run %q: %w", h.name, cmd, err)
	}
	h.log.Debug("ran", "cmd", cmd, "status", status)
	if status != 0 {
		return &transport.ExitError{Host: h.name, Cmd: c.Cmd, Status: status, Stderr: tailOf(stderr)}
	}
	return nil
}

// sendStdin copies r to the command as stdin packets and then closes its
// stdin. It ends early when the connection is gone. Like os/exec with a
// non-file Stdin, it may stay blocked in r.Read after the command ended.
func sendStdin(nc net.Conn, r io.Reader) {
	buf := make([]byte, 5+stdinChunk)
	if r != nil {
		for {
			n, err := r.Read(buf[5:])
			if n > 0 {
				buf[0] = idStdin
				binary.LittleEndian.PutUint32(buf[1:], uint32(n))
				if _, werr := nc.Write(buf[:5+n]); werr != nil {
					return
				}
			}
			if err != nil {
				break
			}
		}
	}
	buf[0] = idCloseStdin
	binary.LittleEndian.PutUint32(buf[1:], 0)
	nc.Write(buf[:5])
}

// readShell copies stdout and stderr packets until the exit packet and
// returns the exit status.
func readShell(nc net.Conn, stdout, stderr io.Writer) (int, error) {
	r := bufio.NewReaderSize(nc, 64*1024)
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return 0, connLost(err)
		}
		n := int64(binary.LittleEndian.Uint32(hdr[1:]))
		var w io.Writer
		switch hdr[0] {
		case idStdout:
			w = stdout
		case idStderr:
			w = stderr
		case idExit:
			var code [1]byte
			if n != 1 {
				return 0, fmt.Errorf("adb shell exit packet of %d bytes, want 1", n)
			}
			if _, err := io.ReadFull(r, code[:]); err != nil {
				return 0, connLost(err)
			}
			return int(code[0]), nil
		default:
			w = io.Discard
		}
		if _, err := io.CopyN(w, r, n); err != nil {
			var we *writeError
			if errors.As(err, &we) {
				return 0, we.err
			}
			return 0, connLost(err)
		}
	}
}

// connLost explains a connection that ended before the command did.
func connLost(err error) error {
	return fmt.Errorf("connection to the phone lost before the command finished: %w: %w", transport.ErrUnreachable, err)
}

// callerWriter marks errors of the caller's writer as *writeError.
type callerWriter struct{ w io.Writer }

func (c callerWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		err = &writeError{fmt.Errorf("write command output: %w", err)}
	}
	return n, err
}

// writeError marks a failure of the caller's writer, not of the connection.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

// tailBuffer keeps the last stderrTail bytes written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2*stderrTail {
		t.b = append(t.b[:0], t.b[len(t.b)-stderrTail:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	if len(t.b) > stderrTail {
		return string(t.b[len(t.b)-stderrTail:])
	}
	return string(t.b)
}

func tailOf(w io.Writer) string {
	if t, ok := w.(*tailBuffer); ok {
		return t.String()
	}
	return ""
}

// shortCmd keeps long scripts out of logs and errors beyond their start.
func shortCmd(cmd string) string {
	cmd = strings.Join(strings.Fields(cmd), " ")
	if len(cmd) > 80 {
		return cmd[:77] + "..."
	}
	return cmd
}
