// Package ssh implements transport.Host over SSH with
// golang.org/x/crypto/ssh and github.com/pkg/sftp.
//
// One SSH connection is kept per host and reused by every command and
// transfer; file transfers share one SFTP session on it and write large
// files with concurrent requests. Host keys are checked against known_hosts:
// unknown keys are refused unless the host's policy is accept-new, which
// records them; a changed key is always refused, naming both fingerprints.
package ssh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/phonefarm/phonefarm/transport"
)

var _ transport.Host = (*Host)(nil)

// Config says how to reach one phone.
type Config struct {
	Name          string // inventory name, used in errors and logs
	Host          string
	Port          int
	User          string
	IdentityFile  string // private key; empty tries ~/.ssh/id_ed25519, id_ecdsa, id_rsa
	Agent         bool   // also offer the keys of the ssh-agent at $SSH_AUTH_SOCK
	KnownHosts    string
	HostKeyPolicy HostKeyPolicy
	Become        string // "sudo", "doas", or "" / "none"
	// Password, when set, is offered as password authentication after any
	// keys (a freshly flashed phone only knows
	// its install password). It is never logged.
	Password []byte
	// DialTimeout bounds the TCP connect and SSH handshake (default 15s).
	DialTimeout time.Duration
	// KeepAlive is the interval of keepalive requests (default 15s); after
	// three unanswered ones the connection is closed.
	KeepAlive time.Duration
}

// Dialer opens SSH connections. One Dialer serves a whole run: it
// serialises known_hosts updates and asks each passphrase once.
type Dialer struct {
	// Passphrase is asked for a passphrase-protected identity file; nil
	// means such keys cannot be used. The CLI prompts on the terminal.
	Passphrase func(file string) ([]byte, error)
	Log        *slog.Logger

	known   knownHostsFiles
	mu      sync.Mutex
	signers map[string]ssh.Signer
}

// Host is a connected phone.
type Host struct {
	cfg    Config
	client *ssh.Client
	log    *slog.Logger
	become string

	sftpOnce sync.Once
	sftp     *sftp.Client
	sftpErr  error

	done chan struct{}
}

// Dial connects to the phone and authenticates.
func (d *Dialer) Dial(ctx context.Context, cfg Config) (*Host, error) {
	if cfg.Port == 0 {
		cfg.Port = 22
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 15 * time.Second
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	if cfg.HostKeyPolicy == "" {
		cfg.HostKeyPolicy = Strict
	}
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("host", cfg.Name)
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))

	auth, closeAgent, err := d.authMethods(cfg)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", cfg.Name, err)
	}
	defer closeAgent()
	hostKey, err := d.known.callback(cfg.KnownHosts, cfg.Name, cfg.HostKeyPolicy)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", cfg.Name, err)
	}
	clientCfg := &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              auth,
		HostKeyCallback:   hostKey,
		HostKeyAlgorithms: d.known.knownAlgorithms(cfg.KnownHosts, addr),
		Timeout:           cfg.DialTimeout,
	}

	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	conn, err := (&net.Dialer{KeepAlive: cfg.KeepAlive}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: connect to %s: %w: %w", cfg.Name, addr, transport.ErrUnreachable, err)
	}
	// The handshake must not hang on a phone that accepts TCP and stalls.
	_ = conn.SetDeadline(time.Now().Add(cfg.DialTimeout))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, clientCfg)
	stop()
	if err != nil {
		conn.Close()
		if errors.Is(err, ErrHostKeyMismatch) || errors.Is(err, ErrUnknownHostKey) {
			return nil, fmt.Errorf("ssh %s: %w", cfg.Name, err)
		}
		var ne net.Error
		if errors.As(err, &ne) || ctx.Err() != nil {
			return nil, fmt.Errorf("ssh %s: handshake with %s: %w: %w", cfg.Name, addr, transport.ErrUnreachable, err)
		}
		return nil, fmt.Errorf("ssh %s: log in to %s as %s: %w", cfg.Name, addr, cfg.User, err)
	}
	_ = conn.SetDeadline(time.Time{})
	h := &Host{cfg: cfg, client: ssh.NewClient(c, chans, reqs), log: log, done: make(chan struct{})}
	if cfg.Become != "" && cfg.Become != "none" && cfg.User != "root" {
		h.become = cfg.Become
	}
	go h.keepAlive()
	log.Debug("connected", "addr", addr, "user", cfg.User)
	return h, nil
}

func (d *Dialer) authMethods(cfg Config) ([]ssh.AuthMethod, func(), error) {
	var signers []ssh.Signer
	files := []string{cfg.IdentityFile}
	if cfg.IdentityFile == "" {
		files = nil
		if home, err := os.UserHomeDir(); err == nil {
			for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
				if _, err := os.Stat(filepath.Join(home, ".ssh", n)); err == nil {
					files = append(files, filepath.Join(home, ".ssh", n))
				}
			}
		}
	}
	for _, f := range files {
		s, err := d.signer(f)
		if err != nil && len(cfg.Password) > 0 && errors.Is(err, os.ErrNotExist) {
			continue // password login without a key
		}
		if err != nil {
			return nil, func() {}, err
		}
		signers = append(signers, s)
	}
	closeAgent := func() {}
	var methods []ssh.AuthMethod
	if len(signers) > 0 {
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	if cfg.Agent {
		if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
			conn, err := net.Dial("unix", sock)
			if err != nil {
				return nil, closeAgent, fmt.Errorf("connect to ssh-agent at %s: %w", sock, err)
			}
			closeAgent = func() { conn.Close() }
			methods = append(methods, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
		}
	}
	if len(cfg.Password) > 0 {
		// Password authentication only: offering keyboard-interactive as
		// well makes the whole login fail where sshd runs without PAM, as
		// on postmarketOS.
		methods = append(methods, ssh.Password(string(cfg.Password)))
	}
	if len(methods) == 0 {
		return nil, closeAgent, errors.New("no SSH key to log in with: set ssh.identityFile in the inventory or load a key into ssh-agent")
	}
	return methods, closeAgent, nil
}

// signer parses an identity file once per Dialer, asking for its
// passphrase when it has one.
func (d *Dialer) signer(file string) (ssh.Signer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.signers[file]; ok {
		return s, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read identity file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if d.Passphrase == nil {
			return nil, fmt.Errorf("identity file %s is protected by a passphrase and there is no terminal to ask for it; load it into ssh-agent instead", file)
		}
		pass, perr := d.Passphrase(file)
		if perr != nil {
			return nil, fmt.Errorf("passphrase for %s: %w", file, perr)
		}
		s, err = ssh.ParsePrivateKeyWithPassphrase(pem, pass)
		clear(pass)
	}
	if err != nil {
		return nil, fmt.Errorf("parse identity file %s: %w", file, err)
	}
	if d.signers == nil {
		d.signers = map[string]ssh.Signer{}
	}
	d.signers[file] = s
	return s, nil
}

func (h *Host) keepAlive() {
	t := time.NewTicker(h.cfg.KeepAlive)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := h.client.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case err := <-reply:
			if err != nil {
				return // the connection is gone; callers see their own errors
			}
			missed = 0
		case <-time.After(h.cfg.KeepAlive):
			if missed++; missed >= 3 {
				h.log.Warn("phone stopped answering keepalives; closing the connection")
				h.client.Close()
				return
			}
		case <-h.done:
			return
		}
	}
}

// Name implements transport.Host.
func (h *Host) Name() string { return h.cfg.Name }

// Describe implements transport.Host.
func (h *Host) Describe() transport.Description {
	return transport.Description{Transport: "ssh", Address: net.JoinHostPort(h.cfg.Host, strconv.Itoa(h.cfg.Port)), User: h.cfg.User, Become: h.become}
}

// Close implements transport.Host.
func (h *Host) Close() error {
	select {
	case <-h.done:
		return nil
	default:
		close(h.done)
	}
	if h.sftp != nil {
		h.sftp.Close()
	}
	return h.client.Close()
}
