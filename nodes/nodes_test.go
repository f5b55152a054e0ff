package nodes

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/phonefarm/phonefarm/facts"
	"github.com/phonefarm/phonefarm/inventory"
)

const farmYAML = `apiVersion: phonefarm.dev/v1alpha1
kind: Farm
phones:
  - {name: enchilada, os: postmarketos, role: server, ssh: {host: 10.0.0.11}}
  - {name: fajita, os: postmarketos, role: agent, ssh: {host: 10.0.0.12}}
  - {name: sargo, os: android, role: agent, adb: {serial: 8ARX0XYZ}}
  - {name: spare, os: postmarketos, ssh: {host: 10.0.0.13}}
`

func node(name string, ready corev1.ConditionStatus, labels map[string]string, extra ...corev1.NodeCondition) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	n.Status.Conditions = append([]corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}, extra...)
	n.Status.NodeInfo.KubeletVersion = "v1.32.0+k3s1"
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}, {Type: corev1.NodeHostName, Address: name}}
	return n
}

func pod(name, node string, phase corev1.PodPhase) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: phase}}
}

// Join: the inventory's phones in order with what the cluster and the
// phones say; a phone not in the cluster and a node in no inventory are
// marked; only running pods count; only conditions reporting a problem
// are listed.
func TestJoin(t *testing.T) {
	inv, err := inventory.Parse("farm.yaml", []byte(farmYAML))
	if err != nil {
		t.Fatal(err)
	}
	since := metav1.NewTime(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	enchilada := node("enchilada", corev1.ConditionTrue, map[string]string{"node-role.kubernetes.io/control-plane": "true"},
		corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
		corev1.NodeCondition{Type: "EtcdIsVoter", Status: corev1.ConditionTrue}, // healthy: not listed
		corev1.NodeCondition{Type: "PhoneBatteryLow", Status: corev1.ConditionTrue, Reason: "PhoneBatteryLow", Message: "12%", LastTransitionTime: since})
	enchilada.Spec.Taints = []corev1.Taint{{Key: "phonefarm.dev/battery", Value: "low", Effect: corev1.TaintEffectNoSchedule}}
	sargo := node("sargo", corev1.ConditionFalse, map[string]string{"phonefarm.dev/runtime": "proot"})
	stray := node("stray", corev1.ConditionUnknown, nil,
		corev1.NodeCondition{Type: "EtcdIsVoter", Status: corev1.ConditionFalse, Reason: "MemberIsLearner", LastTransitionTime: since})
	bat := &facts.Facts{Battery: &facts.Battery{CapacityPercent: 12, Status: "Discharging"}}
	got := Join(inv, map[string]PhoneFacts{
		"enchilada": {Facts: bat},
		"fajita":    {Err: errors.New("dial tcp 10.0.0.12:22: connect: no route to host")},
	}, []corev1.Node{stray, sargo, enchilada}, []corev1.Pod{
		pod("a", "enchilada", corev1.PodRunning), pod("b", "enchilada", corev1.PodRunning), pod("c", "enchilada", corev1.PodSucceeded), pod("d", "sargo", corev1.PodRunning),
	})
	want := []Node{
		{Name: "enchilada", InInventory: true, InCluster: true, Role: "server", Runtime: RuntimeK3sServer, Ready: "True",
			Conditions:     []Condition{{Type: "PhoneBatteryLow", Reason: "PhoneBatteryLow", Message: "12%", Since: "2026-12-06T10:00:00Z"}},
			Taints:         []string{"phonefarm.dev/battery=low:NoSchedule"},
			KubeletVersion: "v1.32.0+k3s1", Addresses: []string{"10.0.0.1"}, Pods: 2, Facts: bat},
		{Name: "fajita", InInventory: true, Role: "agent", Runtime: RuntimeK3sAgent, Error: "dial tcp 10.0.0.12:22: connect: no route to host"},
		{Name: "sargo", InInventory: true, InCluster: true, Role: "agent", Runtime: RuntimeRootless, Ready: "False",
			KubeletVersion: "v1.32.0+k3s1", Addresses: []string{"10.0.0.1"}, Pods: 1},
		{Name: "spare", InInventory: true},
		{Name: "stray", InCluster: true, Runtime: RuntimeK3sAgent, Ready: "Unknown", KubeletVersion: "v1.32.0+k3s1", Addresses: []string{"10.0.0.1"},
			Conditions: []Condition{{Type: "EtcdIsVoter=False", Reason: "MemberIsLearner", Since: "2026-12-06T10:00:00Z"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Join (-want +got):\n%s", diff)
	}
}
