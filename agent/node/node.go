// Package node is the agent's Node: its capacity, labels and taints, and
// conditions measured from the phone (memory, disk, tasks, battery,
// heat) whose lastTransitionTime moves only when a condition's status
// flips. It is the node provider virtual-kubelet drives: virtual-kubelet
// patches the status, this package says what the status is and pushes it
// at once when a condition flips; Lease renews the node's heartbeat.
package node

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/phonefarm/phonefarm/agent/config"
)

// Labels and the taint the agent's nodes carry (see package config).
const (
	RuntimeLabel = config.RuntimeLabel
	Runtime      = config.Runtime
	ModelLabel   = config.ModelLabel
	SDKLabel     = config.SDKLabel
)

// Phone conditions, beside the kubelet's own.
const (
	OnBattery  corev1.NodeConditionType = "PhoneOnBattery"
	BatteryLow corev1.NodeConditionType = "PhoneBatteryLow"
	Hot        corev1.NodeConditionType = "PhoneHot"
)

// DefaultTaint keeps pods that do not tolerate proot off the node.
var DefaultTaint = config.DefaultTaint

// Thresholds decide the pressure and phone conditions.
type Thresholds struct {
	// MemoryAvailable below which MemoryPressure is True (bytes).
	MemoryAvailable uint64
	// DiskFreePercent below which DiskPressure is True.
	DiskFreePercent float64
	// TasksPercent of pid_max above which PIDPressure is True.
	TasksPercent float64
	// BatteryLowPercent at or below which, off the charger, BatteryLow is
	// True.
	BatteryLowPercent int
	// HotC at or above which Hot is True.
	HotC float64
}

// DefaultThresholds are the kubelet's eviction defaults where it has them
// (memory 100Mi, disk 10%) and a phone's comfortable limits otherwise.
var DefaultThresholds = Thresholds{
	MemoryAvailable:   100 << 20,
	DiskFreePercent:   10,
	TasksPercent:      90,
	BatteryLowPercent: 20,
	HotC:              45,
}

// Info is what the node publishes about itself.
type Info struct {
	Name string
	IP   string
	Arch string // GOARCH
	// Labels are added to the node's own (os, arch, hostname, runtime).
	Labels map[string]string
	// Taints at registration; DefaultTaint when nil.
	Taints         []corev1.Taint
	KubeletPort    int32
	KubeletVersion string
	OSImage        string
	KernelVersion  string
	// MaxPods is the pods capacity.
	MaxPods int
	// ReservedMemory is kept for Android itself: capacity minus this is
	// allocatable. Zero keeps a quarter of the phone's memory.
	ReservedMemory uint64
	// ReservedDiskPercent of the disk is kept out of allocatable.
	ReservedDiskPercent float64
}

func quantity(n uint64) resource.Quantity {
	return *resource.NewQuantity(int64(n), resource.BinarySI)
}

// New builds the Node to register from the first readings.
func (i Info) New(r Readings) *corev1.Node {
	labels := map[string]string{
		"kubernetes.io/os":                 "linux",
		"kubernetes.io/arch":               i.Arch,
		"kubernetes.io/hostname":           i.Name,
		"beta.kubernetes.io/os":            "linux",
		"beta.kubernetes.io/arch":          i.Arch,
		"node.kubernetes.io/instance-type": "phonefarm-agent",
		RuntimeLabel:                       Runtime,
	}
	maps.Copy(labels, i.Labels)
	taints := i.Taints
	if taints == nil {
		taints = []corev1.Taint{DefaultTaint}
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: i.Name, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: taints},
	}
	n.Status = i.status(r)
	return n
}

func (i Info) status(r Readings) corev1.NodeStatus {
	maxPods := i.MaxPods
	if maxPods <= 0 {
		maxPods = 30
	}
	reserved := i.ReservedMemory
	if reserved == 0 {
		reserved = r.MemTotal / 4
	}
	memAlloc := uint64(0)
	if r.MemTotal > reserved {
		memAlloc = r.MemTotal - reserved
	}
	diskAlloc := uint64(float64(r.DiskTotal) * (1 - i.ReservedDiskPercent/100))
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewQuantity(int64(r.CPUs), resource.DecimalSI),
		corev1.ResourceMemory:           quantity(r.MemTotal),
		corev1.ResourceEphemeralStorage: quantity(r.DiskTotal),
		corev1.ResourcePods:             *resource.NewQuantity(int64(maxPods), resource.DecimalSI),
	}
	alloc := capacity.DeepCopy()
	alloc[corev1.ResourceMemory] = quantity(memAlloc)
	alloc[corev1.ResourceEphemeralStorage] = quantity(diskAlloc)
	return corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: alloc,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: i.IP},
			{Type: corev1.NodeHostName, Address: i.Name},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: i.KubeletPort}},
		NodeInfo: corev1.NodeSystemInfo{
			Architecture:            i.Arch,
			OperatingSystem:         "linux",
			KubeletVersion:          i.KubeletVersion,
			OSImage:                 i.OSImage,
			KernelVersion:           i.KernelVersion,
			ContainerRuntimeVersion: "proot://phonefarm",
		},
	}
}

type verdict struct {
	status          bool
	reason, message string
}

// judge turns readings into each condition's status, reason and message.
func (t Thresholds) judge(r Readings) map[corev1.NodeConditionType]verdict {
	v := map[corev1.NodeConditionType]verdict{
		corev1.NodeReady: {true, "AgentReady", "phonefarm agent is running pods under proot"},
	}
	if r.MemAvailable < t.MemoryAvailable {
		v[corev1.NodeMemoryPressure] = verdict{true, "AgentHasInsufficientMemory", fmt.Sprintf("%d MiB available, below %d MiB", r.MemAvailable>>20, t.MemoryAvailable>>20)}
	} else {
		v[corev1.NodeMemoryPressure] = verdict{false, "AgentHasSufficientMemory", fmt.Sprintf("%d MiB available", r.MemAvailable>>20)}
	}
	freePct := 100.0
	if r.DiskTotal > 0 {
		freePct = float64(r.DiskFree) * 100 / float64(r.DiskTotal)
	}
	if freePct < t.DiskFreePercent {
		v[corev1.NodeDiskPressure] = verdict{true, "AgentHasDiskPressure", fmt.Sprintf("%.0f%% of the disk free, below %.0f%%", freePct, t.DiskFreePercent)}
	} else {
		v[corev1.NodeDiskPressure] = verdict{false, "AgentHasNoDiskPressure", fmt.Sprintf("%.0f%% of the disk free", freePct)}
	}
	if r.TaskMax > 0 && float64(r.Tasks)*100/float64(r.TaskMax) > t.TasksPercent {
		v[corev1.NodePIDPressure] = verdict{true, "AgentHasInsufficientPID", fmt.Sprintf("%d of %d tasks in use", r.Tasks, r.TaskMax)}
	} else {
		v[corev1.NodePIDPressure] = verdict{false, "AgentHasSufficientPID", fmt.Sprintf("%d of %d tasks in use", r.Tasks, r.TaskMax)}
	}
	if b := r.Battery; b != nil {
		if b.Plugged {
			v[OnBattery] = verdict{false, "ChargerConnected", fmt.Sprintf("on the charger at %d%%", b.Level)}
		} else {
			v[OnBattery] = verdict{true, "ChargerDisconnected", fmt.Sprintf("running on the battery at %d%%", b.Level)}
		}
		if !b.Plugged && b.Level <= t.BatteryLowPercent {
			v[BatteryLow] = verdict{true, "BatteryLow", fmt.Sprintf("battery at %d%% off the charger (threshold %d%%)", b.Level, t.BatteryLowPercent)}
		} else {
			v[BatteryLow] = verdict{false, "BatteryOK", fmt.Sprintf("battery at %d%%", b.Level)}
		}
	}
	if r.HasTemp {
		if r.TempC >= t.HotC {
			v[Hot] = verdict{true, "PhoneHot", fmt.Sprintf("%.1f °C, at or above %.0f °C", r.TempC, t.HotC)}
		} else {
			v[Hot] = verdict{false, "PhoneCool", fmt.Sprintf("%.1f °C", r.TempC)}
		}
	}
	return v
}

// order is the conditions' order in the status.
var order = []corev1.NodeConditionType{
	corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure,
	OnBattery, BatteryLow, Hot,
}

// Conditions keeps the node's conditions across readings.
type Conditions struct {
	Thresholds Thresholds
	cur        map[corev1.NodeConditionType]corev1.NodeCondition
}

// Seed takes the conditions a node already has, so that a restarted
// reporter keeps their lastTransitionTime where the status has not
// flipped.
func (c *Conditions) Seed(existing []corev1.NodeCondition) {
	if c.cur == nil {
		c.cur = map[corev1.NodeConditionType]corev1.NodeCondition{}
	}
	for _, e := range existing {
		c.cur[e.Type] = e
	}
}

// Update judges new readings at now. A condition keeps its
// lastTransitionTime unless its status flips; flipped says whether any
// did (or a condition appeared or went).
func (c *Conditions) Update(r Readings, now time.Time) (conds []corev1.NodeCondition, flipped bool) {
	if c.cur == nil {
		c.cur = map[corev1.NodeConditionType]corev1.NodeCondition{}
	}
	t := metav1.NewTime(now)
	v := c.Thresholds.judge(r)
	for _, typ := range order {
		want, ok := v[typ]
		old, had := c.cur[typ]
		if !ok {
			if had {
				delete(c.cur, typ)
				flipped = true
			}
			continue
		}
		status := corev1.ConditionFalse
		if want.status {
			status = corev1.ConditionTrue
		}
		cond := corev1.NodeCondition{Type: typ, Status: status, Reason: want.reason, Message: want.message, LastHeartbeatTime: t, LastTransitionTime: t}
		if had && old.Status == status {
			cond.LastTransitionTime = old.LastTransitionTime
		} else {
			flipped = true
		}
		c.cur[typ] = cond
		conds = append(conds, cond)
	}
	return conds, flipped
}

// Provider is the node provider virtual-kubelet drives: it measures the
// phone every Interval and pushes the node's status when a condition
// flips or the phone's capacity changes.
type Provider struct {
	Info       Info
	Sensors    Sensors
	Thresholds Thresholds
	Interval   time.Duration // 10s when zero
	Log        *slog.Logger
	Now        func() time.Time
	// OnConditions, when set, is given the node's conditions after every
	// measurement (the agent keeps its health taint from them). It must
	// not block.
	OnConditions func([]corev1.NodeCondition)

	mu     sync.Mutex
	conds  Conditions
	node   *corev1.Node
	notify func(*corev1.Node)
}

func (p *Provider) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Initial measures the phone and returns the node to register.
func (p *Provider) Initial(ctx context.Context) (*corev1.Node, error) {
	r, err := p.Sensors.Read(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conds.Thresholds = p.Thresholds
	n := p.Info.New(r)
	n.Status.Conditions, _ = p.conds.Update(r, p.now())
	p.node = n.DeepCopy()
	return n, nil
}

// Ping says the agent is alive; virtual-kubelet skips the status update
// when it fails.
func (p *Provider) Ping(ctx context.Context) error { return ctx.Err() }

// NotifyNodeStatus registers virtual-kubelet's callback for status changes.
func (p *Provider) NotifyNodeStatus(_ context.Context, cb func(*corev1.Node)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notify = cb
}

// Run measures the phone until ctx ends.
func (p *Provider) Run(ctx context.Context) {
	every := p.Interval
	if every <= 0 {
		every = 10 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.Measure(ctx)
	}
}

// Measure reads the sensors once and pushes the status if it changed in
// what matters (a condition's status, capacity or allocatable).
func (p *Provider) Measure(ctx context.Context) {
	r, err := p.Sensors.Read(ctx)
	if err != nil {
		if p.Log != nil {
			p.Log.Warn("measure the phone", "err", err)
		}
		return
	}
	p.mu.Lock()
	if p.node == nil {
		p.mu.Unlock()
		return
	}
	st := p.Info.status(r)
	conds, flipped := p.conds.Update(r, p.now())
	st.Conditions = conds
	if p.OnConditions != nil {
		p.OnConditions(conds)
	}
	changed := flipped || !st.Capacity.Cpu().Equal(*p.node.Status.Capacity.Cpu()) ||
		!st.Allocatable.Memory().Equal(*p.node.Status.Allocatable.Memory()) ||
		!st.Allocatable.StorageEphemeral().Equal(*p.node.Status.Allocatable.StorageEphemeral())
	// Between pushes virtual-kubelet resends the node it was last given;
	// readings that did not flip anything wait for the next push.
	if !changed {
		p.mu.Unlock()
		return
	}
	p.node.Status = st
	n := p.node.DeepCopy()
	cb := p.notify
	p.mu.Unlock()
	if p.Log != nil && flipped {
		for _, c := range conds {
			p.Log.Info("node condition", "type", c.Type, "status", c.Status, "message", c.Message)
		}
	}
	if cb != nil {
		cb(n)
	}
}
