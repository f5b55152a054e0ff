// Package flash puts postmarketOS onto a phone: it resolves and verifies
// the images, reads the bootloader's state (the facts), makes a Plan of
// what it will do, and applies it over fastboot (or heimdall for Samsung
// phones), unlocking the bootloader first when the user confirms.
//
// Nothing reaches the phone before every image checksum has been verified,
// and nothing is written to it before its `getvar product` has been
// matched against the device database.
package flash

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/phonefarm/phonefarm/devicedb"
)

// ErrBootloaderLocked is returned when the phone's bootloader is locked
// and stays locked: phonefarm cannot unlock it for this manufacturer, the
// unlock code is missing, or the user declined.
var ErrBootloaderLocked = errors.New("bootloader locked")

// ErrProductMismatch is returned when the phone in fastboot mode is not the
// device the inventory names; nothing has been written to it.
var ErrProductMismatch = errors.New("wrong phone")

// ErrNotSupported is a flash method phonefarm cannot drive yet.
var ErrNotSupported = errors.New("not supported yet")

// Spec is what the user asks for: which phone, which device and which
// images.
type Spec struct {
	// Phone is the inventory name.
	Phone  string
	Device devicedb.Device
	Source Source
	// Serial chooses the fastboot device ("tcp:HOST:PORT" or a USB serial).
	Serial string
	// Product is an extra accepted `getvar product` value, for bootloaders
	// that report something other than the codename (a SoC name).
	Product string
	// UnlockCode is the vendor's unlock code (Sony, Motorola). It is a
	// secret: it never appears in plans, logs or errors.
	UnlockCode string
}

// Facts is the bootloader's state, read once before planning.
type Facts struct {
	Product string `json:"product"`
	// Unlocked is getvar unlocked: "yes", "no", or "" when the bootloader
	// does not say.
	Unlocked        string `json:"unlocked"`
	MaxDownloadSize int64  `json:"max_download_size"`
	CurrentSlot     string `json:"current_slot,omitempty"`
	// Partitions maps a partition name to the one written on this phone
	// (boot to boot_a on an A/B phone).
	Partitions map[string]string `json:"partitions,omitempty"`
}

// Step actions.
const (
	ActionUnlock   = "unlock"
	ActionFlash    = "flash"
	ActionReboot   = "reboot"
	ActionHeimdall = "heimdall"
)

// Step is one thing the flash does to the phone.
type Step struct {
	Action    string `json:"action"`
	Partition string `json:"partition,omitempty"`
	Role      string `json:"role,omitempty"`
	File      string `json:"file,omitempty"`
	Size      int64  `json:"size,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	// Sparse says the image goes as sparse pieces of at most MaxDownload
	// bytes each.
	Sparse      bool  `json:"sparse,omitempty"`
	MaxDownload int64 `json:"max_download,omitempty"`
	// Command is the fastboot or heimdall command, secrets redacted.
	Command string `json:"command,omitempty"`
	// Args are the arguments of a heimdall step.
	Args []string `json:"args,omitempty"`
	// When says when the step runs, if not always ("if the bootloader is
	// locked").
	When string `json:"when,omitempty"`
	// Unlock is the guidance of an unlock step.
	Unlock *Unlock `json:"unlock,omitempty"`
}

// Plan is what a flash will do; --dry-run prints it.
type Plan struct {
	Phone      string   `json:"phone"`
	Device     string   `json:"device"`
	DeviceName string   `json:"device_name"`
	Method     string   `json:"method"`
	Facts      *Facts   `json:"facts,omitempty"`
	Images     []Image  `json:"images"`
	Steps      []Step   `json:"steps"`
	Notes      []string `json:"notes,omitempty"`
}

// MakePlan is the pure planning step. facts is nil when the phone has not
// been read (a dry run): partitions are then named without slot suffixes and
// the unlock step is conditional.
func MakePlan(spec Spec, images []Image, facts *Facts) (Plan, error) {
	dev := spec.Device
	p := Plan{Phone: spec.Phone, Device: dev.Codename, DeviceName: dev.Name, Method: dev.FlashMethod, Facts: facts, Images: images}
	get := func(role string) (Image, bool) {
		for _, i := range images {
			if i.Role == role {
				return i, true
			}
		}
		return Image{}, false
	}
	switch {
	case dev.Heimdall():
		if dev.FlashMethod != devicedb.MethodHeimdallBootimg {
			return p, fmt.Errorf("%s (%s): flash method %s: %w", spec.Phone, dev.Codename, dev.FlashMethod, ErrNotSupported)
		}
		args := []string{"flash"}
		for _, r := range []struct{ role, part string }{{RoleKernel, dev.Partitions.Kernel}, {RoleRootfs, dev.Partitions.Rootfs}, {RoleVbmeta, dev.Partitions.Vbmeta}} {
			if img, ok := get(r.role); ok && r.part != "" {
				args = append(args, "--"+r.part, img.Path)
			}
		}
		p.Steps = append(p.Steps, Step{Action: ActionHeimdall, Args: args, Command: "heimdall " + strings.Join(args, " ")})
		p.Notes = append(p.Notes, "The phone must be in download mode: power off, hold volume down + home (or Bixby) + power, press volume up.")
		return p, nil
	case !dev.Fastboot():
		return p, fmt.Errorf("%s (%s): flash method %s: %w", spec.Phone, dev.Codename, dev.FlashMethod, ErrNotSupported)
	}

	guide := UnlockGuide(dev)
	unlock := Step{Action: ActionUnlock, Unlock: &guide, Command: redactCode(guide.Command)}
	switch {
	case facts == nil:
		unlock.When = "if getvar unlocked says no"
		p.Steps = append(p.Steps, unlock)
	case facts.Unlocked == "no":
		p.Steps = append(p.Steps, unlock)
	}
	max := dev.MaxFlashSize
	if max == 0 && facts != nil {
		max = facts.MaxDownloadSize
	}
	resolve := func(part string) string {
		if facts != nil && facts.Partitions[part] != "" {
			return facts.Partitions[part]
		}
		return part
	}
	for _, r := range []struct{ role, part string }{
		{RoleVbmeta, dev.Partitions.Vbmeta},
		{RoleDtbo, dev.Partitions.Dtbo},
		{RoleKernel, dev.Partitions.Kernel},
		{RoleRootfs, dev.Partitions.Rootfs},
	} {
		img, ok := get(r.role)
		if !ok || r.part == "" {
			continue
		}
		part := resolve(r.part)
		s := Step{Action: ActionFlash, Partition: part, Role: r.role, File: img.Path, Size: img.Size, SHA256: img.SHA256, MaxDownload: max}
		s.Sparse = (r.role == RoleRootfs && dev.Sparse) || (max > 0 && img.Size > max)
		s.Command = "flash:" + part
		if r.role == RoleVbmeta {
			s.Command += " (vbmeta with verification disabled)"
		}
		p.Steps = append(p.Steps, s)
	}
	if _, ok := get(RoleRootfs); !ok {
		return p, fmt.Errorf("%s: no rootfs image to flash", spec.Phone)
	}
	p.Steps = append(p.Steps, Step{Action: ActionReboot, Command: "reboot"})
	return p, nil
}

func redactCode(cmd string) string { return strings.ReplaceAll(cmd, "CODE", "<unlock code>") }

// Write prints the plan for people.
func (p Plan) Write(w io.Writer) {
	fmt.Fprintf(w, "Plan for %s: %s (%s), flash method %s\n", p.Phone, p.DeviceName, p.Device, p.Method)
	if p.Facts == nil {
		fmt.Fprintln(w, "Phone: not read (a dry run does not touch the phone)")
	} else {
		fmt.Fprintf(w, "Phone: product %s, unlocked %s, max-download-size %s", p.Facts.Product, orUnknown(p.Facts.Unlocked), humanSize(p.Facts.MaxDownloadSize))
		if p.Facts.CurrentSlot != "" {
			fmt.Fprintf(w, ", slot %s", p.Facts.CurrentSlot)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "Images:")
	for _, i := range p.Images {
		fmt.Fprintf(w, "  %-7s %s  %s  sha256 %s", i.Role, humanSize(i.Size), i.Origin, orUnknown(i.SHA256))
		if i.Verified != nil {
			fmt.Fprintf(w, " (%s verified)", i.Verified.Algo)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "Steps:")
	for n, s := range p.Steps {
		fmt.Fprintf(w, "  %d. ", n+1)
		switch s.Action {
		case ActionUnlock:
			if s.Unlock.Automatic() {
				fmt.Fprintf(w, "unlock the bootloader: fastboot %s, after your confirmation (erases the phone)", s.Command)
			} else {
				fmt.Fprintf(w, "unlock the bootloader: not automatic for %s (%s)", s.Unlock.Manufacturer, s.Unlock.Outlook)
			}
		case ActionFlash:
			fmt.Fprintf(w, "flash %s to %s, %s", s.Role, s.Partition, humanSize(s.Size))
			if s.Sparse {
				if s.MaxDownload > 0 {
					fmt.Fprintf(w, " as sparse pieces of at most %s", humanSize(s.MaxDownload))
				} else {
					fmt.Fprint(w, " as a sparse image")
				}
			}
		default:
			fmt.Fprint(w, s.Command)
		}
		if s.When != "" {
			fmt.Fprintf(w, " (%s)", s.When)
		}
		fmt.Fprintln(w)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "Note: %s\n", n)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func humanSize(n int64) string {
	switch {
	case n <= 0:
		return "size unknown"
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
