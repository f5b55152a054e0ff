package pods

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// snapshot is the pod with its status as the node sees it now.
func (p *podRun) snapshot() *corev1.Pod {
	p.mu.Lock()
	defer p.mu.Unlock()
	pod := p.pod.DeepCopy()
	st := &pod.Status
	st.Phase = p.phase
	st.Reason, st.Message = p.reason, p.message
	st.HostIP, st.PodIP = p.m.Node.IP, p.m.Node.IP
	if p.m.Node.IP != "" {
		st.HostIPs = []corev1.HostIP{{IP: p.m.Node.IP}}
		st.PodIPs = []corev1.PodIP{{IP: p.m.Node.IP}}
	}
	st.InitContainerStatuses, st.ContainerStatuses = nil, nil
	initialized := true
	for _, c := range p.inits {
		cs := c.status()
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
		if t := cs.State.Terminated; t == nil || t.ExitCode != 0 {
			initialized = false
		}
	}
	allReady := len(p.mains) > 0
	for _, c := range p.mains {
		cs := c.status()
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		allReady = allReady && cs.Ready
	}
	if p.setupErr != "" {
		for i := range st.ContainerStatuses {
			if w := st.ContainerStatuses[i].State.Waiting; w != nil {
				w.Reason, w.Message = "CreateContainerConfigError", p.setupErr
			}
		}
	}
	running := p.phase == corev1.PodRunning
	st.Conditions = p.conditions(map[corev1.PodConditionType]condState{
		corev1.PodScheduled:              {true, "", ""},
		corev1.PodReadyToStartContainers: {p.prepared, "", ""},
		corev1.PodInitialized:            {initialized, "ContainersNotInitialized", "containers with incomplete status"},
		corev1.ContainersReady:           {running && allReady, "ContainersNotReady", "containers with unready status"},
		corev1.PodReady:                  {running && allReady, "ContainersNotReady", "containers with unready status"},
	}, pod)
	st.QOSClass = qosClass(pod)
	return pod
}

type condState struct {
	ok              bool
	reason, message string
}

var conditionOrder = []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled}

// conditions builds the pod's conditions, moving a condition's
// lastTransitionTime only when its status flips (caller holds mu).
func (p *podRun) conditions(want map[corev1.PodConditionType]condState, pod *corev1.Pod) []corev1.PodCondition {
	if p.conds == nil {
		p.conds = map[corev1.PodConditionType]corev1.PodCondition{}
	}
	var out []corev1.PodCondition
	for _, t := range conditionOrder {
		w := want[t]
		status := corev1.ConditionFalse
		if w.ok {
			status = corev1.ConditionTrue
		}
		old, seen := p.conds[t]
		c := corev1.PodCondition{Type: t, Status: status}
		if status == corev1.ConditionFalse {
			c.Reason, c.Message = w.reason, w.message
		}
		if seen && old.Status == status {
			c.LastTransitionTime = old.LastTransitionTime
		} else {
			c.LastTransitionTime = metav1.NewTime(p.m.now())
		}
		p.conds[t] = c
		out = append(out, c)
	}
	return out
}

// qosClass is the pod's quality-of-service class, as the API computes it.
func qosClass(pod *corev1.Pod) corev1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	requests, limits, guaranteed := 0, 0, true
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			lim, hasLim := c.Resources.Limits[r]
			if hasReq {
				requests++
			}
			if hasLim {
				limits++
			}
			if !hasLim || hasReq && req.Cmp(lim) != 0 {
				guaranteed = false
			}
		}
	}
	switch {
	case requests == 0 && limits == 0:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}
