// Package health is phonefarm-agent's health mode for phones that run
// k3s: it reads the phone's battery, charger and temperature from sysfs
// (the same sensors as the rootless agent) and reports them on the
// phone's Node as conditions (PhoneOnBattery, PhoneBatteryLow, PhoneHot)
// whose lastTransitionTime moves only when their status flips, and keeps
// a NoSchedule taint on the node while the phone is hot or low on battery
// off the charger, so the scheduler places no new pod there.
package health

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/phonefarm/phonefarm/agent/node"
)

// TaintKey is the taint a phone carries while hot or low off the
// charger; its value says which (hot, battery-low).
const TaintKey = "phonefarm.dev/phone-health"

// phoneConditions are the conditions the reporter owns; the kubelet owns
// the rest.
var phoneConditions = []corev1.NodeConditionType{node.OnBattery, node.BatteryLow, node.Hot}

// Reporter reports one node's phone health.
type Reporter struct {
	Client     kubernetes.Interface
	Node       string
	Sensors    node.Sensors
	Thresholds node.Thresholds
	// Interval between readings (10s when zero); the status is patched
	// when a condition flips and at least every StatusEvery (1m).
	Interval, StatusEvery time.Duration
	Now                   func() time.Time
	Log                   *slog.Logger

	conds      node.Conditions
	seeded     bool
	lastStatus time.Time
}

func (r *Reporter) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Run reports until ctx ends; a failed report is logged and retried at
// the next reading.
func (r *Reporter) Run(ctx context.Context) error {
	interval := r.Interval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := r.Report(ctx); err != nil && ctx.Err() == nil && r.Log != nil {
			r.Log.Warn("report phone health", "node", r.Node, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Report reads the phone once and brings the node's phone conditions
// and taint up to date.
func (r *Reporter) Report(ctx context.Context) error {
	r.conds.Thresholds = r.Thresholds
	if !r.seeded {
		n, err := r.Client.CoreV1().Nodes().Get(ctx, r.Node, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read node %s: %w", r.Node, err)
		}
		r.conds.Seed(n.Status.Conditions)
		r.seeded = true
	}
	readings, err := r.Sensors.Read(ctx)
	if err != nil {
		return err
	}
	now := r.now()
	all, _ := r.conds.Update(readings, now)
	var mine []corev1.NodeCondition
	for _, c := range all {
		if slices.Contains(phoneConditions, c.Type) {
			mine = append(mine, c)
		}
	}
	every := r.StatusEvery
	if every <= 0 {
		every = time.Minute
	}
	if r.flipped(mine) || now.Sub(r.lastStatus) >= every {
		if err := r.patchConditions(ctx, mine); err != nil {
			return err
		}
		r.lastStatus = now
	}
	return r.taint(ctx, mine)
}

// flipped reports whether a condition's status changed since the last
// patch: Update stamps a flipped condition's lastTransitionTime with
// its heartbeat.
func (r *Reporter) flipped(conds []corev1.NodeCondition) bool {
	for _, c := range conds {
		if c.LastTransitionTime.Equal(&c.LastHeartbeatTime) {
			return true
		}
	}
	return false
}

// patchConditions merges conds into the node's status by type, leaving
// the kubelet's conditions as they are.
func (r *Reporter) patchConditions(ctx context.Context, conds []corev1.NodeCondition) error {
	if len(conds) == 0 {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": conds}})
	if err != nil {
		return err
	}
	_, err = r.Client.CoreV1().Nodes().PatchStatus(ctx, r.Node, patch)
	if err != nil {
		return fmt.Errorf("patch the conditions of node %s: %w", r.Node, err)
	}
	return nil
}

// WantTaint is the taint the conditions call for, or nil.
func WantTaint(conds []corev1.NodeCondition) *corev1.Taint {
	status := map[corev1.NodeConditionType]bool{}
	for _, c := range conds {
		status[c.Type] = c.Status == corev1.ConditionTrue
	}
	switch {
	case status[node.Hot]:
		return &corev1.Taint{Key: TaintKey, Value: "hot", Effect: corev1.TaintEffectNoSchedule}
	case status[node.BatteryLow]:
		return &corev1.Taint{Key: TaintKey, Value: "battery-low", Effect: corev1.TaintEffectNoSchedule}
	}
	return nil
}

// SameTaint reports whether a and b (either nil) are the same taint.
func SameTaint(a, b *corev1.Taint) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Key == b.Key && a.Value == b.Value && a.Effect == b.Effect
}

func (r *Reporter) taint(ctx context.Context, conds []corev1.NodeCondition) error {
	return (&Tainter{Client: r.Client, Node: r.Node, Now: r.now, Log: r.Log}).Sync(ctx, conds)
}

// Tainter keeps a node's health taint (WantTaint) in step with its phone
// conditions. A node's own credential may not change its taints
// (NodeRestriction), so Client is one that may: the per-node service
// account phonefarm apply makes for the reporter and the rootless agent.
type Tainter struct {
	Client kubernetes.Interface
	Node   string
	Now    func() time.Time
	Log    *slog.Logger
}

// Sync adds, changes or removes the node's health taint, leaving its
// other taints alone.
func (r *Tainter) Sync(ctx context.Context, conds []corev1.NodeCondition) error {
	want := WantTaint(conds)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := r.Client.CoreV1().Nodes().Get(ctx, r.Node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var taints []corev1.Taint
		var have *corev1.Taint
		for i, t := range n.Spec.Taints {
			if t.Key == TaintKey {
				have = &n.Spec.Taints[i]
				continue
			}
			taints = append(taints, t)
		}
		switch {
		case want == nil && have == nil:
			return nil
		case want != nil && SameTaint(have, want):
			return nil
		case want != nil:
			t := *want
			now := time.Now
			if r.Now != nil {
				now = r.Now
			}
			t.TimeAdded = &metav1.Time{Time: now()}
			taints = append(taints, t)
		}
		// The whole list, guarded by the resourceVersion read: a taint
		// someone else changed meanwhile is a conflict, read again.
		patch, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": n.ResourceVersion},
			"spec":     map[string]any{"taints": taints},
		})
		if err != nil {
			return err
		}
		_, err = r.Client.CoreV1().Nodes().Patch(ctx, r.Node, types.MergePatchType, patch, metav1.PatchOptions{})
		if err == nil && r.Log != nil {
			if want != nil {
				r.Log.Info("tainted", "node", r.Node, "taint", want.ToString())
			} else {
				r.Log.Info("untainted", "node", r.Node, "taint", TaintKey)
			}
		}
		return err
	})
}
