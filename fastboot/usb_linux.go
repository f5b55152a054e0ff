//go:build linux

package fastboot

// USB transport through Linux usbfs (/dev/bus/usb), with no cgo and no
// libusb: devices are found in sysfs, the fastboot interface (class 0xff,
// subclass 0x42, protocol 0x03) is claimed with USBDEVFS_CLAIMINTERFACE and
// packets move with synchronous USBDEVFS_BULK transfers.
//
// This file cannot be exercised without a phone in fastboot mode on a USB
// port; phonefarm's tests cover the protocol over TCP instead.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const sysUSB = "/sys/bus/usb/devices"

// USBDevice is a device in fastboot mode on a USB port.
type USBDevice struct {
	Serial  string `json:"serial"`
	Path    string `json:"path"` // sysfs port name, e.g. 1-2.3
	Product string `json:"product,omitempty"`
	bus     int
	dev     int
	iface   int
	epIn    uint8
	epOut   uint8
}

// ListUSB returns the USB devices that offer a fastboot interface.
func ListUSB(ctx context.Context) ([]USBDevice, error) {
	ifaces, err := filepath.Glob(filepath.Join(sysUSB, "*:*"))
	if err != nil {
		return nil, err
	}
	var out []USBDevice
	for _, ifdir := range ifaces {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if sysHex(ifdir, "bInterfaceClass") != 0xff || sysHex(ifdir, "bInterfaceSubClass") != 0x42 || sysHex(ifdir, "bInterfaceProtocol") != 0x03 {
			continue
		}
		port := strings.SplitN(filepath.Base(ifdir), ":", 2)[0]
		devdir := filepath.Join(sysUSB, port)
		d := USBDevice{
			Serial:  sysString(devdir, "serial"),
			Path:    port,
			Product: sysString(devdir, "product"),
			bus:     sysDec(devdir, "busnum"),
			dev:     sysDec(devdir, "devnum"),
			iface:   sysHex(ifdir, "bInterfaceNumber"),
		}
		eps, _ := filepath.Glob(filepath.Join(ifdir, "ep_*"))
		for _, ep := range eps {
			if sysString(ep, "type") != "Bulk" {
				continue
			}
			addr := uint8(sysHex(ep, "bEndpointAddress"))
			if addr&0x80 != 0 {
				d.epIn = addr
			} else {
				d.epOut = addr
			}
		}
		if d.epIn == 0 || d.epOut == 0 || d.bus == 0 {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

func sysString(dir, name string) string {
	b, _ := os.ReadFile(filepath.Join(dir, name))
	return strings.TrimSpace(string(b))
}

func sysHex(dir, name string) int {
	n, _ := strconv.ParseInt(sysString(dir, name), 16, 32)
	return int(n)
}

func sysDec(dir, name string) int {
	n, _ := strconv.Atoi(sysString(dir, name))
	return n
}

func openUSB(ctx context.Context, serial string) (Transport, string, error) {
	devs, err := ListUSB(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("list usb devices: %w", err)
	}
	var match []USBDevice
	for _, d := range devs {
		if serial == "" || d.Serial == serial || "usb:"+d.Path == serial {
			match = append(match, d)
		}
	}
	switch {
	case len(match) == 0 && serial == "":
		return nil, "", errors.New("no device in fastboot mode on USB (hold volume down while powering on)")
	case len(match) == 0:
		return nil, "", fmt.Errorf("no device in fastboot mode with serial %q on USB", serial)
	case len(match) > 1:
		return nil, "", fmt.Errorf("%d devices in fastboot mode on USB; choose one with a serial", len(match))
	}
	t, err := OpenUSB(match[0])
	if err != nil {
		return nil, "", err
	}
	name := match[0].Serial
	if name == "" {
		name = "usb:" + match[0].Path
	}
	return t, name, nil
}

// usbfs ioctls (linux/usbdevice_fs.h).
type bulkTransfer struct {
	ep      uint32
	len     uint32
	timeout uint32 // milliseconds
	data    unsafe.Pointer
}

// _IOC(dir, 'U', nr, size) = dir<<30 | size<<16 | 'U'<<8 | nr.
const (
	usbdevfsBulk             = 3<<30 | unsafe.Sizeof(bulkTransfer{})<<16 | 'U'<<8 | 2 // _IOWR
	usbdevfsClaimInterface   = 2<<30 | 4<<16 | 'U'<<8 | 15                            // _IOR
	usbdevfsReleaseInterface = 2<<30 | 4<<16 | 'U'<<8 | 16                            // _IOR
)

// USB is a claimed fastboot interface.
type USB struct {
	mu       sync.Mutex
	fd       int
	iface    uint32
	epIn     uint8
	epOut    uint8
	deadline time.Time
}

// OpenUSB opens and claims d's fastboot interface.
func OpenUSB(d USBDevice) (*USB, error) {
	path := fmt.Sprintf("/dev/bus/usb/%03d/%03d", d.bus, d.dev)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w (is the udev rule for fastboot installed, or run as root?)", path, err)
	}
	iface := uint32(d.iface)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), usbdevfsClaimInterface, uintptr(unsafe.Pointer(&iface))); e != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("claim fastboot interface of %s: %w", path, e)
	}
	return &USB{fd: fd, iface: iface, epIn: d.epIn, epOut: d.epOut}, nil
}

const (
	usbChunk        = 1 << 20
	usbReadSlice    = 1000 // ms; reads poll so that deadlines and Close are honoured
	usbWriteTimeout = 60000
)

func (u *USB) bulk(ep uint8, p []byte, timeout uint32) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	bt := bulkTransfer{ep: uint32(ep), len: uint32(len(p)), timeout: timeout, data: unsafe.Pointer(&p[0])}
	n, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(u.fd), usbdevfsBulk, uintptr(unsafe.Pointer(&bt)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Write sends p in bulk transfers of at most 1 MiB.
func (u *USB) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		if u.expired() {
			return done, os.ErrDeadlineExceeded
		}
		n, err := u.bulk(u.epOut, p[done:min(len(p), done+usbChunk)], usbWriteTimeout)
		if err != nil {
			return done, fmt.Errorf("usb write: %w", err)
		}
		done += n
	}
	return done, nil
}

// Read receives one packet, waiting as long as the device takes (erasing
// userdata can take minutes) unless the deadline passes.
func (u *USB) Read(p []byte) (int, error) {
	for {
		if u.expired() {
			return 0, os.ErrDeadlineExceeded
		}
		n, err := u.bulk(u.epIn, p, usbReadSlice)
		if errors.Is(err, unix.ETIMEDOUT) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("usb read: %w", err)
		}
		return n, nil
	}
}

func (u *USB) expired() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return !u.deadline.IsZero() && time.Now().After(u.deadline)
}

// SetDeadline makes reads and writes fail once d has passed (checked
// between bulk transfers, so within about a second).
func (u *USB) SetDeadline(d time.Time) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.deadline = d
	return nil
}

// Close releases the interface and closes the device.
func (u *USB) Close() error {
	iface := u.iface
	unix.Syscall(unix.SYS_IOCTL, uintptr(u.fd), usbdevfsReleaseInterface, uintptr(unsafe.Pointer(&iface)))
	return unix.Close(u.fd)
}
