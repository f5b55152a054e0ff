// Package adbemu is the device side of adb (what adbd is on a phone), small
// enough for tests: it speaks the adb transport protocol over TCP, so the
// real adb server can `adb connect` to it and every phonefarm code path that
// talks to the adb server is exercised against a real server.
//
// The emulated phone is this machine: shell commands run here with /bin/sh
// and file paths are real paths (tests use temporary directories). A
// generated getprop script, first on PATH, answers the configured system
// properties. Implemented services: `shell,v2,...:CMD` (exit status, stdin,
// separate stderr), legacy `shell:CMD`, and `sync:` (STAT, STA2, LST2, LIST,
// SEND, RECV, QUIT). The banner advertises only those features.
//
// A Device can also play a phone that has not authorized this computer
// (Unauthorized) or one that never finishes the handshake (Offline), and
// Drop cuts every connection, like a cable pulled mid-transfer.
package adbemu

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// State is how the emulated phone answers the adb server's handshake.
type State int

const (
	// Authorized completes the handshake: `adb devices` shows "device".
	Authorized State = iota
	// Unauthorized answers CNXN with AUTH TOKEN and never accepts a
	// signature or public key: `adb devices` shows "unauthorized", as for a
	// phone whose USB debugging prompt was never accepted.
	Unauthorized
	// Offline accepts the TCP connection and never answers CNXN:
	// `adb devices` shows "offline".
	Offline
)

func (s State) String() string {
	switch s {
	case Authorized:
		return "authorized"
	case Unauthorized:
		return "unauthorized"
	case Offline:
		return "offline"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// DefaultFeatures are the adb features the emulator implements and
// advertises in its banner.
var DefaultFeatures = []string{"shell_v2", "stat_v2", "fixed_push_mkdir", "fixed_push_symlink_timestamp"}

// Options configure an emulated phone.
type Options struct {
	// State is the handshake behaviour; the zero value is Authorized.
	State State
	// Properties answer getprop. Missing keys get defaults from
	// DefaultProperties; the banner's product name, model and device
	// come from here too.
	Properties map[string]string
	// Dumpsys answers `dumpsys SERVICE` with the text given for the
	// service (e.g. "battery", "connectivity"); other services are not
	// found, as on a phone that has none by that name. No dumpsys when
	// nil.
	Dumpsys map[string]string
	// Features replaces DefaultFeatures in the banner (for tests of hosts
	// that lack, say, shell_v2). Advertising something unimplemented makes
	// the adb server use it and fail.
	Features []string
	// Shell runs commands; default /bin/sh.
	Shell string
	// UID and GID, when UID is not 0, are the user commands run as and
	// pushed files belong to, as adbd runs as Android's shell user (2000)
	// on a phone that is not rooted.
	UID, GID int
	// Logger receives protocol events; default discards.
	Logger *slog.Logger
}

// DefaultProperties are the system properties of the emulated phone unless
// Options.Properties overrides them.
func DefaultProperties() map[string]string {
	return map[string]string{
		"ro.build.version.release": "14",
		"ro.build.version.sdk":     "34",
		"ro.product.cpu.abi":       "arm64-v8a",
		"ro.product.model":         "Emulator",
		"ro.product.device":        "emu",
		"ro.product.name":          "phonefarm_emu",
		"ro.product.manufacturer":  "phonefarm",
	}
}

// Device is a running emulated phone.
type Device struct {
	opts    Options
	props   map[string]string
	ln      net.Listener
	binDir  string
	log     *slog.Logger
	banner  []byte
	closeMu sync.Mutex
	closed  bool
	conns   map[*conn]struct{}
	wg      sync.WaitGroup

	dumpsysMu sync.Mutex
	dumpsys   map[string]string
}

// Start listens on 127.0.0.1:0 and serves adb transport connections until
// Close. ctx bounds only the start-up.
func Start(ctx context.Context, opts Options) (*Device, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.Shell == "" {
		opts.Shell = "/bin/sh"
	}
	if opts.Features == nil {
		opts.Features = DefaultFeatures
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	props := DefaultProperties()
	maps.Copy(props, opts.Properties)

	binDir, err := os.MkdirTemp("", "adbemu-bin-")
	if err != nil {
		return nil, fmt.Errorf("start adb device emulator: %w", err)
	}
	if opts.UID != 0 {
		// The shell user runs getprop from here.
		if err := os.Chmod(binDir, 0o755); err != nil {
			os.RemoveAll(binDir)
			return nil, fmt.Errorf("start adb device emulator: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(binDir, "getprop"), getpropScript(props), 0o755); err != nil {
		os.RemoveAll(binDir)
		return nil, fmt.Errorf("start adb device emulator: write getprop: %w", err)
	}
	if opts.Dumpsys != nil {
		if err := os.WriteFile(filepath.Join(binDir, "dumpsys"), dumpsysScript(opts.Dumpsys), 0o755); err != nil {
			os.RemoveAll(binDir)
			return nil, fmt.Errorf("start adb device emulator: write dumpsys: %w", err)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(binDir)
		return nil, fmt.Errorf("start adb device emulator: %w", err)
	}
	d := &Device{
		opts:   opts,
		props:  props,
		ln:     ln,
		binDir: binDir,
		log:    log.With("device", ln.Addr().String()),
		conns:  map[*conn]struct{}{},
	}
	if opts.Dumpsys != nil {
		d.dumpsys = maps.Clone(opts.Dumpsys)
	}
	d.banner = fmt.Appendf(nil, "device::ro.product.name=%s;ro.product.model=%s;ro.product.device=%s;features=%s",
		props["ro.product.name"], props["ro.product.model"], props["ro.product.device"], strings.Join(opts.Features, ","))
	d.wg.Go(d.accept)
	return d, nil
}

// SetDumpsys changes what `dumpsys SERVICE` answers from now on, as a
// phone's state changes (its battery drains, its charger is pulled). The
// script is replaced whole, so a dumpsys running meanwhile reads the old
// answer or the new one.
func (d *Device) SetDumpsys(service, text string) error {
	d.dumpsysMu.Lock()
	defer d.dumpsysMu.Unlock()
	if d.dumpsys == nil {
		d.dumpsys = map[string]string{}
	}
	d.dumpsys[service] = text
	tmp := filepath.Join(d.binDir, ".dumpsys.tmp")
	if err := os.WriteFile(tmp, dumpsysScript(d.dumpsys), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(d.binDir, "dumpsys"))
}

// Addr is the host:port the adb server connects to.
func (d *Device) Addr() string { return d.ln.Addr().String() }

// Close stops listening, cuts every connection, kills running commands and
// waits for them.
func (d *Device) Close() error {
	d.closeMu.Lock()
	if d.closed {
		d.closeMu.Unlock()
		return nil
	}
	d.closed = true
	d.closeMu.Unlock()
	err := d.ln.Close()
	d.Drop()
	d.wg.Wait()
	return errors.Join(err, os.RemoveAll(d.binDir))
}

// Drop cuts every open connection, as if the phone vanished. The device
// keeps listening, so the adb server may connect again.
func (d *Device) Drop() {
	d.closeMu.Lock()
	conns := slices.Collect(maps.Keys(d.conns))
	d.closeMu.Unlock()
	for _, c := range conns {
		c.nc.Close()
	}
}

func (d *Device) accept() {
	for {
		nc, err := d.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				d.log.Warn("accept", "err", err)
			}
			return
		}
		c := &conn{d: d, nc: nc, streams: map[uint32]*stream{}, done: make(chan struct{})}
		d.closeMu.Lock()
		if d.closed {
			d.closeMu.Unlock()
			nc.Close()
			return
		}
		d.conns[c] = struct{}{}
		d.closeMu.Unlock()
		d.wg.Go(func() {
			c.serve()
			d.closeMu.Lock()
			delete(d.conns, c)
			d.closeMu.Unlock()
		})
	}
}

// getpropScript answers `getprop KEY` and `getprop` (all properties, in
// Android's "[key]: [value]" form).
func getpropScript(props map[string]string) []byte {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# getprop of the phonefarm adb device emulator\ncase \"$1\" in\n")
	keys := slices.Sorted(maps.Keys(props))
	for _, k := range keys {
		fmt.Fprintf(&b, "%s) printf '%%s\\n' %s ;;\n", shQuote(k), shQuote(props[k]))
	}
	b.WriteString("'')\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "  printf '[%%s]: [%%s]\\n' %s %s\n", shQuote(k), shQuote(props[k]))
	}
	b.WriteString("  ;;\n*) printf '%s\\n' \"$2\" ;;\nesac\n")
	return []byte(b.String())
}

// dumpsysScript answers `dumpsys SERVICE` as Android's does for the
// services given, and as it does for unknown ones otherwise.
func dumpsysScript(services map[string]string) []byte {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# dumpsys of the phonefarm adb device emulator\ncase \"$1\" in\n")
	for _, k := range slices.Sorted(maps.Keys(services)) {
		fmt.Fprintf(&b, "%s) printf '%%s\\n' %s ;;\n", shQuote(k), shQuote(services[k]))
	}
	b.WriteString("*) echo \"Can't find service: $1\" >&2; exit 1 ;;\nesac\n")
	return []byte(b.String())
}

func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// conn is one TCP connection from the adb server.
type conn struct {
	d    *Device
	nc   net.Conn
	wmu  sync.Mutex
	done chan struct{} // closed when the connection is gone

	mu         sync.Mutex
	streams    map[uint32]*stream
	nextID     uint32
	peerMax    int
	handshaken bool
}

func (c *conn) send(m message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(m.encode())
	return err
}

func (c *conn) serve() {
	log := c.d.log.With("conn", c.nc.RemoteAddr().String())
	defer func() {
		c.nc.Close()
		close(c.done)
		c.mu.Lock()
		streams := slices.Collect(maps.Values(c.streams))
		c.mu.Unlock()
		for _, s := range streams {
			s.remoteClosed()
		}
	}()
	for {
		m, err := readMessage(c.nc)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Debug("read", "err", err)
			}
			return
		}
		log.Debug("recv", "cmd", cmdName(m.cmd), "arg0", m.arg0, "arg1", m.arg1, "len", len(m.data))
		if err := c.handle(m); err != nil {
			log.Debug("handle", "cmd", cmdName(m.cmd), "err", err)
			return
		}
	}
}

func (c *conn) handle(m message) error {
	switch m.cmd {
	case cmdCNXN:
		switch c.d.opts.State {
		case Offline:
			return nil // never answer: the server keeps the phone offline
		case Unauthorized:
			return c.sendToken()
		}
		c.mu.Lock()
		c.peerMax = min(int(m.arg1), maxPayload)
		if c.peerMax < 4096 {
			c.peerMax = 4096 // MAX_PAYLOAD_V1, what every adb accepts
		}
		c.handshaken = true
		c.mu.Unlock()
		return c.send(message{cmd: cmdCNXN, arg0: protocolVersion, arg1: maxPayload, data: c.d.banner})
	case cmdAUTH:
		if c.d.opts.State == Unauthorized && m.arg0 == authSignature {
			// No signature is ever good enough: ask again, as adbd does,
			// until the server offers its public key.
			return c.sendToken()
		}
		if m.arg0 == authRSAPublicKey {
			// A real phone would now show the "Allow USB debugging?"
			// prompt; nobody accepts it here.
			c.d.log.Debug("public key offered, prompt never accepted")
		}
		return nil
	case cmdSTLS:
		return errors.New("STLS not supported")
	}

	c.mu.Lock()
	ok := c.handshaken
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s before the handshake", cmdName(m.cmd))
	}
	switch m.cmd {
	case cmdOPEN:
		c.open(m.arg0, strings.TrimRight(string(m.data), "\x00"))
	case cmdWRTE:
		if s := c.stream(m.arg1); s != nil {
			s.deliver(m.data)
		}
	case cmdOKAY:
		if s := c.stream(m.arg1); s != nil {
			s.acked()
		}
	case cmdCLSE:
		if s := c.stream(m.arg1); s != nil {
			s.remoteClosed()
		}
	default:
		return fmt.Errorf("unknown command %s", cmdName(m.cmd))
	}
	return nil
}

func (c *conn) sendToken() error {
	token := make([]byte, 20)
	rand.Read(token)
	return c.send(message{cmd: cmdAUTH, arg0: authToken, data: token})
}

func (c *conn) stream(local uint32) *stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams[local]
}

func (c *conn) open(remote uint32, service string) {
	var run func(*stream)
	switch {
	case strings.HasPrefix(service, "shell:"), strings.HasPrefix(service, "shell,"):
		args, cmd, _ := strings.Cut(service, ":")
		v2 := slices.Contains(strings.Split(args, ","), "v2")
		run = func(s *stream) { s.runShell(cmd, v2) }
	case service == "sync:":
		run = (*stream).runSync
	}
	if run == nil {
		c.d.log.Debug("refuse service", "service", service)
		c.send(message{cmd: cmdCLSE, arg0: 0, arg1: remote})
		return
	}
	c.mu.Lock()
	c.nextID++
	s := &stream{
		c:      c,
		local:  c.nextID,
		remote: remote,
		in:     make(chan []byte, 8),
		ack:    make(chan struct{}, 1),
		closed: make(chan struct{}),
	}
	c.streams[s.local] = s
	max := c.peerMax
	c.mu.Unlock()
	s.max = max
	c.d.log.Debug("open", "service", service, "local", s.local, "remote", remote)
	if err := c.send(message{cmd: cmdOKAY, arg0: s.local, arg1: remote}); err != nil {
		return
	}
	c.d.wg.Go(func() {
		run(s)
		s.close()
	})
}

// stream is one adb socket: a service opened by the server.
type stream struct {
	c             *conn
	local, remote uint32
	max           int

	in        chan []byte
	ack       chan struct{}
	closed    chan struct{} // remote CLSE or connection lost
	closeOnce sync.Once
	sendClose sync.Once

	buf []byte // unread rest of the current WRTE
	wmu sync.Mutex
}

func (s *stream) deliver(data []byte) {
	select {
	case s.in <- data:
	case <-s.closed:
	}
}

func (s *stream) acked() {
	select {
	case s.ack <- struct{}{}:
	default:
	}
}

func (s *stream) remoteClosed() {
	s.closeOnce.Do(func() { close(s.closed) })
}

// close ends the stream from the device side.
func (s *stream) close() {
	s.sendClose.Do(func() {
		s.c.mu.Lock()
		delete(s.c.streams, s.local)
		s.c.mu.Unlock()
		s.c.send(message{cmd: cmdCLSE, arg0: s.local, arg1: s.remote})
	})
	s.remoteClosed()
}

// Read returns what the server wrote; each WRTE is acknowledged once it has
// been read completely, which is adb's flow control.
func (s *stream) Read(p []byte) (int, error) {
	if len(s.buf) == 0 {
		select {
		case s.buf = <-s.in:
		default:
			select {
			case s.buf = <-s.in:
			case <-s.closed:
				return 0, io.EOF
			}
		}
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	if len(s.buf) == 0 {
		if err := s.c.send(message{cmd: cmdOKAY, arg0: s.local, arg1: s.remote}); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Write sends p in WRTE messages no larger than the server accepts, waiting
// for each to be acknowledged.
func (s *stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	written := 0
	for len(p) > 0 {
		n := min(len(p), s.max)
		if err := s.c.send(message{cmd: cmdWRTE, arg0: s.local, arg1: s.remote, data: p[:n]}); err != nil {
			return written, err
		}
		select {
		case <-s.ack:
		case <-s.closed:
			return written, io.ErrClosedPipe
		}
		written += n
		p = p[n:]
	}
	return written, nil
}
