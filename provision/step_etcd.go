package provision

import (
	"context"
	"fmt"
	"strings"

	"github.com/phonefarm/phonefarm/transport"
)

// etcdMoveStep moves a server's embedded etcd member to the server's new
// address. etcd keeps each member's peer address in its data, so a k3s
// server whose node-ip changes (joining a tailnet, leaving it, a new LAN
// address) otherwise never starts again: "this server is a not a member of
// the etcd cluster". For a cluster with one server, k3s server
// --cluster-reset rewrites the membership with the current address and
// keeps the data. It leaves k3s stopped; the restart step starts it.
type etcdMoveStep struct {
	from, to string // to is "" when known only during apply (tailnet)
	servers  int    // servers in the farm
	phone    string
	init     initSystem
	service  string
	args     []string // the phone's extra k3s arguments (a --data-dir among them)
}

func (s *etcdMoveStep) Title() string {
	to := s.to
	if to == "" {
		to = "its tailnet address"
	}
	return fmt.Sprintf("move the etcd member from %s to %s", s.from, to)
}
func (s *etcdMoveStep) Why() string { return "the server's address changes and etcd keeps the old one" }

func (s *etcdMoveStep) Apply(ctx context.Context, t *Target) error {
	to := s.to
	if to == "" {
		ip, _, err := tailnetSelf(ctx, t.Host)
		if err != nil {
			return err
		}
		to = ip
	}
	if to == s.from {
		return nil
	}
	if s.servers > 1 {
		return errMultiServerMove(s.phone, s.from, to, s.servers)
	}
	stop := s.init.Command(s.service, "stop")
	// The reset runs on the current config with the new address (k3s
	// appends a --node-ip flag to the config's rather than replacing it),
	// before the new config is written: cut off anywhere, the next plan
	// sees the old address in the config and moves the member again.
	// --cluster-reset exits once the membership is rewritten; it is given
	// a time limit so a wedged reset fails the step rather than apply.
	// A reset removes nothing but the other members, and a one-server
	// cluster has none.
	out, err := transport.Output(ctx, t.Host, fmt.Sprintf(`set -e
%[1]s
sed -e '/^node-ip:/d' -e '/^advertise-address:/d' %[2]s > /run/phonefarm-etcd-move.yaml
printf 'node-ip: %%s\n' %[3]s >> /run/phonefarm-etcd-move.yaml
# k3s refuses a second reset while the flag of an earlier one is there.
rm -f /var/lib/rancher/k3s/server/db/reset-flag
set +e
timeout 300 %[4]s server --cluster-reset --config /run/phonefarm-etcd-move.yaml %[5]s > /var/log/phonefarm-etcd-move.log 2>&1
rc=$?
rm -f /run/phonefarm-etcd-move.yaml
grep -m1 'membership has been reset' /var/log/phonefarm-etcd-move.log || tail -n 3 /var/log/phonefarm-etcd-move.log
exit $rc`, stop, ConfigPath, transport.Quote(to), BinaryPath, transport.QuoteArgs(s.args...)))
	if err != nil {
		return fmt.Errorf("move etcd to %s (k3s server --cluster-reset; its log is /var/log/phonefarm-etcd-move.log): %w", to, err)
	}
	if !strings.Contains(out, "membership has been reset") {
		return fmt.Errorf("move etcd to %s: k3s server --cluster-reset ended without resetting the membership: %s", to, strings.TrimSpace(out))
	}
	return nil
}

func errMultiServerMove(phone, from, to string, servers int) error {
	return fmt.Errorf("server %s moves from %s to %s, but it is one of %d etcd members and phonefarm moves only the member of a one-server cluster; "+
		"keep its address, or take it out of the cluster and let it join again under the new one", phone, from, to, servers)
}

// serverCount is the number of servers in the farm.
func serverCount(in Input) int {
	n := 0
	for _, p := range in.Farm.Phones {
		if p.Role == "server" {
			n++
		}
	}
	return n
}
