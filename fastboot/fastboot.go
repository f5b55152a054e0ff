// Package fastboot is a client for the Android fastboot protocol, the
// bootloader protocol phonefarm uses to unlock phones and flash
// postmarketOS onto them. It speaks to a device over TCP (tcp.go) or, on
// Linux, over USB through usbfs (usb_linux.go), without cgo.
//
// A command is an ASCII string; the device answers with zero or more INFO
// (or TEXT) messages, which are handed to Options.Info as they arrive, and
// then OKAY, FAIL or, for download, DATA. A FAIL comes back as a *FailError
// holding the device's reason verbatim.
package fastboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Transport carries fastboot packets. Write sends one command or one piece
// of download data; Read returns one response packet.
type Transport interface {
	io.ReadWriteCloser
}

// deadliner is implemented by transports that can interrupt a blocked read
// or write, so a cancelled context ends the call.
type deadliner interface {
	SetDeadline(time.Time) error
}

// Options configure a Client.
type Options struct {
	// Info receives each INFO and TEXT message of the device, verbatim.
	Info func(line string)
	// Logger receives debug logs of the commands sent; nil discards them.
	Logger *slog.Logger
	// Name identifies the device in errors and logs (a serial, "tcp:host:port").
	Name string
}

// Client talks to one device in fastboot mode. It is not safe for
// concurrent use: fastboot is one command at a time.
type Client struct {
	t    Transport
	opts Options
	log  *slog.Logger
}

// New returns a client over an open transport.
func New(t Transport, opts Options) *Client {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Name != "" {
		log = log.With("device", opts.Name)
	}
	return &Client{t: t, opts: opts, log: log}
}

// Close closes the transport.
func (c *Client) Close() error { return c.t.Close() }

// Name returns the device name given in Options.
func (c *Client) Name() string { return c.opts.Name }

// FailError is a command the device answered with FAIL.
type FailError struct {
	Command string
	// Reason is the device's message, verbatim.
	Reason string
}

func (e *FailError) Error() string {
	return fmt.Sprintf("%s: device says: %s", e.Command, e.Reason)
}

// ErrProtocol marks a response that does not follow the fastboot protocol.
var ErrProtocol = errors.New("fastboot protocol error")

// maxCommand is the longest command bootloaders accept.
const maxCommand = 4096

// responseSize is the largest response packet (FB_RESPONSE_SZ).
const responseSize = 256

// watch makes ctx cancellation interrupt blocked transport I/O.
func (c *Client) watch(ctx context.Context) (stop func()) {
	d, ok := c.t.(deadliner)
	if !ok {
		return func() {}
	}
	s := context.AfterFunc(ctx, func() { _ = d.SetDeadline(time.Unix(1, 0)) })
	return func() { s() }
}

func (c *Client) ioErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	return fmt.Errorf("%s: %w", what, err)
}

// send writes cmd and reads responses up to OKAY, FAIL or DATA. It returns
// the final response's kind and payload.
func (c *Client) send(ctx context.Context, cmd string) (kind, payload string, err error) {
	if len(cmd) > maxCommand {
		return "", "", fmt.Errorf("command %.20q... is longer than %d bytes", cmd, maxCommand)
	}
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	c.log.Debug("fastboot command", "cmd", cmd)
	stop := c.watch(ctx)
	defer stop()
	if _, err := c.t.Write([]byte(cmd)); err != nil {
		return "", "", c.ioErr(ctx, "send "+cmd, err)
	}
	return c.response(ctx, cmd)
}

func (c *Client) response(ctx context.Context, cmd string) (kind, payload string, err error) {
	buf := make([]byte, responseSize)
	for {
		n, err := c.t.Read(buf)
		if err != nil {
			return "", "", c.ioErr(ctx, "read response to "+cmd, err)
		}
		if n < 4 {
			return "", "", fmt.Errorf("%w: response %q to %s", ErrProtocol, buf[:n], cmd)
		}
		kind, payload := string(buf[:4]), string(buf[4:n])
		switch kind {
		case "INFO", "TEXT":
			c.log.Debug("fastboot info", "line", payload)
			if c.opts.Info != nil {
				c.opts.Info(payload)
			}
		case "OKAY", "DATA":
			return kind, payload, nil
		case "FAIL":
			return kind, payload, &FailError{Command: cmd, Reason: payload}
		default:
			return "", "", fmt.Errorf("%w: response %q to %s", ErrProtocol, buf[:n], cmd)
		}
	}
}

// Command sends cmd and returns the payload of the device's OKAY.
func (c *Client) Command(ctx context.Context, cmd string) (string, error) {
	kind, payload, err := c.send(ctx, cmd)
	if err != nil {
		return "", err
	}
	if kind != "OKAY" {
		return "", fmt.Errorf("%w: got %s to %s, want OKAY", ErrProtocol, kind, cmd)
	}
	return payload, nil
}

// GetVar returns a bootloader variable (product, unlocked,
// max-download-size, current-slot, has-slot:boot, partition-type:userdata,
// is-logical:system, ...).
func (c *Client) GetVar(ctx context.Context, name string) (string, error) {
	return c.Command(ctx, "getvar:"+name)
}

// Var is one line of `getvar all`.
type Var struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// GetVarAll returns every variable the device lists for `getvar all`, in
// its order. Names may contain colons (partition-size:boot).
func (c *Client) GetVarAll(ctx context.Context) ([]Var, error) {
	var vars []Var
	prev := c.opts.Info
	c.opts.Info = func(line string) {
		if prev != nil {
			prev(line)
		}
		vars = append(vars, parseVar(line))
	}
	defer func() { c.opts.Info = prev }()
	if _, err := c.GetVar(ctx, "all"); err != nil {
		return nil, err
	}
	return vars, nil
}

func parseVar(line string) Var {
	line = strings.TrimSpace(line)
	if i := strings.LastIndex(line, ": "); i >= 0 {
		return Var{Name: strings.TrimSpace(line[:i]), Value: strings.TrimSpace(line[i+2:])}
	}
	if i := strings.LastIndex(line, ":"); i >= 0 {
		return Var{Name: line[:i], Value: line[i+1:]}
	}
	return Var{Name: line}
}

// ParseSize parses a size as bootloaders print it: hex with 0x, or decimal.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		// Some bootloaders print hex without 0x.
		if n2, err2 := strconv.ParseInt(s, 16, 64); err2 == nil {
			return n2, nil
		}
		return 0, fmt.Errorf("parse size %q: %w", s, err)
	}
	return n, nil
}

// MaxDownloadSize returns getvar max-download-size in bytes.
func (c *Client) MaxDownloadSize(ctx context.Context) (int64, error) {
	v, err := c.GetVar(ctx, "max-download-size")
	if err != nil {
		return 0, err
	}
	n, err := ParseSize(v)
	if err != nil {
		return 0, fmt.Errorf("max-download-size: %w", err)
	}
	if n <= 0 {
		return 0, fmt.Errorf("max-download-size: got %d, want a positive size", n)
	}
	return n, nil
}

// Progress reports a transfer.
type Progress struct {
	// Partition is set while flashing.
	Partition string
	// Piece counts from 1 to Pieces when an image is sent in several
	// downloads.
	Piece, Pieces int
	// Sent and Total are bytes of the current download.
	Sent, Total int64
}

// chunkSize is how much download data goes into one transport write.
const chunkSize = 1 << 20

// Download sends size bytes from r into the device's download buffer.
func (c *Client) Download(ctx context.Context, r io.Reader, size int64, progress func(Progress)) error {
	return c.download(ctx, r, size, Progress{Piece: 1, Pieces: 1}, progress)
}

func (c *Client) download(ctx context.Context, r io.Reader, size int64, p Progress, progress func(Progress)) error {
	if size <= 0 || size > 0xffffffff {
		return fmt.Errorf("download of %d bytes: want 1 to 4294967295 bytes", size)
	}
	cmd := fmt.Sprintf("download:%08x", size)
	kind, payload, err := c.send(ctx, cmd)
	if err != nil {
		return err
	}
	if kind != "DATA" {
		return fmt.Errorf("%w: got %s to %s, want DATA", ErrProtocol, kind, cmd)
	}
	if n, err := strconv.ParseInt(payload, 16, 64); err != nil || n != size {
		return fmt.Errorf("%w: device accepts %q bytes for a download of %d", ErrProtocol, payload, size)
	}
	stop := c.watch(ctx)
	defer stop()
	p.Total = size
	if progress != nil {
		progress(p)
	}
	buf := make([]byte, chunkSize)
	for p.Sent < size {
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), size-p.Sent)])
		if err != nil {
			return fmt.Errorf("read download data at %d of %d: %w", p.Sent, size, err)
		}
		if _, err := c.t.Write(buf[:n]); err != nil {
			return c.ioErr(ctx, "send download data", err)
		}
		p.Sent += int64(n)
		if progress != nil {
			progress(p)
		}
	}
	kind, _, err = c.response(ctx, cmd)
	if err != nil {
		return err
	}
	if kind != "OKAY" {
		return fmt.Errorf("%w: got %s after download data, want OKAY", ErrProtocol, kind)
	}
	return nil
}

// Flash writes the downloaded data to partition.
func (c *Client) Flash(ctx context.Context, partition string) error {
	_, err := c.Command(ctx, "flash:"+partition)
	return err
}

// Erase erases partition.
func (c *Client) Erase(ctx context.Context, partition string) error {
	_, err := c.Command(ctx, "erase:"+partition)
	return err
}

// SetActive makes slot ("a" or "b") the active one.
func (c *Client) SetActive(ctx context.Context, slot string) error {
	_, err := c.Command(ctx, "set_active:"+slot)
	return err
}

// Reboot boots the device normally.
func (c *Client) Reboot(ctx context.Context) error {
	_, err := c.Command(ctx, "reboot")
	return err
}

// RebootBootloader reboots the device into its bootloader again.
func (c *Client) RebootBootloader(ctx context.Context) error {
	_, err := c.Command(ctx, "reboot-bootloader")
	return err
}

// OEM sends a vendor command, `oem ARGS...`; oem unlock CODE is one.
func (c *Client) OEM(ctx context.Context, args ...string) (string, error) {
	return c.Command(ctx, "oem "+strings.Join(args, " "))
}

// FlashingUnlock asks the bootloader to unlock. On a real phone this shows
// a confirmation screen (volume keys to choose, power to confirm) and wipes
// the phone when confirmed.
func (c *Client) FlashingUnlock(ctx context.Context) error {
	_, err := c.Command(ctx, "flashing unlock")
	return err
}
