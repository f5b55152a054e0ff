// Package fastbootemu is a fastboot device for tests: the bootloader side
// of the fastboot protocol over TCP, with partitions held in memory, a
// locked or unlocked bootloader and the responses (and refusal wording) of
// a Qualcomm/Pixel bootloader. The real `fastboot` tool drives it
// (`fastboot -s tcp:127.0.0.1:PORT ...`), which is how phonefarm's tests
// show it is faithful before testing phonefarm's own client against it.
package fastbootemu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/phonefarm/phonefarm/fastboot/sparse"
)

// Options describe the emulated phone.
type Options struct {
	// Product is what getvar product reports.
	Product string
	// Serial is what getvar serialno reports.
	Serial string
	// MaxDownloadSize is the download buffer size; 0 means 512 MiB.
	MaxDownloadSize int64
	// Partitions maps partition names (with _a/_b suffixes on an A/B
	// device) to sizes in bytes.
	Partitions map[string]int64
	// CurrentSlot ("a" or "b") makes the device A/B; empty means no slots.
	CurrentSlot string
	// Locked starts the bootloader locked.
	Locked bool
	// UnlockAllowed is the "OEM unlocking" developer option: without it the
	// bootloader refuses `flashing unlock`.
	UnlockAllowed bool
	// UnlockCode, when set, is required by `oem unlock CODE` (Sony,
	// Motorola) and `flashing unlock` is refused.
	UnlockCode string
	// DropAfterUnlock closes the connection after a successful unlock, as
	// phones that reset USB while wiping do.
	DropAfterUnlock bool
	// Vars add or override getvar variables.
	Vars map[string]string
	// Logger receives a debug line per command; nil discards.
	Logger *slog.Logger
}

// Flash records one flash command.
type Flash struct {
	Partition string
	Sparse    bool
	Size      int64 // download size
}

// Device is an emulated phone in fastboot mode.
type Device struct {
	opts Options
	ln   net.Listener
	log  *slog.Logger
	wg   sync.WaitGroup

	mu         sync.Mutex
	active     net.Conn // the connection being served
	locked     bool
	slot       string
	partitions map[string][]byte
	commands   []string
	flashes    []Flash
	reboots    []string
	download   []byte
}

// Start serves an emulated phone on a free loopback port until the test
// ends.
func Start(t testing.TB, opts Options) *Device {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := New(opts)
	d.mu.Lock()
	d.ln = ln
	d.mu.Unlock()
	go d.Serve(ln)
	t.Cleanup(func() { d.Close() })
	return d
}

// New returns a device; Serve makes it answer.
func New(opts Options) *Device {
	if opts.MaxDownloadSize == 0 {
		opts.MaxDownloadSize = 512 << 20
	}
	if opts.Product == "" {
		opts.Product = "emulator"
	}
	if opts.Serial == "" {
		opts.Serial = "EMU0001"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Device{opts: opts, log: log, locked: opts.Locked, slot: opts.CurrentSlot, partitions: map[string][]byte{}}
	for name, size := range opts.Partitions {
		d.partitions[name] = make([]byte, size)
	}
	return d
}

// Serve accepts fastboot clients on ln, one connection at a time like a
// USB bootloader, until Close.
func (d *Device) Serve(ln net.Listener) error {
	d.mu.Lock()
	d.ln = ln
	d.mu.Unlock()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		d.wg.Add(1)
		d.mu.Lock()
		d.active = conn
		d.mu.Unlock()
		func() {
			defer d.wg.Done()
			defer conn.Close()
			if err := d.serveConn(conn); err != nil && !errors.Is(err, io.EOF) {
				d.log.Debug("fastbootemu connection ended", "err", err)
			}
		}()
	}
}

// Addr returns host:port.
func (d *Device) Addr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ln == nil {
		return ""
	}
	return d.ln.Addr().String()
}

// Serial returns the name fastboot tools use for the device: tcp:HOST:PORT.
func (d *Device) Serial() string { return "tcp:" + d.Addr() }

// Close stops serving and drops the connected client.
func (d *Device) Close() error {
	d.mu.Lock()
	ln, active := d.ln, d.active
	d.mu.Unlock()
	if ln == nil {
		return nil
	}
	err := ln.Close()
	if active != nil {
		active.Close()
	}
	d.wg.Wait()
	return err
}

// Commands returns every command received, in order.
func (d *Device) Commands() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.commands)
}

// Flashes returns every flash command that succeeded.
func (d *Device) Flashes() []Flash {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.flashes)
}

// Reboots returns the reboot commands received ("reboot", "reboot-bootloader").
func (d *Device) Reboots() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.reboots)
}

// Partition returns a copy of a partition's content.
func (d *Device) Partition(name string) ([]byte, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.partitions[name]
	return slices.Clone(p), ok
}

// Unlocked reports the bootloader lock state.
func (d *Device) Unlocked() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.locked
}

// conn frames packets the fastboot TCP way.
type conn struct {
	c    net.Conn
	left uint64 // unread bytes of the current incoming packet
}

func (c *conn) send(kind, msg string) error {
	p := []byte(kind + msg)
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(len(p)))
	_, err := c.c.Write(append(hdr[:], p...))
	return err
}

func (c *conn) nextPacket() error {
	var hdr [8]byte
	if _, err := io.ReadFull(c.c, hdr[:]); err != nil {
		return err
	}
	c.left = binary.BigEndian.Uint64(hdr[:])
	return nil
}

// readCommand reads one whole packet as a command.
func (c *conn) readCommand() (string, error) {
	if err := c.nextPacket(); err != nil {
		return "", err
	}
	if c.left > 4096 {
		return "", fmt.Errorf("command of %d bytes", c.left)
	}
	b := make([]byte, c.left)
	if _, err := io.ReadFull(c.c, b); err != nil {
		return "", err
	}
	c.left = 0
	return string(b), nil
}

// readData reads n bytes of download data, which may span packets.
func (c *conn) readData(b []byte) error {
	for len(b) > 0 {
		if c.left == 0 {
			if err := c.nextPacket(); err != nil {
				return err
			}
		}
		n := min(uint64(len(b)), c.left)
		if _, err := io.ReadFull(c.c, b[:n]); err != nil {
			return err
		}
		b = b[n:]
		c.left -= n
	}
	return nil
}

var errReboot = errors.New("device rebooted")

func (d *Device) serveConn(nc net.Conn) error {
	var hs [4]byte
	if _, err := io.ReadFull(nc, hs[:]); err != nil {
		return err
	}
	if string(hs[:2]) != "FB" {
		return fmt.Errorf("bad handshake %q", hs[:])
	}
	if _, err := nc.Write([]byte("FB01")); err != nil {
		return err
	}
	c := &conn{c: nc}
	for {
		cmd, err := c.readCommand()
		if err != nil {
			return err
		}
		d.log.Debug("fastbootemu command", "cmd", cmd)
		d.mu.Lock()
		d.commands = append(d.commands, cmd)
		d.mu.Unlock()
		if err := d.handle(c, cmd); err != nil {
			return err
		}
	}
}

func (d *Device) handle(c *conn, cmd string) error {
	switch {
	case cmd == "getvar:all":
		for _, kv := range d.allVars() {
			if err := c.send("INFO", kv[0]+":"+kv[1]); err != nil {
				return err
			}
		}
		return c.send("OKAY", "")
	case strings.HasPrefix(cmd, "getvar:"):
		v, ok := d.getvar(strings.TrimPrefix(cmd, "getvar:"))
		if !ok {
			return c.send("FAIL", "GetVar Variable Not found")
		}
		return c.send("OKAY", v)
	case strings.HasPrefix(cmd, "download:"):
		return d.handleDownload(c, strings.TrimPrefix(cmd, "download:"))
	case strings.HasPrefix(cmd, "flash:"):
		kind, msg := d.flash(strings.TrimPrefix(cmd, "flash:"))
		return c.send(kind, msg)
	case strings.HasPrefix(cmd, "erase:"):
		kind, msg := d.erase(strings.TrimPrefix(cmd, "erase:"))
		return c.send(kind, msg)
	case strings.HasPrefix(cmd, "set_active:"):
		kind, msg := d.setActive(strings.TrimPrefix(cmd, "set_active:"))
		return c.send(kind, msg)
	case cmd == "flashing unlock":
		if d.opts.UnlockCode != "" {
			return c.send("FAIL", "unknown command")
		}
		return d.afterUnlock(d.unlock(c))
	case cmd == "flashing lock":
		d.mu.Lock()
		d.locked = true
		d.mu.Unlock()
		return c.send("OKAY", "")
	case cmd == "oem unlock" || strings.HasPrefix(cmd, "oem unlock "):
		code := strings.TrimSpace(strings.TrimPrefix(cmd, "oem unlock"))
		if d.opts.UnlockCode != "" && code != d.opts.UnlockCode {
			return c.send("FAIL", "Command did not succeed")
		}
		return d.afterUnlock(d.unlock(c))
	case cmd == "oem device-info":
		d.mu.Lock()
		unlocked := !d.locked
		d.mu.Unlock()
		if err := c.send("INFO", "Device tampered: false"); err != nil {
			return err
		}
		if err := c.send("INFO", fmt.Sprintf("Device unlocked: %v", unlocked)); err != nil {
			return err
		}
		return c.send("OKAY", "")
	case strings.HasPrefix(cmd, "oem "):
		return c.send("FAIL", "unknown command")
	case cmd == "reboot" || cmd == "reboot-bootloader":
		d.mu.Lock()
		d.reboots = append(d.reboots, cmd)
		d.mu.Unlock()
		if err := c.send("OKAY", ""); err != nil {
			return err
		}
		return errReboot
	case cmd == "continue":
		return c.send("OKAY", "")
	}
	return c.send("FAIL", "unknown command")
}

func (d *Device) afterUnlock(err error) error {
	if err == nil && d.opts.DropAfterUnlock && d.Unlocked() {
		return errReboot
	}
	return err
}

func (d *Device) unlock(c *conn) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case !d.locked:
		return c.send("FAIL", "Device already : unlocked!")
	case !d.opts.UnlockAllowed:
		return c.send("FAIL", "flashing unlock is not allowed")
	}
	d.locked = false
	// Unlocking wipes user data.
	for name, p := range d.partitions {
		if strings.HasPrefix(name, "userdata") {
			clear(p)
		}
	}
	return c.send("OKAY", "")
}

func (d *Device) handleDownload(c *conn, arg string) error {
	n, err := strconv.ParseUint(arg, 16, 32)
	if err != nil || len(arg) != 8 {
		return c.send("FAIL", "Invalid size")
	}
	if int64(n) > d.opts.MaxDownloadSize {
		return c.send("FAIL", "Requested download size is more than max allowed")
	}
	if err := c.send("DATA", fmt.Sprintf("%08x", n)); err != nil {
		return err
	}
	buf := make([]byte, n)
	if err := c.readData(buf); err != nil {
		return err
	}
	d.mu.Lock()
	d.download = buf
	d.mu.Unlock()
	return c.send("OKAY", "")
}

func (d *Device) flash(name string) (kind, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.locked {
		return "FAIL", "Flashing is not allowed in Lock State"
	}
	part, ok := d.partitions[name]
	if !ok && d.slot != "" {
		name += "_" + d.slot
		part, ok = d.partitions[name]
	}
	if !ok {
		return "FAIL", "Partition not found"
	}
	data := d.download
	if data == nil {
		return "FAIL", "No data downloaded"
	}
	isSparse := sparse.IsSparse(data)
	if isSparse {
		if _, err := sparse.Expand(writerAt(part), bytes.NewReader(data), int64(len(part))); err != nil {
			return "FAIL", "Sparse image write failure: " + err.Error()
		}
	} else {
		if len(data) > len(part) {
			return "FAIL", "Image size too large"
		}
		copy(part, data)
	}
	d.flashes = append(d.flashes, Flash{Partition: name, Sparse: isSparse, Size: int64(len(data))})
	return "OKAY", ""
}

// writerAt writes into a fixed partition buffer.
type writerAt []byte

func (w writerAt) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(w)) {
		return 0, fmt.Errorf("write of %d bytes at %d past the partition end %d", len(p), off, len(w))
	}
	return copy(w[off:], p), nil
}

func (d *Device) erase(name string) (kind, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.locked {
		return "FAIL", "Erase is not allowed in Lock State"
	}
	part, ok := d.partitions[name]
	if !ok && d.slot != "" {
		part, ok = d.partitions[name+"_"+d.slot]
	}
	if !ok {
		return "FAIL", "Partition not found"
	}
	clear(part)
	return "OKAY", ""
}

func (d *Device) setActive(slot string) (kind, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	slot = strings.TrimPrefix(slot, "_")
	if d.slot == "" {
		return "FAIL", "set_active command is not allowed on non-A/B devices"
	}
	if slot != "a" && slot != "b" {
		return "FAIL", "Invalid slot"
	}
	d.slot = slot
	return "OKAY", ""
}

// allVars lists every variable, fixed ones first, then per partition.
func (d *Device) allVars() [][2]string {
	d.mu.Lock()
	names := slices.Sorted(maps.Keys(d.partitions))
	d.mu.Unlock()
	var out [][2]string
	for _, k := range []string{"version", "version-bootloader", "product", "serialno", "secure", "unlocked", "max-download-size", "slot-count", "current-slot", "is-userspace"} {
		if v, ok := d.getvar(k); ok {
			out = append(out, [2]string{k, v})
		}
	}
	for _, n := range names {
		for _, k := range []string{"partition-size:", "partition-type:", "is-logical:"} {
			v, _ := d.getvar(k + n)
			out = append(out, [2]string{k + n, v})
		}
	}
	seen := map[string]bool{}
	for _, kv := range out {
		seen[kv[0]] = true
	}
	extra := slices.Collect(maps.Keys(d.opts.Vars))
	sort.Strings(extra)
	for _, k := range extra {
		if !seen[k] {
			out = append(out, [2]string{k, d.opts.Vars[k]})
		}
	}
	return out
}

func (d *Device) getvar(name string) (string, bool) {
	if v, ok := d.opts.Vars[name]; ok {
		return v, true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	yesno := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	switch name {
	case "version":
		return "0.4", true
	case "version-bootloader":
		return "phonefarm-emu-1.0", true
	case "product":
		return d.opts.Product, true
	case "serialno":
		return d.opts.Serial, true
	case "secure":
		return "yes", true
	case "unlocked":
		return yesno(!d.locked), true
	case "max-download-size":
		return fmt.Sprintf("0x%x", d.opts.MaxDownloadSize), true
	case "is-userspace":
		return "no", true
	case "slot-count":
		if d.slot == "" {
			return "", false
		}
		return "2", true
	case "current-slot":
		if d.slot == "" {
			return "", false
		}
		return d.slot, true
	}
	key, part, ok := strings.Cut(name, ":")
	if !ok {
		return "", false
	}
	switch key {
	case "has-slot":
		_, a := d.partitions[part+"_a"]
		if _, plain := d.partitions[part]; !plain && !a {
			return "", false
		}
		return yesno(a), true
	}
	p, ok := d.partitions[part]
	if !ok {
		return "", false
	}
	switch key {
	case "partition-size":
		return fmt.Sprintf("0x%x", len(p)), true
	case "partition-type":
		if strings.HasPrefix(part, "userdata") || strings.HasPrefix(part, "cache") {
			return "ext4", true
		}
		return "raw", true
	case "is-logical":
		return "no", true
	}
	return "", false
}
