package flash

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/phonefarm/phonefarm/devicedb"
	"github.com/phonefarm/phonefarm/fastboot"
)

// Device is what flashing needs of a phone in fastboot mode.
type Device interface {
	GetVar(ctx context.Context, name string) (string, error)
	ResolvePartition(ctx context.Context, name string) (string, error)
	FlashImage(ctx context.Context, partition string, src io.ReaderAt, size int64, opts fastboot.FlashOptions) error
	FlashingUnlock(ctx context.Context) error
	OEM(ctx context.Context, args ...string) (string, error)
	Reboot(ctx context.Context) error
	Close() error
}

var _ Device = (*fastboot.Client)(nil)

// Flasher applies flash plans. Its fields are the outside world.
type Flasher struct {
	// Out receives what the user must read: unlock guidance, warnings.
	Out io.Writer
	Log *slog.Logger
	// Confirm asks the user a yes/no question; it is called before the
	// unlock command is sent and nothing is sent when it says no.
	Confirm func(ctx context.Context, question string) (bool, error)
	// Connect opens the phone in fastboot mode.
	Connect func(ctx context.Context, serial string) (Device, error)
	// Progress receives fastboot transfer progress.
	Progress func(fastboot.Progress)
	// Images tune image download.
	Images ImageOptions
	// Sleep waits between polls; nil sleeps for real.
	Sleep func(ctx context.Context, d time.Duration) error
	// UnlockTimeout bounds the wait for the user to confirm the unlock on
	// the phone (default 5 minutes).
	UnlockTimeout time.Duration
	// LookPath and Command run heimdall; nil uses os/exec.
	LookPath func(string) (string, error)
	Command  func(ctx context.Context, name string, args ...string) *exec.Cmd
}

func (f *Flasher) log() *slog.Logger {
	if f.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.Log
}

func (f *Flasher) out() io.Writer {
	if f.Out == nil {
		return io.Discard
	}
	return f.Out
}

// Prepare resolves and verifies the images and makes the plan without
// touching the phone: what --dry-run shows. For an image URL it downloads
// nothing: the plan names the URL and the expected checksum.
func Prepare(ctx context.Context, spec Spec, opts ImageOptions) (Plan, *Images, error) {
	if err := supported(spec); err != nil {
		return Plan{}, nil, err
	}
	if spec.Source.URL != "" {
		imgs := []Image{{Role: RoleRootfs, Origin: spec.Source.URL, Verified: spec.Source.Checksum}}
		if needsKernel(spec.Device) {
			if u, err := bootURLFor(spec.Source.URL); err == nil {
				imgs = append([]Image{{Role: RoleKernel, Origin: u}}, imgs...)
			}
		}
		p, err := MakePlan(spec, imgs, nil)
		return p, nil, err
	}
	im, err := ResolveImages(ctx, spec.Device, spec.Source, opts)
	if err != nil {
		return Plan{}, nil, err
	}
	p, err := MakePlan(spec, im.List, nil)
	if err != nil {
		im.Close()
		return Plan{}, nil, err
	}
	return p, im, nil
}

func supported(spec Spec) error {
	dev := spec.Device
	if dev.Fastboot() || dev.FlashMethod == devicedb.MethodHeimdallBootimg {
		return nil
	}
	return fmt.Errorf("%s (%s): flash method %s: %w", spec.Phone, dev.Codename, dev.FlashMethod, ErrNotSupported)
}

// Run flashes spec: images (verified), then the phone's facts, the plan,
// and the steps. It returns the plan it applied.
func (f *Flasher) Run(ctx context.Context, spec Spec) (Plan, error) {
	if err := supported(spec); err != nil {
		return Plan{}, err
	}
	images, err := ResolveImages(ctx, spec.Device, spec.Source, f.Images)
	if err != nil {
		return Plan{}, fmt.Errorf("%s: images: %w", spec.Phone, err)
	}
	defer images.Close()
	if spec.Device.Heimdall() {
		plan, err := MakePlan(spec, images.List, nil)
		if err != nil {
			return plan, err
		}
		return plan, f.heimdall(ctx, spec, plan)
	}
	if f.Connect == nil {
		return Plan{}, fmt.Errorf("%s: no way to connect to the phone", spec.Phone)
	}
	conn, err := f.Connect(ctx, spec.Serial)
	if err != nil {
		return Plan{}, fmt.Errorf("%s: %w", spec.Phone, err)
	}
	dev := &reconnecting{Device: conn, connect: f.Connect, serial: spec.Serial}
	defer func() { dev.Close() }()
	facts, err := GatherFacts(ctx, dev, spec)
	if err != nil {
		return Plan{}, fmt.Errorf("%s: %w", spec.Phone, err)
	}
	plan, err := MakePlan(spec, images.List, &facts)
	if err != nil {
		return plan, err
	}
	return plan, f.Apply(ctx, dev, spec, plan)
}

// CheckProduct matches the bootloader's product against the device.
func CheckProduct(spec Spec, product string) error {
	product = strings.TrimSpace(product)
	want := spec.Device.Products()
	if spec.Product != "" {
		want = append(want, spec.Product)
	}
	for _, w := range want {
		if strings.EqualFold(w, product) {
			return nil
		}
	}
	msg := fmt.Sprintf("%s is %s (%s), which reports product %s, but the phone in fastboot mode reports %q", spec.Phone, spec.Device.Name, spec.Device.Codename, strings.Join(want, " or "), product)
	var others []string
	for _, d := range devicedb.All() {
		if d.Codename != spec.Device.Codename && slices.ContainsFunc(d.Products(), func(p string) bool { return strings.EqualFold(p, product) }) {
			others = append(others, fmt.Sprintf("%s (%s)", d.Name, d.Codename))
		}
	}
	if len(others) > 0 {
		msg += ", the product of " + strings.Join(others, ", ")
	}
	msg += "; nothing was written. Connect the right phone, or pass --product " + product + " if this bootloader reports a different name for the same device"
	return fmt.Errorf("%w: %s", ErrProductMismatch, msg)
}

// GatherFacts reads the bootloader's state. The product is read and
// checked first; on a mismatch nothing else is sent.
func GatherFacts(ctx context.Context, dev Device, spec Spec) (Facts, error) {
	var facts Facts
	product, err := dev.GetVar(ctx, "product")
	if err != nil {
		return facts, fmt.Errorf("getvar product: %w", err)
	}
	if err := CheckProduct(spec, product); err != nil {
		return facts, err
	}
	facts.Product = product
	var fail *fastboot.FailError
	if v, err := dev.GetVar(ctx, "unlocked"); err == nil {
		facts.Unlocked = strings.ToLower(strings.TrimSpace(v))
	} else if !errors.As(err, &fail) {
		return facts, fmt.Errorf("getvar unlocked: %w", err)
	}
	if v, err := dev.GetVar(ctx, "max-download-size"); err == nil {
		if facts.MaxDownloadSize, err = fastboot.ParseSize(v); err != nil {
			return facts, err
		}
	} else if !errors.As(err, &fail) {
		return facts, fmt.Errorf("getvar max-download-size: %w", err)
	}
	if v, err := dev.GetVar(ctx, "current-slot"); err == nil {
		facts.CurrentSlot = strings.TrimPrefix(v, "_")
	}
	facts.Partitions = map[string]string{}
	p := spec.Device.Partitions
	for _, name := range []string{p.Kernel, p.Rootfs, p.Vbmeta, p.Dtbo} {
		if name == "" {
			continue
		}
		resolved, err := dev.ResolvePartition(ctx, name)
		if err != nil {
			return facts, fmt.Errorf("partition %s: %w", name, err)
		}
		facts.Partitions[name] = resolved
	}
	return facts, nil
}

// Apply runs the plan's steps on dev.
func (f *Flasher) Apply(ctx context.Context, dev Device, spec Spec, plan Plan) error {
	log := f.log().With("host", spec.Phone)
	for _, s := range plan.Steps {
		log.Debug("flash step", "action", s.Action, "partition", s.Partition)
		switch s.Action {
		case ActionUnlock:
			if err := f.unlock(ctx, dev, spec, *s.Unlock); err != nil {
				return err
			}
		case ActionFlash:
			if err := f.flash(ctx, dev, spec, s); err != nil {
				return err
			}
		case ActionReboot:
			fmt.Fprintf(f.out(), "Rebooting %s into postmarketOS.\n", spec.Phone)
			if err := dev.Reboot(ctx); err != nil {
				return fmt.Errorf("%s: reboot: %w", spec.Phone, err)
			}
		default:
			return fmt.Errorf("%s: unknown step %q", spec.Phone, s.Action)
		}
	}
	return nil
}

func (f *Flasher) flash(ctx context.Context, dev Device, spec Spec, s Step) error {
	file, err := os.Open(s.File)
	if err != nil {
		return fmt.Errorf("%s: %w", spec.Phone, err)
	}
	defer file.Close()
	fmt.Fprintf(f.out(), "Flashing %s (%s) to %s.\n", s.Role, humanSize(s.Size), s.Partition)
	opts := fastboot.FlashOptions{MaxDownloadSize: spec.Device.MaxFlashSize, Sparse: s.Sparse, Progress: f.Progress}
	if err := dev.FlashImage(ctx, s.Partition, file, s.Size, opts); err != nil {
		return fmt.Errorf("%s: %w", spec.Phone, err)
	}
	return nil
}

func (f *Flasher) sleep(ctx context.Context, d time.Duration) error {
	if f.Sleep != nil {
		return f.Sleep(ctx, d)
	}
	return sleepCtx(ctx, d)
}

// sleepCtx waits d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (f *Flasher) unlock(ctx context.Context, dev Device, spec Spec, guide Unlock) error {
	out := f.out()
	guide.Explain(out, spec.Phone)
	if !guide.Automatic() {
		return fmt.Errorf("%s: %w: phonefarm cannot unlock a %s phone: %s", spec.Phone, ErrBootloaderLocked, guide.Manufacturer, guide.Outlook)
	}
	if guide.NeedsCode && spec.UnlockCode == "" {
		return fmt.Errorf("%s: %w: unlocking a %s phone needs the vendor's unlock code (--unlock-code)", spec.Phone, ErrBootloaderLocked, guide.Manufacturer)
	}
	if f.Confirm == nil {
		return fmt.Errorf("%s: %w: no way to ask for confirmation", spec.Phone, ErrBootloaderLocked)
	}
	ok, err := f.Confirm(ctx, fmt.Sprintf("Unlock the bootloader of %s and erase everything on it?", spec.Phone))
	if err != nil {
		return fmt.Errorf("%s: confirm unlock: %w", spec.Phone, err)
	}
	if !ok {
		return fmt.Errorf("%s: %w: unlock declined", spec.Phone, ErrBootloaderLocked)
	}
	switch {
	case guide.Command == "flashing unlock":
		err = dev.FlashingUnlock(ctx)
	case guide.NeedsCode:
		_, err = dev.OEM(ctx, "unlock", spec.UnlockCode)
	default:
		_, err = dev.OEM(ctx, strings.Fields(guide.Command)[1:]...)
	}
	if err != nil {
		return fmt.Errorf("%s: %w: %w", spec.Phone, ErrBootloaderLocked, err)
	}
	if guide.OnPhone != "" {
		fmt.Fprintf(out, "Now: %s\n", guide.OnPhone)
	}
	fmt.Fprintln(out, "Waiting for the bootloader to report unlocked...")
	timeout := f.UnlockTimeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var fail *fastboot.FailError
	for {
		v, err := dev.GetVar(wctx, "unlocked")
		if err == nil && strings.TrimSpace(v) == "yes" {
			fmt.Fprintf(out, "%s is unlocked.\n", spec.Phone)
			return nil
		}
		if r, ok := dev.(*reconnecting); ok && err != nil && !errors.As(err, &fail) {
			// Phones may reset their USB connection while wiping.
			if rerr := r.reconnect(wctx); rerr != nil {
				f.log().Debug("reconnect after unlock", "host", spec.Phone, "err", rerr)
			}
		}
		if err := f.sleep(wctx, 2*time.Second); err != nil {
			return fmt.Errorf("%s: %w: the phone did not report unlocked within %s", spec.Phone, ErrBootloaderLocked, timeout)
		}
	}
}

func (f *Flasher) heimdall(ctx context.Context, spec Spec, plan Plan) error {
	lookPath := f.LookPath
	if lookPath == nil {
		lookPath = exec.LookPath
	}
	bin, err := lookPath("heimdall")
	if err != nil {
		return fmt.Errorf("%s: flash method %s needs heimdall, which is not installed (Debian: apt install heimdall-flash): %w", spec.Phone, spec.Device.FlashMethod, err)
	}
	guide := UnlockGuide(spec.Device)
	guide.Explain(f.out(), spec.Phone)
	for _, n := range plan.Notes {
		fmt.Fprintln(f.out(), n)
	}
	command := f.Command
	if command == nil {
		command = exec.CommandContext
	}
	for _, s := range plan.Steps {
		cmd := command(ctx, bin, s.Args...)
		cmd.Stdout, cmd.Stderr = f.out(), f.out()
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %s: %w", spec.Phone, s.Command, err)
		}
	}
	return nil
}

// reconnecting is a Device that can be opened again when the phone drops
// its connection (a wipe after unlocking).
type reconnecting struct {
	Device
	connect func(ctx context.Context, serial string) (Device, error)
	serial  string
}

func (r *reconnecting) reconnect(ctx context.Context) error {
	// Close first: a bootloader serves one host connection at a time.
	r.Device.Close()
	d, err := r.connect(ctx, r.serial)
	if err != nil {
		return err
	}
	r.Device = d
	return nil
}
