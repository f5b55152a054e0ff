package node

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// phoneTree is a sysfs- and procfs-shaped tree a test changes as a phone's
// kernel would.
type phoneTree struct {
	t         *testing.T
	proc, sys string
}

func newPhoneTree(t *testing.T) *phoneTree {
	d := t.TempDir()
	p := &phoneTree{t: t, proc: filepath.Join(d, "proc"), sys: filepath.Join(d, "sys")}
	p.write("proc/meminfo", "MemTotal:        3891256 kB\nMemFree:          201480 kB\nMemAvailable:    1804236 kB\n")
	p.write("proc/loadavg", "0.52 0.58 0.59 2/1043 12345\n")
	p.write("proc/sys/kernel/pid_max", "32768\n")
	p.write("sys/class/power_supply/battery/type", "Battery\n")
	p.write("sys/class/power_supply/usb/type", "USB\n")
	p.write("sys/class/thermal/thermal_zone0/temp", "36500\n")
	p.write("sys/class/thermal/thermal_zone1/temp", "-273000\n") // a broken zone
	p.battery(80, "Charging", true)
	return p
}

func (p *phoneTree) write(rel, content string) {
	p.t.Helper()
	f := filepath.Join(filepath.Dir(p.proc), rel)
	if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

func (p *phoneTree) battery(level int, status string, usb bool) {
	p.write("sys/class/power_supply/battery/capacity", strconv.Itoa(level)+"\n")
	p.write("sys/class/power_supply/battery/status", status+"\n")
	online := "0"
	if usb {
		online = "1"
	}
	p.write("sys/class/power_supply/usb/online", online+"\n")
}

func (p *phoneTree) sensors(t *testing.T) Sensors {
	return Sensors{Dir: t.TempDir(), Proc: p.proc, Sys: p.sys, Dumpsys: "/nonexistent"}
}

func TestSensorsReadAPhone(t *testing.T) {
	p := newPhoneTree(t)
	r, err := p.sensors(t).Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.MemTotal != 3891256*1024 || r.MemAvailable != 1804236*1024 {
		t.Errorf("memory: got %d/%d", r.MemAvailable, r.MemTotal)
	}
	if r.Tasks != 1043 || r.TaskMax != 32768 {
		t.Errorf("tasks: got %d of %d, want 1043 of 32768", r.Tasks, r.TaskMax)
	}
	if r.Battery == nil || *r.Battery != (Battery{Level: 80, Plugged: true, Charging: true}) {
		t.Errorf("battery: got %+v", r.Battery)
	}
	if !r.HasTemp || r.TempC != 36.5 {
		t.Errorf("temperature: got %v (%v), want 36.5 (the broken zone ignored)", r.TempC, r.HasTemp)
	}
	if r.DiskTotal == 0 || r.DiskFree > r.DiskTotal {
		t.Errorf("disk: got %d free of %d", r.DiskFree, r.DiskTotal)
	}
	if r.CPUs < 1 {
		t.Errorf("cpus: got %d", r.CPUs)
	}

	// A truncated meminfo is an error, not a node with no memory.
	p.write("proc/meminfo", "MemTotal:        3891256 kB\n")
	if _, err := p.sensors(t).Read(context.Background()); err == nil {
		t.Error("meminfo without MemAvailable: got no error")
	}
}

func TestParseDumpsysBattery(t *testing.T) {
	out := `Current Battery Service state:
  AC powered: false
  USB powered: true
  Wireless powered: false
  Max charging current: 500000
  status: 5
  health: 2
  present: true
  level: 100
  scale: 100
  voltage: 4350
  temperature: 291
  technology: Li-ion
`
	b := ParseDumpsysBattery([]byte(out))
	if b == nil || *b != (Battery{Level: 100, Plugged: true, Charging: false}) {
		t.Errorf("full on USB: got %+v", b)
	}
	if b := ParseDumpsysBattery([]byte("  present: false\n  level: 0\n")); b != nil {
		t.Errorf("no battery: got %+v, want nil", b)
	}
	if b := ParseDumpsysBattery([]byte("Can't find service: battery\n")); b != nil {
		t.Errorf("no service: got %+v, want nil", b)
	}
}

func status(conds []corev1.NodeCondition, typ corev1.NodeConditionType) (corev1.NodeCondition, bool) {
	for _, c := range conds {
		if c.Type == typ {
			return c, true
		}
	}
	return corev1.NodeCondition{}, false
}

// Pulling the charger and draining the battery flips the phone's
// conditions; their lastTransitionTime moves only on a flip, while the
// heartbeat moves on every update.
func TestConditionsTransitionOnlyOnFlips(t *testing.T) {
	p := newPhoneTree(t)
	s := p.sensors(t)
	c := Conditions{Thresholds: DefaultThresholds}
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return start.Add(time.Duration(min) * time.Minute) }
	update := func(min int) ([]corev1.NodeCondition, bool) {
		t.Helper()
		r, err := s.Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return c.Update(r, at(min))
	}
	expect := func(conds []corev1.NodeCondition, typ corev1.NodeConditionType, want corev1.ConditionStatus, since, beat int) {
		t.Helper()
		got, ok := status(conds, typ)
		if !ok {
			t.Fatalf("%s missing from %v", typ, conds)
		}
		if got.Status != want || !got.LastTransitionTime.Time.Equal(at(since)) || !got.LastHeartbeatTime.Time.Equal(at(beat)) {
			t.Errorf("%s: got %s since %s (heartbeat %s), want %s since %s (heartbeat %s)", typ, got.Status,
				got.LastTransitionTime.Time.Format("15:04"), got.LastHeartbeatTime.Time.Format("15:04"), want, at(since).Format("15:04"), at(beat).Format("15:04"))
		}
	}

	conds, flipped := update(0)
	if !flipped {
		t.Error("first update: got no flip")
	}
	expect(conds, corev1.NodeReady, corev1.ConditionTrue, 0, 0)
	expect(conds, OnBattery, corev1.ConditionFalse, 0, 0)
	expect(conds, BatteryLow, corev1.ConditionFalse, 0, 0)
	expect(conds, Hot, corev1.ConditionFalse, 0, 0)

	if conds, flipped = update(1); flipped {
		t.Error("nothing changed: got a flip")
	}
	expect(conds, OnBattery, corev1.ConditionFalse, 0, 1)

	p.battery(60, "Discharging", false) // the charger pulled
	conds, flipped = update(2)
	if !flipped {
		t.Error("charger pulled: got no flip")
	}
	expect(conds, OnBattery, corev1.ConditionTrue, 2, 2)
	expect(conds, BatteryLow, corev1.ConditionFalse, 0, 2)

	p.battery(40, "Discharging", false) // draining, above the threshold
	if conds, flipped = update(3); flipped {
		t.Error("a level change within the threshold: got a flip")
	}
	expect(conds, OnBattery, corev1.ConditionTrue, 2, 3)

	p.battery(15, "Discharging", false)
	conds, _ = update(4)
	expect(conds, BatteryLow, corev1.ConditionTrue, 4, 4)
	expect(conds, corev1.NodeReady, corev1.ConditionTrue, 0, 4)

	p.battery(16, "Charging", true) // plugged back in: recovers
	conds, _ = update(5)
	expect(conds, OnBattery, corev1.ConditionFalse, 5, 5)
	expect(conds, BatteryLow, corev1.ConditionFalse, 5, 5)

	p.write("sys/class/thermal/thermal_zone0/temp", "47000\n")
	conds, _ = update(6)
	expect(conds, Hot, corev1.ConditionTrue, 6, 6)

	p.write("proc/meminfo", "MemTotal: 3891256 kB\nMemAvailable: 51200 kB\n")
	conds, _ = update(7)
	expect(conds, corev1.NodeMemoryPressure, corev1.ConditionTrue, 7, 7)
	if got, _ := status(conds, corev1.NodeMemoryPressure); got.Message != "50 MiB available, below 100 MiB" {
		t.Errorf("memory message: got %q", got.Message)
	}
}

func TestNodeCapacityAndTaint(t *testing.T) {
	p := newPhoneTree(t)
	r, err := p.sensors(t).Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r.CPUs, r.DiskTotal = 8, 64<<30
	n := Info{Name: "pixel", IP: "10.0.0.5", Arch: "arm64", KubeletPort: 10250, KubeletVersion: "v1.32.0+k3s1",
		ReservedMemory: 1 << 30, ReservedDiskPercent: 10, Labels: map[string]string{ModelLabel: "Pixel_3a"}}.New(r)
	if got := n.Status.Capacity.Cpu().Value(); got != 8 {
		t.Errorf("cpu capacity: got %d, want 8", got)
	}
	if got, want := n.Status.Allocatable.Memory().Value(), int64(3891256*1024-(1<<30)); got != want {
		t.Errorf("allocatable memory: got %d, want %d", got, want)
	}
	if got, want := n.Status.Allocatable.StorageEphemeral().Value(), int64(float64(r.DiskTotal)*0.9); got != want {
		t.Errorf("allocatable disk: got %d, want %d", got, want)
	}
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0] != DefaultTaint {
		t.Errorf("taints: got %v, want the proot taint", n.Spec.Taints)
	}
	for k, v := range map[string]string{"kubernetes.io/arch": "arm64", "kubernetes.io/os": "linux", RuntimeLabel: Runtime, ModelLabel: "Pixel_3a"} {
		if n.Labels[k] != v {
			t.Errorf("label %s: got %q, want %q", k, n.Labels[k], v)
		}
	}
}

// The provider pushes a status only when something flipped.
func TestProviderPushesOnFlip(t *testing.T) {
	p := newPhoneTree(t)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	prov := &Provider{Info: Info{Name: "pixel", Arch: "arm64"}, Sensors: p.sensors(t), Thresholds: DefaultThresholds, Now: func() time.Time { return now }}
	if _, err := prov.Initial(context.Background()); err != nil {
		t.Fatal(err)
	}
	var pushed []*corev1.Node
	prov.NotifyNodeStatus(context.Background(), func(n *corev1.Node) { pushed = append(pushed, n) })
	prov.Measure(context.Background())
	if len(pushed) != 0 {
		t.Fatalf("no change: got %d pushes", len(pushed))
	}
	p.battery(10, "Discharging", false)
	now = now.Add(time.Minute)
	prov.Measure(context.Background())
	if len(pushed) != 1 {
		t.Fatalf("battery low: got %d pushes, want 1", len(pushed))
	}
	if c, _ := status(pushed[0].Status.Conditions, BatteryLow); c.Status != corev1.ConditionTrue {
		t.Errorf("pushed BatteryLow: got %s", c.Status)
	}
}
