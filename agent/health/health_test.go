package health

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/phonefarm/phonefarm/agent/node"
)

// sysfs is a phone's power-supply and thermal classes in a directory.
type sysfs string

func (s sysfs) set(t *testing.T, file, value string) {
	t.Helper()
	p := filepath.Join(string(s), file)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(value+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newPhone(t *testing.T) sysfs {
	s := sysfs(t.TempDir())
	s.set(t, "class/power_supply/battery/type", "Battery")
	s.set(t, "class/power_supply/battery/capacity", "80")
	s.set(t, "class/power_supply/battery/status", "Charging")
	s.set(t, "class/power_supply/ac/type", "Mains")
	s.set(t, "class/power_supply/ac/online", "1")
	s.set(t, "class/thermal/thermal_zone0/temp", "35000")
	return s
}

// The reporter's conditions and taint follow the phone: the charger
// pulled and the battery drained set PhoneBatteryLow and the battery-low
// taint, heat the hot one, recovery removes it; lastTransitionTime moves
// only on a flip, also across a restart; the kubelet's conditions and
// other taints are left alone.
func TestReporter(t *testing.T) {
	ctx := context.Background()
	phone := newPhone(t)
	other := corev1.Taint{Key: "dedicated", Value: "ci", Effect: corev1.TaintEffectNoSchedule}
	client := fake.NewClientset(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "phone"},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{other}},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}}},
	})
	clock := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	newReporter := func() *Reporter {
		return &Reporter{Client: client, Node: "phone", Sensors: node.Sensors{Sys: string(phone), Dir: t.TempDir()},
			Thresholds: node.DefaultThresholds, Now: func() time.Time { return clock }}
	}
	r := newReporter()
	state := func() (map[corev1.NodeConditionType]corev1.NodeCondition, []corev1.Taint) {
		t.Helper()
		n, err := client.CoreV1().Nodes().Get(ctx, "phone", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m := map[corev1.NodeConditionType]corev1.NodeCondition{}
		for _, c := range n.Status.Conditions {
			m[c.Type] = c
		}
		return m, n.Spec.Taints
	}
	report := func(r *Reporter, step time.Duration) {
		t.Helper()
		clock = clock.Add(step)
		if err := r.Report(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wantTaints := func(when string, want ...corev1.Taint) {
		t.Helper()
		_, got := state()
		if len(got) != len(want) {
			t.Fatalf("%s: taints %v, want %v", when, got, want)
		}
		for i := range want {
			if got[i].Key != want[i].Key || got[i].Value != want[i].Value || got[i].Effect != want[i].Effect {
				t.Errorf("%s: taints %v, want %v", when, got, want)
			}
		}
	}

	report(r, 0)
	conds, _ := state()
	if conds[corev1.NodeReady].Reason != "KubeletReady" {
		t.Errorf("the kubelet's Ready condition was changed: %+v", conds[corev1.NodeReady])
	}
	for _, c := range []corev1.NodeConditionType{node.OnBattery, node.BatteryLow, node.Hot} {
		if conds[c].Status != corev1.ConditionFalse {
			t.Errorf("on the charger and cool: %s is %q, want False", c, conds[c].Status)
		}
	}
	wantTaints("on the charger and cool", other)

	// Off the charger, drained below the threshold.
	phone.set(t, "class/power_supply/ac/online", "0")
	phone.set(t, "class/power_supply/battery/status", "Discharging")
	phone.set(t, "class/power_supply/battery/capacity", "15")
	report(r, 10*time.Second)
	drained := clock
	conds, _ = state()
	if c := conds[node.BatteryLow]; c.Status != corev1.ConditionTrue || !c.LastTransitionTime.Time.Equal(drained) {
		t.Errorf("drained: PhoneBatteryLow %q since %v, want True since %v", c.Status, c.LastTransitionTime, drained)
	}
	wantTaints("drained", other, corev1.Taint{Key: TaintKey, Value: "battery-low", Effect: corev1.TaintEffectNoSchedule})

	// Still drained, a minute on and after a restart: no transition.
	report(r, time.Minute)
	report(newReporter(), 10*time.Second)
	conds, _ = state()
	if c := conds[node.BatteryLow]; !c.LastTransitionTime.Time.Equal(drained) || !c.LastHeartbeatTime.Time.Equal(clock) {
		t.Errorf("still drained: PhoneBatteryLow since %v (heartbeat %v), want since %v (heartbeat %v)", c.LastTransitionTime, c.LastHeartbeatTime, drained, clock)
	}

	// Hot as well: the taint says hot.
	phone.set(t, "class/thermal/thermal_zone0/temp", "52000")
	report(r, 10*time.Second)
	wantTaints("hot", other, corev1.Taint{Key: TaintKey, Value: "hot", Effect: corev1.TaintEffectNoSchedule})

	// Cool and back on the charger: the taint goes, the others stay.
	phone.set(t, "class/thermal/thermal_zone0/temp", "30000")
	phone.set(t, "class/power_supply/ac/online", "1")
	phone.set(t, "class/power_supply/battery/status", "Charging")
	report(r, 10*time.Second)
	conds, _ = state()
	if c := conds[node.BatteryLow]; c.Status != corev1.ConditionFalse || !c.LastTransitionTime.Time.Equal(clock) {
		t.Errorf("recovered: PhoneBatteryLow %q since %v, want False since %v", c.Status, c.LastTransitionTime, clock)
	}
	wantTaints("recovered", other)
}
