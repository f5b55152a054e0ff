// Package connect opens a transport.Host for an inventory phone: the one
// place that maps inventory settings onto the SSH and adb transports. The
// CLI, the TUI and the Pulumi provider share it.
package connect

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport"
	"github.com/phonefarm/phonefarm/transport/adb"
	"github.com/phonefarm/phonefarm/transport/ssh"
)

// Connector opens connections to the phones of one farm.
type Connector struct {
	Farm *inventory.Farm
	SSH  *ssh.Dialer
	Log  *slog.Logger
	// DialTimeout bounds reaching one phone (default 15s).
	DialTimeout time.Duration
}

// Open connects to p over its transport.
func (c *Connector) Open(ctx context.Context, p *inventory.Phone) (transport.Host, error) {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case p.ADB != nil:
		return adb.Dial(ctx, adb.Config{Name: p.Name, Serial: p.ADB.Serial, Server: p.ADBServer(), Logger: log})
	case p.SSH != nil:
		r := c.Farm.SSHFor(p)
		d := c.SSH
		if d == nil {
			d = &ssh.Dialer{Log: log}
		}
		return d.Dial(ctx, ssh.Config{
			Name: p.Name, Host: r.Host, Port: r.Port, User: r.User,
			IdentityFile: r.IdentityFile, Agent: r.Agent,
			KnownHosts: r.KnownHosts, HostKeyPolicy: ssh.HostKeyPolicy(r.HostKeyPolicy),
			Become: r.Become, DialTimeout: c.DialTimeout,
		})
	}
	return nil, fmt.Errorf("phone %s has no transport in %s", p.Name, c.Farm.File())
}
