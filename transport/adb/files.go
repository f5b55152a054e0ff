package adb

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"time"

	"github.com/zach-klippenstein/goadb/wire"

	"github.com/phonefarm/phonefarm/transport"
)

// maxSyncPath is adbd's limit on a path in a sync request.
const maxSyncPath = 1024

// cleanupTimeout bounds removing a temporary file after a failed write.
const cleanupTimeout = 10 * time.Second

// syncConn is a connection switched to the sync protocol. Writes are
// buffered so a DATA header and its payload reach the server together.
type syncConn struct {
	nc  net.Conn
	bw  *bufio.Writer
	in  wire.SyncScanner
	out wire.SyncSender
}

func (h *Host) openSync(ctx context.Context) (*syncConn, func() bool, error) {
	nc, stop, err := h.open(ctx, "sync:")
	if err != nil {
		return nil, nil, err
	}
	bw := bufio.NewWriterSize(nc, 8+wire.SyncMaxChunkSize)
	return &syncConn{nc: nc, bw: bw, in: wire.NewSyncScanner(bufio.NewReaderSize(nc, 64*1024)), out: wire.NewSyncSender(bw)}, stop, nil
}

// request sends a sync request with a path argument.
func (s *syncConn) request(id, arg string) error {
	if len(arg) > maxSyncPath {
		return fmt.Errorf("path of %d bytes is over adb's %d-byte limit", len(arg), maxSyncPath)
	}
	if err := s.out.SendOctetString(id); err != nil {
		return err
	}
	return s.out.SendBytes([]byte(arg))
}

// quit ends the sync session politely; errors do not matter any more.
func (s *syncConn) quit() {
	s.out.SendOctetString("QUIT")
	s.out.SendInt32(0)
	s.bw.Flush()
}

// syncFailure returns the message of a sync FAIL answer, if err is one.
func syncFailure(err error) (string, bool) {
	var msg string
	ok := wire.IsAdbServerErrorMatching(err, func(s string) bool { msg = s; return true })
	return msg, ok
}

// syncError turns an error of the sync protocol into one phonefarm can
// branch on: FAIL "No such file or directory" wraps fs.ErrNotExist, and a
// broken connection wraps transport.ErrUnreachable.
func syncError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	if msg, ok := syncFailure(err); ok {
		if strings.Contains(msg, "No such file or directory") {
			return fmt.Errorf("%s: %s: %w", op, msg, fs.ErrNotExist)
		}
		return fmt.Errorf("%s: adbd: %s", op, msg)
	}
	return fmt.Errorf("%s: connection to the phone lost: %w: %v", op, transport.ErrUnreachable, err)
}

// WriteFile replaces path on the phone atomically: it pushes the content to
// PATH.phonefarm-tmp-RANDOM in the same directory, gives it mode, syncs and
// renames it over path with `mv -f`. If anything fails the temporary file
// is removed (when the phone can still be reached) and path is untouched.
func (h *Host) WriteFile(ctx context.Context, path string, mode fs.FileMode, r io.Reader) error {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := path + ".phonefarm-tmp-" + hex.EncodeToString(rnd[:])
	h.log.Debug("write file", "path", path, "tmp", tmp, "mode", mode)

	if err := h.push(ctx, tmp, mode, r); err != nil {
		h.removeTemp(ctx, tmp)
		return fmt.Errorf("%s: write %s: %w", h.name, path, err)
	}
	q, qt := transport.Quote(path), transport.Quote(tmp)
	script := fmt.Sprintf("chmod %04o %s && sync && mv -f %s %s || { s=$?; rm -f %s; exit $s; }",
		uint32(mode.Perm()), qt, qt, q, qt)
	var stderr bytes.Buffer
	if err := h.Run(ctx, transport.Command{Cmd: script, Stderr: &stderr}); err != nil {
		var ee *transport.ExitError
		if errors.As(err, &ee) {
			ee.Stderr = stderr.String()
		} else {
			h.removeTemp(ctx, tmp)
		}
		return fmt.Errorf("%s: write %s: rename into place: %w", h.name, path, err)
	}
	return nil
}

// push sends r to path on the phone with the sync protocol's SEND.
func (h *Host) push(ctx context.Context, path string, mode fs.FileMode, r io.Reader) error {
	sc, stop, err := h.openSync(ctx)
	if err != nil {
		return fmt.Errorf("push %s: %w", path, err)
	}
	defer sc.nc.Close()
	defer stop()

	if err := sc.request("SEND", fmt.Sprintf("%s,%d", path, uint32(mode.Perm()))); err != nil {
		return syncError(ctx, "push "+path, err)
	}
	// adbd answers once, after DONE, unless the transfer breaks first:
	// read the answer while sending, so a phone that vanished stops the
	// push instead of the rest of r being streamed into a dead connection.
	answer := make(chan error, 1)
	go func() { answer <- readSendAnswer(sc) }()
	buf := make([]byte, wire.SyncMaxChunkSize)
	for {
		select {
		case err := <-answer:
			if err == nil {
				err = errors.New("adbd answered OKAY before the file was complete")
			}
			return syncError(ctx, "push "+path, err)
		default:
		}
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if err := sc.out.SendOctetString("DATA"); err != nil {
				return syncError(ctx, "push "+path, err)
			}
			if err := sc.out.SendBytes(buf[:n]); err != nil {
				return syncError(ctx, "push "+path, err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("push %s: read content: %w", path, rerr)
		}
	}
	if err := sc.out.SendOctetString("DONE"); err != nil {
		return syncError(ctx, "push "+path, err)
	}
	if err := sc.out.SendTime(time.Now()); err != nil {
		return syncError(ctx, "push "+path, err)
	}
	if err := sc.bw.Flush(); err != nil {
		return syncError(ctx, "push "+path, err)
	}
	if err := <-answer; err != nil {
		return syncError(ctx, "push "+path, err)
	}
	sc.quit()
	return nil
}

// readSendAnswer reads adbd's answer to SEND: OKAY (and its zero length)
// or FAIL.
func readSendAnswer(sc *syncConn) error {
	status, err := sc.in.ReadStatus("SEND")
	if err != nil {
		return err
	}
	if status != "OKAY" {
		return fmt.Errorf("adbd answered %q, want OKAY", status)
	}
	_, err = sc.in.ReadString()
	return err
}

// removeTemp removes a temporary file after a failed write, even when ctx
// has ended. A phone that is gone keeps the file; adbd itself deletes a
// file whose transfer broke.
func (h *Host) removeTemp(ctx context.Context, tmp string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := h.Run(ctx, transport.Command{Cmd: "rm -f " + transport.Quote(tmp)}); err != nil {
		h.log.Debug("remove temporary file", "path", tmp, "err", err)
	}
}

// ReadFile pulls path from the phone with the sync protocol's RECV. A
// missing file is an error wrapping fs.ErrNotExist.
func (h *Host) ReadFile(ctx context.Context, path string) ([]byte, error) {
	h.log.Debug("read file", "path", path)
	sc, stop, err := h.openSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", h.name, path, err)
	}
	defer sc.nc.Close()
	defer stop()

	fail := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("%s: %w", h.name, syncError(ctx, "read "+path, err))
	}
	if err := sc.request("RECV", path); err != nil {
		return fail(err)
	}
	if err := sc.bw.Flush(); err != nil {
		return fail(err)
	}
	var content bytes.Buffer
	for {
		status, err := sc.in.ReadStatus("RECV")
		if err != nil {
			return fail(err)
		}
		switch status {
		case "DATA":
			chunk, err := sc.in.ReadBytes()
			if err != nil {
				return fail(err)
			}
			if _, err := content.ReadFrom(chunk); err != nil {
				return fail(err)
			}
		case "DONE":
			if _, err := sc.in.ReadInt32(); err != nil {
				return fail(err)
			}
			sc.quit()
			return content.Bytes(), nil
		default:
			return nil, fmt.Errorf("%s: read %s: adbd sent %q, want DATA or DONE", h.name, path, status)
		}
	}
}

// sha256Script prints the file's SHA-256 with whichever tool the phone has:
// sha256sum (toybox on Android 6.0+, coreutils or busybox elsewhere),
// `toybox sha256sum` or `busybox sha256sum`.
const sha256Script = `p=%s
if [ ! -e "$p" ]; then echo phonefarm-missing; exit 0; fi
if command -v sha256sum >/dev/null 2>&1; then sha256sum "$p"
elif command -v toybox >/dev/null 2>&1; then toybox sha256sum "$p"
elif command -v busybox >/dev/null 2>&1; then busybox sha256sum "$p"
else echo "no sha256sum, toybox or busybox on the phone" >&2; exit 127; fi`

// Sha256 returns the lower-case hex SHA-256 of path, computed on the phone.
func (h *Host) Sha256(ctx context.Context, path string) (string, error) {
	out, err := transport.Output(ctx, h, fmt.Sprintf(sha256Script, transport.Quote(path)))
	if err != nil {
		return "", fmt.Errorf("%s: sha256 of %s: %w", h.name, path, err)
	}
	fields := strings.Fields(out)
	switch {
	case len(fields) == 1 && fields[0] == "phonefarm-missing":
		return "", fmt.Errorf("%s: sha256 of %s: %w", h.name, path, fs.ErrNotExist)
	case len(fields) >= 1 && isSha256(fields[0]):
		return strings.ToLower(fields[0]), nil
	}
	return "", fmt.Errorf("%s: sha256 of %s: got %q from sha256sum, want a hex digest", h.name, path, out)
}

func isSha256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
