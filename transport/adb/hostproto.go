package adb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/phonefarm/phonefarm/transport"
)

// DefaultServer is where the adb server listens unless told otherwise.
const DefaultServer = "127.0.0.1:5037"

// maxRequest bounds one host protocol request (the 4-digit hex length).
const maxRequest = 0xffff

// failError is a FAIL answer from the adb server (or, through it, from
// adbd), with the server's own words.
type failError struct {
	request string
	msg     string
}

func (e *failError) Error() string {
	return fmt.Sprintf("adb refused %s: %s", e.request, strings.TrimSpace(e.msg))
}

// dialServer connects to the adb server. The returned connection is closed
// when ctx ends; call stop once the work with it is done.
func dialServer(ctx context.Context, server string) (nc net.Conn, stop func() bool, err error) {
	var d net.Dialer
	nc, err = d.DialContext(ctx, "tcp", server)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("adb server at %s does not answer (start it with `adb start-server`): %w: %w",
			server, transport.ErrUnreachable, err)
	}
	return nc, context.AfterFunc(ctx, func() { nc.Close() }), nil
}

// request sends one host protocol request (4 hex digits of length, then
// the request) and reads OKAY, or FAIL and its message as *failError.
func request(nc net.Conn, req string) error {
	if len(req) > maxRequest {
		return fmt.Errorf("adb request of %d bytes is over the %d-byte limit", len(req), maxRequest)
	}
	if _, err := io.WriteString(nc, fmt.Sprintf("%04x%s", len(req), req)); err != nil {
		return fmt.Errorf("send %s: %w", shortReq(req), err)
	}
	var status [4]byte
	if _, err := io.ReadFull(nc, status[:]); err != nil {
		return fmt.Errorf("read answer to %s: %w", shortReq(req), err)
	}
	switch string(status[:]) {
	case "OKAY":
		return nil
	case "FAIL":
		msg, err := readHexMessage(nc)
		if err != nil {
			return fmt.Errorf("read failure of %s: %w", shortReq(req), err)
		}
		return &failError{request: shortReq(req), msg: msg}
	}
	return fmt.Errorf("answer to %s: got status %q, want OKAY or FAIL", shortReq(req), status[:])
}

// readHexMessage reads a message with a 4-hex-digit length prefix.
func readHexMessage(r io.Reader) (string, error) {
	var hexLen [4]byte
	if _, err := io.ReadFull(r, hexLen[:]); err != nil {
		return "", err
	}
	n, err := strconv.ParseUint(string(hexLen[:]), 16, 16)
	if err != nil {
		return "", fmt.Errorf("bad message length %q", hexLen[:])
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", err
	}
	return string(buf), nil
}

// query runs a host request that answers with one message, such as
// host:devices or host-serial:SERIAL:features.
func query(ctx context.Context, server, req string) (string, error) {
	nc, stop, err := dialServer(ctx, server)
	if err != nil {
		return "", err
	}
	defer stop()
	defer nc.Close()
	if err := request(nc, req); err != nil {
		return "", ctxErr(ctx, err)
	}
	msg, err := readHexMessage(nc)
	if err != nil {
		return "", ctxErr(ctx, fmt.Errorf("read answer to %s: %w", req, err))
	}
	return msg, nil
}

// ctxErr prefers the context's error: a connection closed because ctx ended
// should say so, not "use of closed network connection".
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

// shortReq keeps shell command lines out of error messages beyond a glance.
func shortReq(req string) string {
	if len(req) > 60 {
		return strconv.Quote(req[:57] + "...")
	}
	return strconv.Quote(req)
}
