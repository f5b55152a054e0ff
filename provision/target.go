package provision

import (
	"context"
	"log/slog"
	"time"

	"github.com/phonefarm/phonefarm/transport"
)

// Target is one phone while its steps run.
type Target struct {
	Phone string
	Host  transport.Host
	Env   *Env
	// Progress reports bytes uploaded by the current step.
	Progress func(done, total int64)
	// Note reports what a long step is waiting for, when it changes.
	Note func(msg string)
	// Restarted is when k3s was last (re)started, by the phone's clock;
	// the node counts as Ready only on a heartbeat after it.
	Restarted time.Time
}

// Env is what steps share across the farm during one apply.
type Env struct {
	Log *slog.Logger
	// LookupEnv reads env: secrets (os.LookupEnv when nil).
	LookupEnv func(string) (string, bool)
	// Token returns the cluster's join token. It is never logged.
	Token func(ctx context.Context) ([]byte, error)
	// Cluster returns a client for the API through the first server.
	Cluster func(ctx context.Context) (*Cluster, error)
	// ServerURL returns the first server's API URL, which on a tailnet is
	// known only once the first server has joined it.
	ServerURL func(ctx context.Context) (string, error)
	// AuthKey returns a tailscale auth key for a phone: the inventory's,
	// or one minted for it. It is never logged.
	AuthKey func(ctx context.Context, phone string) ([]byte, error)
	// ReadyTimeout bounds waiting for a node to be Ready (default 5m).
	ReadyTimeout time.Duration
	// TailscaleAPI is the base URL of Tailscale's API that keys are
	// minted through when there is no loginServer (default
	// DefaultTailscaleAPI).
	TailscaleAPI string
}

// readyTimeout is ReadyTimeout, or its default of 5 minutes.
func (e *Env) readyTimeout() time.Duration {
	if e.ReadyTimeout == 0 {
		return 5 * time.Minute
	}
	return e.ReadyTimeout
}
