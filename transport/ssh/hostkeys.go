package ssh

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyPolicy says what to do with a host key known_hosts does not hold.
type HostKeyPolicy string

const (
	// Strict refuses unknown host keys.
	Strict HostKeyPolicy = "strict"
	// AcceptNew records an unknown host key on first use. A key that
	// differs from a recorded one is always refused.
	AcceptNew HostKeyPolicy = "accept-new"
)

// ErrHostKeyMismatch is returned when a host presents a key other than the
// one recorded for it in known_hosts.
var ErrHostKeyMismatch = errors.New("host key mismatch")

// ErrUnknownHostKey is returned under the strict policy for a host that
// known_hosts does not know.
var ErrUnknownHostKey = errors.New("unknown host key")

// knownHostsFiles serialises reading and appending known_hosts files
// among the connections of one Dialer.
type knownHostsFiles struct {
	mu sync.Mutex
}

// callback returns a HostKeyCallback for file under policy, and the key
// algorithms already known for addr so the server is asked for those first
// (otherwise a host with several keys could present one we do not have).
func (k *knownHostsFiles) callback(file, name string, policy HostKeyPolicy) (ssh.HostKeyCallback, error) {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		k.mu.Lock()
		defer k.mu.Unlock()
		db, err := openKnownHosts(file)
		if err != nil {
			return err
		}
		err = db(hostname, remote, key)
		var ke *knownhosts.KeyError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ke) && len(ke.Want) > 0:
			known := ke.Want[0]
			return fmt.Errorf("%w for %s (%s): %s line %d has %s %s, the host presented %s %s; if the phone was reflashed, remove the old key with: ssh-keygen -f %s -R %s",
				ErrHostKeyMismatch, name, hostname, known.Filename, known.Line, known.Key.Type(), ssh.FingerprintSHA256(known.Key),
				key.Type(), ssh.FingerprintSHA256(key), file, knownhosts.Normalize(hostname))
		case errors.As(err, &ke):
			if policy != AcceptNew {
				return fmt.Errorf("%w for %s (%s): %s %s is not in %s; check the fingerprint on the phone (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and add it, or set hostKeyPolicy: accept-new to record it on first use",
					ErrUnknownHostKey, name, hostname, key.Type(), ssh.FingerprintSHA256(key), file)
			}
			return appendKnownHost(file, hostname, key)
		default:
			return err
		}
	}, nil
}

// knownAlgorithms lists the key types known_hosts holds for hostport.
func (k *knownHostsFiles) knownAlgorithms(file, hostport string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	db, err := openKnownHosts(file)
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if err := db(hostport, &net.TCPAddr{}, probeKey{}); !errors.As(err, &ke) {
		return nil
	}
	var algs []string
	for _, w := range ke.Want {
		algs = append(algs, algorithmsFor(w.Key.Type())...)
	}
	return algs
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

func openKnownHosts(file string) (ssh.HostKeyCallback, error) {
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		// An absent file knows no host; knownhosts.New needs a file.
		empty, err := os.CreateTemp("", "phonefarm-known-hosts-")
		if err != nil {
			return nil, err
		}
		empty.Close()
		defer os.Remove(empty.Name())
		return knownhosts.New(empty.Name())
	}
	cb, err := knownhosts.New(file)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts %s: %w", file, err)
	}
	return cb, nil
}

func appendKnownHost(file, hostname string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key) + "\n"
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("record host key in %s: %w", file, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// probeKey is a key no host has, used to ask known_hosts which keys it
// holds for a host.
type probeKey struct{}

func (probeKey) Type() string                        { return "phonefarm-probe" }
func (probeKey) Marshal() []byte                     { return []byte("phonefarm-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }
