// Package adb is phonefarm's transport.Host for stock Android phones without
// root: everything goes through the adb server (the one `adb start-server`
// runs, on 127.0.0.1:5037 unless configured), which carries it over USB or
// adb over Wi-Fi to adbd on the phone.
//
// Commands use adb's shell protocol v2 (service `shell,v2,raw:CMD`, Android
// 7.0 and newer): framed stdin, stdout, stderr and the exit status, so Run
// reports exit statuses and keeps stderr apart. Closing the connection to
// the server makes adbd hang up on the command, which is how a cancelled
// context stops it. Files move with the sync protocol: WriteFile pushes to
// `PATH.phonefarm-tmp-RANDOM` and then renames it over PATH with `mv -f` in a
// shell, because adbd writes a pushed file in place and deletes it when a
// transfer breaks; ReadFile pulls with RECV.
//
// # Library choice
//
// Of the two Go adb client libraries available, this package builds on
// github.com/zach-klippenstein/goadb, the one the project guide names, and
// extends it with what it lacks. Only goadb's wire package is used: its
// sync protocol framing (wire.SyncScanner, wire.SyncSender) reads and writes
// any io.Reader/io.Writer, so it runs over a connection this package dials
// itself with a context. The rest is added here:
//
//   - shell protocol v2 (goadb's RunCommand has no exit status, no stdin and
//     merges stderr into stdout);
//   - the host request framing: goadb's wire.Sender refuses requests over
//     255 bytes and its Scanner cuts answers at 255 bytes, too small for
//     shell command lines and `host:devices` on a farm;
//   - contexts and cancellation (goadb has none; it also looks up and starts
//     a local adb binary when dialling, which a remote server does not want);
//   - device states with advice: unauthorized, offline and absent phones.
//
// github.com/electricbubble/gadb v0.1.0 was the alternative. Its host
// protocol plumbing (transport, syncTransport) is unexported, so building on
// it means copying it; it has no contexts, a package-level mutable read
// timeout of 60 seconds that also cuts off shell commands running longer,
// no exit status, no stdin, and its DeviceList drops phones that are
// unauthorized or offline, exactly the ones phonefarm must explain.
//
// Phones older than Android 7.0 lack shell protocol v2; Dial refuses them
// with an error saying so rather than running commands whose failures
// cannot be seen.
package adb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"

	"github.com/phonefarm/phonefarm/transport"
)

// Config says how to reach one phone through an adb server.
type Config struct {
	// Name is the phone's inventory name, used in errors and logs; the
	// serial when empty.
	Name string
	// Serial is the adb serial: what `adb devices` lists, a USB serial
	// number or host:port for adb over Wi-Fi.
	Serial string
	// Server is the adb server's host:port; DefaultServer when empty.
	Server string
	// Logger receives debug events with a "host" attribute; default
	// discards.
	Logger *slog.Logger
}

// Host is a phone reached through the adb server. Each operation opens its
// own connection to the server, so a Host may be used from several
// goroutines.
type Host struct {
	name     string
	serial   string
	server   string
	log      *slog.Logger
	features map[string]bool
	closed   atomic.Bool
}

var _ transport.Host = (*Host)(nil)

// Dial checks that the phone is attached to the adb server, authorized and
// online, and that its adbd speaks shell protocol v2. Errors for phones
// that cannot be reached wrap transport.ErrUnreachable and say what to do.
func Dial(ctx context.Context, cfg Config) (*Host, error) {
	if cfg.Serial == "" {
		return nil, fmt.Errorf("adb host %q: no serial configured (see `adb devices`)", cfg.Name)
	}
	h := &Host{name: cfg.Name, serial: cfg.Serial, server: cfg.Server}
	if h.name == "" {
		h.name = cfg.Serial
	}
	if h.server == "" {
		h.server = DefaultServer
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h.log = log.With("host", h.name)

	if err := h.checkState(ctx); err != nil {
		return nil, err
	}
	feats, err := query(ctx, h.server, "host-serial:"+h.serial+":features")
	if err != nil {
		return nil, fmt.Errorf("%s: read adb features: %w", h.name, h.deviceError(ctx, err))
	}
	h.features = map[string]bool{}
	for f := range strings.SplitSeq(strings.TrimSpace(feats), ",") {
		h.features[f] = true
	}
	if !h.features["shell_v2"] {
		return nil, fmt.Errorf("%s: adbd on the phone (serial %s) lacks shell protocol v2, which needs Android 7.0 or newer; "+
			"phonefarm needs it to see exit statuses (features: %s)", h.name, h.serial, feats)
	}
	h.log.Debug("adb phone online", "serial", h.serial, "server", h.server)
	return h, nil
}

// Name is the phone's inventory name.
func (h *Host) Name() string { return h.name }

// Describe says the phone is reached over adb by its serial.
func (h *Host) Describe() transport.Description {
	return transport.Description{Transport: "adb", Address: h.serial}
}

// Close marks the Host closed. It holds no connection between operations.
func (h *Host) Close() error {
	h.closed.Store(true)
	return nil
}

// checkState asks the server for the phone's state.
func (h *Host) checkState(ctx context.Context) error {
	state, err := query(ctx, h.server, "host-serial:"+h.serial+":get-state")
	if err != nil {
		return fmt.Errorf("%s: %w", h.name, h.deviceError(ctx, err))
	}
	if state = strings.TrimSpace(state); state != "device" {
		return fmt.Errorf("%s: %w", h.name, h.stateError(state, ""))
	}
	return nil
}

// deviceError turns the server's refusal to reach the phone into an error
// that says what to do. Other errors pass through.
func (h *Host) deviceError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	var fe *failError
	if !errors.As(err, &fe) {
		return err
	}
	msg := strings.ToLower(fe.msg)
	switch {
	case strings.Contains(msg, "unauthorized"):
		return h.stateError("unauthorized", fe.msg)
	case strings.Contains(msg, "offline"):
		return h.stateError("offline", fe.msg)
	case strings.Contains(msg, "authorizing"):
		return h.stateError("authorizing", fe.msg)
	case strings.Contains(msg, "connecting"):
		return h.stateError("connecting", fe.msg)
	case strings.Contains(msg, "not found"), strings.Contains(msg, "no devices"):
		return h.stateError("absent", fe.msg)
	}
	return err
}

// stateError explains a phone the server knows in a state other than
// "device". It wraps transport.ErrUnreachable.
func (h *Host) stateError(state, serverMsg string) error {
	var advice string
	switch state {
	case "unauthorized", "authorizing":
		advice = "the phone has not authorized this computer: unlock it and accept the \"Allow USB debugging?\" prompt " +
			"(tick \"Always allow from this computer\"); if no prompt shows, revoke USB debugging authorizations in " +
			"Developer options and reconnect"
	case "offline":
		advice = "the adb server reaches the phone but adbd does not answer: unlock the phone, reconnect the USB cable " +
			"or run `adb reconnect`; for adb over Wi-Fi run `adb disconnect` and `adb connect` again"
	case "connecting":
		advice = "the adb server is still connecting to the phone: retry in a few seconds"
	case "absent":
		advice = "the adb server does not know the phone: plug it in with USB debugging enabled " +
			"(Settings > Developer options), or for adb over Wi-Fi run `adb connect " + h.serial + "`; `adb devices` lists what the server sees"
	default:
		advice = "`adb devices` shows it as " + state
	}
	msg := fmt.Sprintf("phone with adb serial %s (adb server %s) is %s: %s", h.serial, h.server, state, advice)
	if serverMsg != "" {
		msg += " (adb: " + strings.Join(strings.Fields(serverMsg), " ") + ")"
	}
	return fmt.Errorf("%s: %w", msg, transport.ErrUnreachable)
}

// open connects to the server, switches the connection to the phone and
// opens service on it. The connection closes when ctx ends; call stop when
// done with it, then close it.
func (h *Host) open(ctx context.Context, service string) (net.Conn, func() bool, error) {
	if h.closed.Load() {
		return nil, nil, errors.New("adb host is closed")
	}
	nc, stop, err := dialServer(ctx, h.server)
	if err != nil {
		return nil, nil, err
	}
	if err := request(nc, "host:transport:"+h.serial); err != nil {
		stop()
		nc.Close()
		return nil, nil, ctxErr(ctx, h.deviceError(ctx, err))
	}
	if err := request(nc, service); err != nil {
		stop()
		nc.Close()
		var fe *failError
		if errors.As(err, &fe) {
			// A phone that vanished between the two requests shows
			// up here as a closed stream.
			return nil, nil, ctxErr(ctx, fmt.Errorf("open adb service on the phone: %w", err))
		}
		return nil, nil, ctxErr(ctx, fmt.Errorf("open adb service on the phone: %w: %w", transport.ErrUnreachable, err))
	}
	return nc, stop, nil
}

// Connect asks the adb server at server (DefaultServer when empty) to
// connect to a phone over TCP, like `adb connect addr` (adb over Wi-Fi).
// Connecting to a phone that is already connected is not an error. A phone
// that answers but has not authorized this computer, or does not answer,
// gives an error wrapping transport.ErrUnreachable that says what to do.
func Connect(ctx context.Context, server, addr string) error {
	if server == "" {
		server = DefaultServer
	}
	msg, err := query(ctx, server, "host:connect:"+addr)
	if err != nil {
		return fmt.Errorf("adb connect %s: %w", addr, err)
	}
	msg = strings.TrimSpace(msg)
	switch {
	case strings.HasPrefix(msg, "connected to"), strings.HasPrefix(msg, "already connected to"):
		return nil
	case strings.HasPrefix(msg, "failed to authenticate"):
		return fmt.Errorf("adb connect %s: the phone has not authorized this computer: accept the \"Allow USB debugging?\" "+
			"prompt on the phone, then retry (adb: %s): %w", addr, msg, transport.ErrUnreachable)
	}
	return fmt.Errorf("adb connect %s: %s (is wireless debugging or `adb tcpip` enabled on the phone, and is the address right?): %w",
		addr, msg, transport.ErrUnreachable)
}

// Device is one device the adb server knows.
type Device struct {
	Serial string
	// State is "device" when usable, else "unauthorized", "offline", ...
	State string
	// Model, Product and Device are what the server reports, when it does.
	Model, Product, Device string
}

// Devices lists the devices the adb server at server (DefaultServer when
// empty) knows, as adb devices -l does.
func Devices(ctx context.Context, server string) ([]Device, error) {
	if server == "" {
		server = DefaultServer
	}
	out, err := query(ctx, server, "host:devices-l")
	if err != nil {
		return nil, fmt.Errorf("list adb devices at %s: %w", server, err)
	}
	return parseDevices(out), nil
}

// parseDevices reads host:devices-l's answer: one device per line, its
// serial, state and key:value details.
func parseDevices(out string) []Device {
	var ds []Device
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		d := Device{Serial: f[0], State: f[1]}
		for _, kv := range f[2:] {
			k, v, _ := strings.Cut(kv, ":")
			switch k {
			case "model":
				d.Model = strings.ReplaceAll(v, "_", " ")
			case "product":
				d.Product = v
			case "device":
				d.Device = v
			}
		}
		ds = append(ds, d)
	}
	return ds
}
