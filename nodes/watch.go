package nodes

import (
	"context"
	"encoding/json"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/phonefarm/phonefarm/farm"
)

// Watch calls show with the view, then again each time it changes: a
// node or pod changing in the cluster (an API watch, not a poll) or the
// phones' facts, read again every interval. Until the cluster answers,
// the view is the phones' alone, with the error. Watch returns when ctx
// ends.
func Watch(ctx context.Context, f *farm.Farm, parallelism int, interval time.Duration, show func([]Node, error)) error {
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	var got map[string]PhoneFacts
	factsDone := make(chan map[string]PhoneFacts, 1)
	reading := false // one read of the phones at a time, however slow
	readFacts := func() {
		if reading {
			return
		}
		reading = true
		go func() {
			r := Facts(ctx, f, parallelism)
			select {
			case factsDone <- r:
			case <-ctx.Done():
			}
		}()
	}
	readFacts()

	var nodeLister interface {
		List(labels.Selector) ([]*corev1.Node, error)
	}
	var podLister interface {
		List(labels.Selector) ([]*corev1.Pod, error)
	}
	var clusterErr error
	connect := func() {
		c, err := f.Cluster(ctx)
		if err != nil {
			clusterErr = err
			return
		}
		factory := informers.NewSharedInformerFactory(c.Client, 0)
		ni, pi := factory.Core().V1().Nodes(), factory.Core().V1().Pods()
		h := cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { poke() },
			UpdateFunc: func(any, any) { poke() },
			DeleteFunc: func(any) { poke() },
		}
		if _, err := ni.Informer().AddEventHandler(h); err != nil {
			clusterErr = err
			return
		}
		if _, err := pi.Informer().AddEventHandler(h); err != nil {
			clusterErr = err
			return
		}
		factory.Start(ctx.Done())
		factory.WaitForCacheSync(ctx.Done())
		nodeLister, podLister, clusterErr = ni.Lister(), pi.Lister(), nil
	}
	connect()

	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last []byte
	render := func() {
		if got == nil {
			return // the first facts are not in yet
		}
		var ns []corev1.Node
		var ps []corev1.Pod
		if nodeLister != nil {
			list, _ := nodeLister.List(labels.Everything())
			for _, n := range list {
				ns = append(ns, *n)
			}
			pods, _ := podLister.List(labels.Everything())
			for _, p := range pods {
				ps = append(ps, *p)
			}
		}
		view := Join(f.Inventory, got, ns, ps)
		b, _ := json.Marshal(struct {
			V []Node
			E string
		}{view, errString(clusterErr)})
		if string(b) == string(last) {
			return
		}
		last = b
		show(view, clusterErr)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case got = <-factsDone:
			reading = false
			render()
		case <-changed:
			render()
		case <-tick.C:
			if nodeLister == nil {
				connect()
			}
			readFacts()
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
