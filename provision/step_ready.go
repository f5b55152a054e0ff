package provision

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/phonefarm/phonefarm/transport"
)

// readyStep waits until the node is registered and Ready in the API.
type readyStep struct {
	node string
	// ip is the address the node registers with, when known at plan
	// time: after an address change the node counts as Ready once the
	// API shows the new one.
	ip string
	// tailnet: the address is the phone's tailnet address, read during
	// apply when the plan did not know it.
	tailnet bool
	why     string
}

func (s *readyStep) Title() string { return "wait for node " + s.node + " to be Ready" }
func (s *readyStep) Why() string   { return s.why }

func (s *readyStep) Apply(ctx context.Context, t *Target) error {
	timeout := t.Env.readyTimeout()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	want := s.ip
	last := "not registered"
	said := ""
	for {
		if want == "" && s.tailnet {
			// With k3s-integrated, k3s joins the tailnet as it starts.
			if ip, _, err := tailnetSelf(ctx, t.Host); err == nil {
				want = ip
			}
		}
		if s.tailnet && want == "" {
			if msg := vpnFailure(ctx, t.Host); msg != "" {
				// k3s retries forever; a refused key will not get better.
				return fmt.Errorf("node %s: k3s could not join the tailnet (is the auth key valid and unexpired?): %s", s.node, msg)
			}
			last = "not on the tailnet yet"
		} else if c, err := t.Env.Cluster(ctx); err != nil {
			last = err.Error()
		} else {
			var ready bool
			if ready, last = s.observe(ctx, c, t.Restarted, want); ready {
				return nil
			}
		}
		// Say what the node is waiting for, once each time it changes.
		if last != said && t.Note != nil {
			t.Note("node " + s.node + ": " + last)
			said = last
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return fmt.Errorf("waiting for node %s to be Ready: %w", s.node, parent.Err())
			}
			return fmt.Errorf("node %s not Ready after %s: %s", s.node, timeout, last)
		case <-time.After(2 * time.Second):
		}
	}
}

// observe reads the node once: whether it is Ready with a heartbeat since
// restarted at address want (when known), else what it is instead.
func (s *readyStep) observe(ctx context.Context, c *Cluster, restarted time.Time, want string) (bool, string) {
	n, err := c.Client.CoreV1().Nodes().Get(ctx, s.node, metav1.GetOptions{})
	switch {
	case err != nil:
		return false, err.Error()
	case nodeReady(n) && heartbeatSince(n, restarted) && (want == "" || internalIP(n) == want):
		return true, ""
	case nodeReady(n) && heartbeatSince(n, restarted) && n.Annotations[annInternalIP] == want:
		// k3s's agent reports the new address, but its cloud controller
		// copies it into the node's status only on its next sync, up to
		// five minutes away: do it now.
		last := fmt.Sprintf("Ready, but registered at %s, not %s yet", internalIP(n), want)
		if err := setInternalIP(ctx, c, s.node, want); err != nil {
			last += ": " + err.Error()
		}
		return false, last
	case nodeReady(n) && heartbeatSince(n, restarted):
		return false, fmt.Sprintf("Ready, but registered at %s, not %s yet", internalIP(n), want)
	case nodeReady(n):
		return false, "Ready as of its last heartbeat, which predates the restart"
	}
	return false, readyMessage(n)
}

// heartbeatSince reports whether the node's Ready condition was posted at
// or after since (zero since: any time).
func heartbeatSince(n *corev1.Node, since time.Time) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return !c.LastHeartbeatTime.Time.Before(since)
		}
	}
	return false
}

func readyMessage(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return fmt.Sprintf("Ready=%s: %s", c.Status, c.Message)
		}
	}
	return "no Ready condition yet"
}

func internalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// annInternalIP is where k3s's agent publishes the node's address.
const annInternalIP = "k3s.io/internal-ip"

// setInternalIP sets the node's InternalIP in its status, as k3s's cloud
// controller would on its next sync.
func setInternalIP(ctx context.Context, c *Cluster, node, ip string) error {
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"addresses": []map[string]string{{"type": string(corev1.NodeInternalIP), "address": ip}}}})
	if err != nil {
		return err
	}
	_, err = c.Client.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	return err
}

// vpnFailure is k3s's last "tailscale up failed" message since it last
// started (k3s-integrated), or "".
func vpnFailure(ctx context.Context, h transport.Host) string {
	out, _ := transport.Output(ctx, h, `for f in /var/log/k3s.log /var/log/k3s-agent.log; do [ -f "$f" ] && tail -n 200 "$f"; done 2>/dev/null
command -v journalctl >/dev/null 2>&1 && journalctl -u k3s -u k3s-agent -n 200 --no-pager -o cat 2>/dev/null
true`)
	failure := ""
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.Contains(line, "Starting VPN: tailscale"):
			failure = "" // a newer start
		case strings.Contains(line, "tailscale up failed"):
			failure = line
			if i := strings.Index(line, "tailscale up failed"); i >= 0 {
				// logrus quotes the message: its newlines are "\n".
				failure = strings.Join(strings.Fields(strings.ReplaceAll(strings.Trim(line[i:], `" `), `\n`, " ")), " ")
			}
		}
	}
	return failure
}
