package flash

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/phonefarm/phonefarm/transport"
)

// USBNetAddress is where a freshly flashed postmarketOS phone serves SSH
// over USB networking.
const USBNetAddress = "172.16.42.1"

// Login says how to log in to a flashed phone.
type Login struct {
	// Name is the phone's inventory name.
	Name string
	Host string
	Port int
	User string
	// Password is the install password; nil means key authentication.
	// It never appears in logs or errors.
	Password []byte
	// Identity is the private key file for key authentication; empty
	// leaves the choice to the dial function.
	Identity string
	// Become is how the session becomes root ("sudo", "doas" or "" for
	// none); the install login never becomes root.
	Become string
}

// Dial logs in to a phone; the caller provides it (transport/ssh).
type Dial func(ctx context.Context, l Login) (transport.Host, error)

// PostFlash makes a freshly flashed phone manageable: it waits for SSH on
// the USB network, logs in with the install credentials, installs the
// user's SSH key, records the host key, checks that the key logs in, turns
// off password login and prints the inventory entry.
type PostFlash struct {
	Phone  string
	Device string
	// Login is the install login (user and password from pmbootstrap
	// install, or a key the image already accepts).
	Login Login
	// AuthorizedKey is the user's public key, one authorized_keys line,
	// and Identity the matching private key file, used to check that the
	// key logs in before password login is turned off.
	AuthorizedKey string
	Identity      string
	// Become is how the key login becomes root to turn off password login
	// ("sudo", "doas"; "" when Login.User is root).
	Become string
	Dial   Dial
	// Out receives progress and the inventory snippet.
	Out io.Writer
	Log *slog.Logger
	// Wait bounds the wait for the phone's SSH (default 5 minutes); Sleep
	// waits between attempts (nil sleeps for real).
	Wait  time.Duration
	Sleep func(ctx context.Context, d time.Duration) error
}

// PostFlashResult is what the post-flash step learned.
type PostFlashResult struct {
	// HostKeys are the phone's public host keys, "TYPE BASE64" each.
	HostKeys []string
	// Snippet is the phone's inventory entry.
	Snippet string
}

// sshdDropIn turns off password login. sshd_config includes
// /etc/ssh/sshd_config.d/*.conf at its top and the first value of a keyword
// wins, so the file sorts before any other drop-in.
const sshdDropIn = "/etc/ssh/sshd_config.d/00-phonefarm.conf"

// Run performs the post-flash steps.
func (p *PostFlash) Run(ctx context.Context) (PostFlashResult, error) {
	var res PostFlashResult
	out := p.Out
	if out == nil {
		out = io.Discard
	}
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("host", p.Phone)
	if strings.TrimSpace(p.AuthorizedKey) == "" || strings.ContainsAny(strings.TrimSpace(p.AuthorizedKey), "\n\r") {
		return res, fmt.Errorf("%s: want exactly one public key line to install", p.Phone)
	}
	l := p.Login
	if l.Host == "" {
		l.Host = USBNetAddress
	}
	if l.Port == 0 {
		l.Port = 22
	}
	l.Name = p.Phone
	fmt.Fprintf(out, "Waiting for %s to answer SSH at %s:%d (USB networking)...\n", p.Phone, l.Host, l.Port)
	h, err := p.waitDial(ctx, l, log)
	if err != nil {
		return res, err
	}
	defer h.Close()

	key := strings.TrimSpace(p.AuthorizedKey)
	q := transport.Quote(key)
	install := `umask 077 && mkdir -p "$HOME/.ssh" && touch "$HOME/.ssh/authorized_keys" && ` +
		`{ grep -qxF ` + q + ` "$HOME/.ssh/authorized_keys" || printf '%s\n' ` + q + ` >> "$HOME/.ssh/authorized_keys"; }`
	if _, err := transport.Output(ctx, h, install); err != nil {
		return res, fmt.Errorf("%s: install ssh key: %w", p.Phone, err)
	}
	fmt.Fprintf(out, "Installed your SSH key for %s.\n", l.User)

	keys, err := transport.Output(ctx, h, "cat /etc/ssh/ssh_host_*_key.pub")
	if err != nil {
		return res, fmt.Errorf("%s: read host keys: %w", p.Phone, err)
	}
	for _, line := range strings.Split(keys, "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			res.HostKeys = append(res.HostKeys, f[0]+" "+f[1])
		}
	}
	if len(res.HostKeys) == 0 {
		return res, fmt.Errorf("%s: no host keys in /etc/ssh", p.Phone)
	}

	// The key must work before passwords are turned off; that login
	// becomes root to do it.
	keyLogin := l
	keyLogin.Password, keyLogin.Identity, keyLogin.Become = nil, p.Identity, p.Become
	kh, err := p.Dial(ctx, keyLogin)
	if err != nil {
		return res, fmt.Errorf("%s: log in with the installed key (password login left on): %w", p.Phone, err)
	}
	defer kh.Close()

	conf := "# Written by phonefarm flash: keys only.\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
	if err := kh.WriteFile(ctx, sshdDropIn, 0o644, strings.NewReader(conf)); err != nil {
		return res, fmt.Errorf("%s: disable password login: %w", p.Phone, err)
	}
	reload := "if command -v rc-service >/dev/null; then rc-service sshd reload; else systemctl reload sshd || systemctl reload ssh; fi"
	if _, err := transport.Output(ctx, kh, reload); err != nil {
		return res, fmt.Errorf("%s: reload sshd: %w", p.Phone, err)
	}
	fmt.Fprintf(out, "Password login is off on %s.\n", p.Phone)

	res.Snippet = fmt.Sprintf("  - name: %s\n    device: %s\n    os: postmarketos\n    ssh:\n      host: %s\n      user: %s\n", p.Phone, p.Device, l.Host, l.User)
	fmt.Fprintf(out, "Host keys of %s:\n", p.Phone)
	for _, k := range res.HostKeys {
		fmt.Fprintf(out, "  %s\n", k)
	}
	fmt.Fprintf(out, "Inventory entry (under phones:):\n%s", res.Snippet)
	return res, nil
}

func (p *PostFlash) waitDial(ctx context.Context, l Login, log *slog.Logger) (transport.Host, error) {
	wait := p.Wait
	if wait == 0 {
		wait = 5 * time.Minute
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var last error
	for {
		h, err := p.Dial(wctx, l)
		if err == nil {
			return h, nil
		}
		last = err
		log.Debug("phone not reachable yet", "err", err)
		if !errors.Is(err, transport.ErrUnreachable) {
			return nil, fmt.Errorf("%s: log in as %s: %w", p.Phone, l.User, err)
		}
		sleep := p.Sleep
		if sleep == nil {
			sleep = sleepCtx
		}
		if err := sleep(wctx, 3*time.Second); err != nil {
			return nil, fmt.Errorf("%s: no SSH at %s:%d within %s: %w", p.Phone, l.Host, l.Port, wait, last)
		}
	}
}
