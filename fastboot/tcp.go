package fastboot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// DefaultTCPPort is the port fastboot over TCP listens on.
const DefaultTCPPort = 5554

// TCP is the fastboot TCP transport: a "FB01" handshake both ways, then
// every packet in either direction prefixed by its length as 8 bytes, big
// endian.
type TCP struct {
	conn net.Conn
	left int64 // bytes of the current incoming packet not yet read
}

// DialTCP connects to a device at addr ("host" or "host:port") and
// performs the handshake.
func DialTCP(ctx context.Context, addr string) (*TCP, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, strconv.Itoa(DefaultTCPPort))
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to fastboot at %s: %w", addr, err)
	}
	t, err := NewTCP(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("fastboot at %s: %w", addr, err)
	}
	return t, nil
}

// NewTCP performs the client handshake on conn.
func NewTCP(ctx context.Context, conn net.Conn) (*TCP, error) {
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write([]byte("FB01")); err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	var hs [4]byte
	if _, err := io.ReadFull(conn, hs[:]); err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if string(hs[:2]) != "FB" {
		return nil, fmt.Errorf("%w: handshake %q, want FBnn", ErrProtocol, hs[:])
	}
	if v, err := strconv.Atoi(string(hs[2:])); err != nil || v < 1 {
		return nil, fmt.Errorf("%w: handshake version %q", ErrProtocol, hs[2:])
	}
	return &TCP{conn: conn}, nil
}

// Write sends p as one packet.
func (t *TCP) Write(p []byte) (int, error) {
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(len(p)))
	if _, err := t.conn.Write(hdr[:]); err != nil {
		return 0, err
	}
	return t.conn.Write(p)
}

// Read reads from the current packet, or the next one when it is used up.
func (t *TCP) Read(p []byte) (int, error) {
	for t.left == 0 {
		var hdr [8]byte
		if _, err := io.ReadFull(t.conn, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, err
		}
		t.left = int64(binary.BigEndian.Uint64(hdr[:]))
	}
	n, err := t.conn.Read(p[:min(int64(len(p)), t.left)])
	t.left -= int64(n)
	return n, err
}

// Close closes the connection.
func (t *TCP) Close() error { return t.conn.Close() }

// SetDeadline interrupts blocked reads and writes at d.
func (t *TCP) SetDeadline(d time.Time) error { return t.conn.SetDeadline(d) }

// Open connects to the device named by serial: "tcp:HOST[:PORT]" for
// fastboot over TCP, otherwise a USB serial number; an empty serial picks
// the only USB device in fastboot mode.
func Open(ctx context.Context, serial string, opts Options) (*Client, error) {
	if addr, ok := strings.CutPrefix(serial, "tcp:"); ok {
		t, err := DialTCP(ctx, addr)
		if err != nil {
			return nil, err
		}
		if opts.Name == "" {
			opts.Name = serial
		}
		return New(t, opts), nil
	}
	t, name, err := openUSB(ctx, serial)
	if err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = name
	}
	return New(t, opts), nil
}
