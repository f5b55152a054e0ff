// Package farm is phonefarm's engine as a library: open an inventory,
// plan and apply it, reset phones, get the cluster's kubeconfig, with
// the farm-wide lock that keeps two of them from working on the same
// phones at once. The command line, the TUI wizard and the Pulumi
// provider all drive it; none of them carries an engine of its own.
//
// Warnings (an unknown device, skipped checks, an API that does not
// answer) are returned as data, never printed; progress comes as
// provision events to an observer the caller gives.
package farm

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/phonefarm/phonefarm/devicedb"
	"github.com/phonefarm/phonefarm/internal/connect"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport"
	"github.com/phonefarm/phonefarm/transport/ssh"
)

// Options are what the engine takes from its caller instead of the
// process: logging, the clock, where to cache, how to ask for secrets.
type Options struct {
	// Log receives what the engine does; every record has a host attribute
	// where it is about one phone. Nothing is logged when nil.
	Log *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// CacheDir keeps downloads, hashes and locks (DefaultCacheDir when
	// empty).
	CacheDir string
	// Parallel bounds how many phones are worked on at once (10 when 0).
	Parallel int
	// Passphrase, when set, is asked for the passphrase of an encrypted
	// SSH key.
	Passphrase func(file string) ([]byte, error)
	// LookupEnv reads env: secrets (os.LookupEnv when nil).
	LookupEnv func(string) (string, bool)
	// HTTP fetches releases (http.DefaultClient when nil).
	HTTP *http.Client
}

// DefaultCacheDir is $PHONEFARM_CACHE, else phonefarm's directory in the
// user's cache directory.
func DefaultCacheDir() string {
	if d := os.Getenv("PHONEFARM_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "phonefarm")
	}
	return filepath.Join(os.TempDir(), "phonefarm-cache")
}

// Farm is an opened inventory.
type Farm struct {
	// Inventory is the validated inventory.
	Inventory *inventory.Farm
	opts      Options
}

// Open reads and validates the inventory at path and checks its phones'
// devices against the device database; what does not stop phonefarm is
// in Warnings.
func Open(path string, o Options) (*Farm, error) {
	inv, err := inventory.Load(path)
	if err != nil {
		return nil, err
	}
	return New(inv, o), nil
}

// New wraps an inventory already loaded (or built in code).
func New(inv *inventory.Farm, o Options) *Farm {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	if o.Parallel <= 0 {
		o.Parallel = 10
	}
	for i, p := range inv.Phones {
		if p.Device == "" {
			continue
		}
		d, ok := devicedb.Lookup(p.Device)
		path := fmt.Sprintf("phones[%d].device", i)
		switch {
		case !ok:
			vendor, _, _ := strings.Cut(p.Device, "-")
			inv.Warnf(path, "unknown postmarketOS device %q; phonefarm devices %s lists similar ones", p.Device, vendor)
		case d.Category == devicedb.Archived:
			inv.Warnf(path, "device %q (%s) is archived in postmarketOS: no longer maintained, images may not build", p.Device, d.Name)
		}
	}
	return &Farm{Inventory: inv, opts: o}
}

// Warnings are the inventory's problems that do not stop phonefarm.
func (f *Farm) Warnings() []inventory.Problem { return f.Inventory.Warnings() }

// Options are the options the farm was opened with, defaults filled in.
func (f *Farm) Options() Options { return f.opts }

// Select returns the named phones, or every phone when names is empty; an
// unknown name is an error listing the valid ones.
func (f *Farm) Select(names []string) ([]*inventory.Phone, error) {
	return f.Inventory.Select(names)
}

// Connect opens a connection to a phone of the farm over its transport.
func (f *Farm) Connect(ctx context.Context, p *inventory.Phone) (transport.Host, error) {
	return f.connector().Open(ctx, p)
}

func (f *Farm) connector() *connect.Connector {
	return &connect.Connector{Farm: f.Inventory, SSH: &ssh.Dialer{Log: f.opts.Log, Passphrase: f.opts.Passphrase}, Log: f.opts.Log}
}
