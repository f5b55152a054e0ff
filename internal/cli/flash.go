package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/phonefarm/phonefarm/devicedb"
	"github.com/phonefarm/phonefarm/fastboot"
	"github.com/phonefarm/phonefarm/flash"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport"
	sshtr "github.com/phonefarm/phonefarm/transport/ssh"
)

// defaultExport is where `pmbootstrap export` puts its images.
const defaultExport = "/tmp/postmarketOS-export"

type flashFlags struct {
	file       string
	image      string
	sha256     string
	sha512     string
	serial     string
	product    string
	unlockCode string
	dryRun     bool
	yes        bool
	out        outputFlag

	setup       bool
	passwordEnv string
	address     string
	user        string
	identity    string
	knownHosts  string
	become      string
}

func newFlashCmd(e *env) *cobra.Command {
	var f flashFlags
	cmd := &cobra.Command{
		Use:   "flash -f FARM PHONE",
		Short: "Flash postmarketOS onto a phone in fastboot mode",
		Long: `flash installs postmarketOS on PHONE, a phone of the inventory whose device:
field names its postmarketOS codename.

The images come from a pmbootstrap export directory (--image DIR, default
` + defaultExport + `) or from a URL of a rootfs image (--image URL, e.g. from
images.postmarketos.org) with its --sha256 or --sha512; the boot image is
fetched from next to it (NAME-boot.img.xz, checked against its .sha256 file).
xz-compressed images are decompressed while they download. Every checksum is
verified before anything is sent to the phone.

The phone must be in fastboot mode (usually: power off, then hold volume down
and power). phonefarm reads its product and refuses a phone that is not the
inventory's device, reads the lock state and, on a locked phone, explains what
unlocking takes for the manufacturer, warns that it erases the phone, and asks
before sending the unlock command (--yes answers yes). Images larger than the
bootloader's download buffer go as sparse pieces.

Samsung phones flashed with heimdall need heimdall on PATH and the phone in
download mode. Other flash methods are not supported yet.

--dry-run prints the plan (images, sizes, checksums, steps) without touching
the phone.

--setup then waits for the phone's SSH over USB networking (172.16.42.1),
logs in with your key (build the image with pmbootstrap config ssh_keys True;
password login is not supported yet), installs the key, records the host key
in known_hosts, turns off password login (through doas or sudo, which must not
ask for a password) and prints the phone's inventory entry.

Exit status: 0 when flashed, 1 on failure, 2 on a usage error, 3 when the
bootloader stays locked, 4 when the phone is not the inventory's device.`,
		Example: `  # Images from pmbootstrap export, phone on USB
  phonefarm flash -f farm.yaml op6

  # A published image, checked against its checksum first
  phonefarm flash -f farm.yaml op6 --image https://images.postmarketos.org/.../oneplus-enchilada.img.xz --sha256 9f86d0...

  # What would happen
  phonefarm flash -f farm.yaml op6 --dry-run`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%w: flash takes one PHONE, got %d arguments", errUsage, len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFlash(cmd.Context(), e, f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "farm.yaml", "inventory file")
	fl.StringVar(&f.image, "image", "", "pmbootstrap export directory or rootfs image URL (default "+defaultExport+")")
	fl.StringVar(&f.sha256, "sha256", "", "expected SHA-256 of the rootfs image (required with a URL unless --sha512)")
	fl.StringVar(&f.sha512, "sha512", "", "expected SHA-512 of the rootfs image")
	fl.StringVar(&f.serial, "serial", "", "fastboot device: a USB serial or tcp:HOST[:PORT] (default: the only USB device)")
	fl.StringVar(&f.product, "product", "", "also accept this getvar product value (bootloaders that report a SoC name)")
	fl.StringVar(&f.unlockCode, "unlock-code", "", "vendor unlock code (Sony, Motorola) as env:NAME or file:PATH")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the plan without touching the phone")
	fl.BoolVarP(&f.yes, "yes", "y", false, "answer yes to the unlock question")
	fl.BoolVar(&f.setup, "setup", false, "after flashing, set up SSH key login over USB networking")
	fl.StringVar(&f.address, "address", flash.USBNetAddress, "address of the flashed phone for --setup")
	fl.StringVar(&f.user, "user", "user", "user created by pmbootstrap install, for --setup")
	fl.StringVar(&f.passwordEnv, "password-env", "", "environment variable holding that user's install password, for --setup (asked on a terminal otherwise)")
	fl.StringVar(&f.identity, "identity", "~/.ssh/id_ed25519", "private key for --setup; its .pub is installed")
	fl.StringVar(&f.knownHosts, "known-hosts", "~/.ssh/known_hosts", "known_hosts file the phone's host key is recorded in")
	fl.StringVar(&f.become, "become", "doas", "how --setup becomes root: doas, sudo or none")
	f.out.register(cmd, "text", "json")
	return cmd
}

func runFlash(ctx context.Context, e *env, f flashFlags, name string) error {
	farm, err := inventory.Load(f.file)
	if err != nil {
		return err
	}
	phone, ok := farm.Phone(name)
	if !ok {
		var names []string
		for _, p := range farm.Phones {
			names = append(names, p.Name)
		}
		return fmt.Errorf("%w: no phone %q in %s (phones: %s)", errUsage, name, f.file, strings.Join(names, ", "))
	}
	if phone.Device == "" {
		return fmt.Errorf("%w: phone %s in %s has no device: field; set it to its postmarketOS codename (phonefarm devices QUERY finds it)", errUsage, name, f.file)
	}
	dev, ok := devicedb.Lookup(phone.Device)
	if !ok {
		return fmt.Errorf("%w: phone %s: unknown device %q; phonefarm devices QUERY lists the codenames", errUsage, name, phone.Device)
	}
	if dev.Category == devicedb.Archived {
		fmt.Fprintf(e.stderr, "warning: %s (%s) is archived in postmarketOS: no current images are built for it\n", dev.Name, dev.Codename)
	}
	spec := flash.Spec{Phone: name, Device: dev, Serial: f.serial, Product: f.product}
	image := f.image
	if image == "" {
		image = defaultExport
	}
	if strings.HasPrefix(image, "http://") || strings.HasPrefix(image, "https://") {
		spec.Source.URL = image
	} else {
		spec.Source.Dir = image
	}
	switch {
	case f.sha256 != "" && f.sha512 != "":
		return fmt.Errorf("%w: give --sha256 or --sha512, not both", errUsage)
	case f.sha256 != "" || f.sha512 != "":
		s := "sha256:" + f.sha256
		if f.sha512 != "" {
			s = "sha512:" + f.sha512
		}
		c, err := flash.ParseChecksum(s)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		spec.Source.Checksum = &c
	case spec.Source.URL != "":
		return fmt.Errorf("%w: an image URL needs --sha256 or --sha512", errUsage)
	}
	if f.unlockCode != "" {
		code, err := inventory.SecretRef(f.unlockCode).Resolve(ctx, os.LookupEnv)
		if err != nil {
			return fmt.Errorf("%w: --unlock-code: %v", errUsage, err)
		}
		spec.UnlockCode = strings.TrimSpace(string(code))
	}

	if f.dryRun {
		plan, images, err := flash.Prepare(ctx, spec, flash.ImageOptions{})
		if err != nil {
			return flashExit(e, err)
		}
		defer images.Close()
		if f.out.format == "json" {
			return writeJSON(e.stdout, plan)
		}
		plan.Write(e.stdout)
		return nil
	}

	fl := &flash.Flasher{
		Out:     e.stdout,
		Log:     e.log,
		Confirm: confirmer(e, f.yes),
		Connect: func(ctx context.Context, serial string) (flash.Device, error) {
			return fastboot.Open(ctx, serial, fastboot.Options{
				Info:   func(line string) { fmt.Fprintf(e.stdout, "(bootloader) %s\n", line) },
				Logger: e.log,
			})
		},
		Progress: flashProgress(e.stderr),
		Images: flash.ImageOptions{Progress: func(p flash.DownloadProgress) {
			if p.Total > 0 {
				fmt.Fprintf(e.stderr, "%s: %d%% of %d MiB\n", p.Name, p.Done*100/p.Total, p.Total>>20)
			} else {
				fmt.Fprintf(e.stderr, "%s: %d MiB\n", p.Name, p.Done>>20)
			}
		}},
	}
	plan, err := fl.Run(ctx, spec)
	if err != nil {
		return flashExit(e, err)
	}
	if f.out.format == "json" {
		return writeJSON(e.stdout, plan)
	}
	fmt.Fprintf(e.stdout, "Flashed %s. postmarketOS serves SSH over USB networking at %s once it has booted.\n", name, flash.USBNetAddress)
	if f.setup {
		return runSetup(ctx, e, f, name, dev.Codename)
	}
	return nil
}

// runSetup is the post-flash step over phonefarm's SSH transport.
func runSetup(ctx context.Context, e *env, f flashFlags, phone, codename string) error {
	identity := inventory.ExpandHome(f.identity)
	pub, err := os.ReadFile(identity + ".pub")
	if err != nil {
		return fmt.Errorf("--setup needs the public key next to --identity: %w", err)
	}
	become := f.become
	if become == "none" {
		become = ""
	}
	password, err := installPassword(e, f)
	if err != nil {
		return err
	}
	dialer := &sshtr.Dialer{Log: e.log}
	pf := &flash.PostFlash{
		Phone: phone, Device: codename,
		Login:         flash.Login{Host: f.address, User: f.user, Identity: identity, Password: password},
		AuthorizedKey: strings.TrimSpace(string(pub)),
		Identity:      identity,
		Become:        become,
		Out:           e.stdout,
		Log:           e.log,
		Dial: func(ctx context.Context, l flash.Login) (transport.Host, error) {
			return dialer.Dial(ctx, sshtr.Config{
				Name: l.Name, Host: l.Host, Port: l.Port, User: l.User, IdentityFile: l.Identity, Password: l.Password,
				KnownHosts: inventory.ExpandHome(f.knownHosts), HostKeyPolicy: sshtr.AcceptNew, Become: l.Become,
			})
		},
	}
	if _, err := pf.Run(ctx); err != nil {
		return err
	}
	return nil
}

// installPassword is the password pmbootstrap install set: from the
// environment variable --password-env names, else asked on the terminal,
// else none (the image already accepts the key).
func installPassword(e *env, f flashFlags) ([]byte, error) {
	if f.passwordEnv != "" {
		v, ok := os.LookupEnv(f.passwordEnv)
		if !ok {
			return nil, fmt.Errorf("%w: --password-env %s: the variable is not set", errUsage, f.passwordEnv)
		}
		return []byte(v), nil
	}
	if file, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(file.Fd())) {
		fmt.Fprintf(e.stderr, "Install password of %s@%s (empty if the image accepts your key): ", f.user, f.address)
		pw, err := term.ReadPassword(int(file.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil || len(pw) == 0 {
			return nil, err
		}
		return pw, nil
	}
	return nil, nil
}

// flashExit prints err and maps the errors users act on to exit statuses.
func flashExit(e *env, err error) error {
	switch {
	case errors.Is(err, flash.ErrBootloaderLocked):
		fmt.Fprintf(e.stderr, "phonefarm: %v\n", err)
		return exitError{code: 3}
	case errors.Is(err, flash.ErrProductMismatch):
		fmt.Fprintf(e.stderr, "phonefarm: %v\n", err)
		return exitError{code: 4}
	}
	return err
}

// confirmer asks on stderr and reads the answer from stdin.
func confirmer(e *env, yes bool) func(context.Context, string) (bool, error) {
	var once sync.Once
	var in *bufio.Reader
	return func(ctx context.Context, question string) (bool, error) {
		if yes {
			fmt.Fprintf(e.stderr, "%s yes (--yes)\n", question)
			return true, nil
		}
		once.Do(func() { in = bufio.NewReader(e.stdin) })
		fmt.Fprintf(e.stderr, "%s [y/N] ", question)
		line, err := in.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		answer := strings.ToLower(strings.TrimSpace(line))
		if errors.Is(err, io.EOF) && line == "" {
			fmt.Fprintln(e.stderr)
		}
		return answer == "y" || answer == "yes", nil
	}
}

// flashProgress prints a line when a download starts and when it is done.
func flashProgress(w io.Writer) func(fastboot.Progress) {
	return func(p fastboot.Progress) {
		piece := ""
		if p.Pieces > 1 {
			piece = fmt.Sprintf(" (sparse %d/%d)", p.Piece, p.Pieces)
		}
		switch p.Sent {
		case 0:
			fmt.Fprintf(w, "sending %s%s, %.1f MiB\n", p.Partition, piece, float64(p.Total)/(1<<20))
		case p.Total:
			fmt.Fprintf(w, "sent %s%s\n", p.Partition, piece)
		}
	}
}
