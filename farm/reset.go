package farm

import (
	"context"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/phonefarm/phonefarm/internal/parallel"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/provision"
)

// ResetOptions choose what Reset does.
type ResetOptions struct {
	// Phones to reset, by name; every phone with a role when empty.
	Phones []string
	// Tailnet also logs the phones out of the farm's tailnet, stops
	// tailscaled and removes the tailscale phonefarm installed.
	Tailnet bool
}

// ResetResult is one phone's reset.
type ResetResult struct {
	Phone string
	// Err is why the phone could not be reset; nil when it was.
	Err error
	// Node says what became of the phone's node in the API (for k3s
	// phones, whose nodes stay until the cluster forgets them, only what
	// could not be cleaned up).
	Node string
	// Tailnet says what became of the phone's tailscale, with
	// ResetOptions.Tailnet.
	Tailnet string
}

// Reset stops k3s on the phones and removes it, its data, its
// configuration and phonefarm's firewall fragment; on Android phones it
// stops phonefarm's agent, removes its directory and deletes its node.
func (f *Farm) Reset(ctx context.Context, o ResetOptions) ([]ResetResult, error) {
	targets, err := f.phonesOf(o.Phones)
	if err != nil {
		return nil, err
	}
	out := make([]ResetResult, len(targets))
	_ = parallel.Each(ctx, len(targets), f.opts.Parallel, func(ctx context.Context, i int) error {
		p := targets[i]
		out[i].Phone = p.Name
		h, err := f.Connect(ctx, p)
		if err != nil {
			out[i].Err = err
			return nil
		}
		defer h.Close()
		if p.OS == inventory.OSAndroid {
			out[i].Err = provision.ResetAgent(ctx, h, f.Inventory)
			return nil
		}
		if out[i].Err = provision.Reset(ctx, h); out[i].Err != nil || !o.Tailnet {
			return nil
		}
		kept, err := provision.ResetTailnet(ctx, h)
		switch {
		case err != nil:
			out[i].Err = err
		case kept != "":
			out[i].Tailnet = "logged out of the tailnet; the tailscale package (" + kept + ") stays"
		default:
			out[i].Tailnet = "logged out of the tailnet, tailscale removed"
		}
		return nil
	})
	// An Android phone's node is the agent's alone: it goes with the agent.
	var android []int
	for i, p := range targets {
		if out[i].Err == nil && p.OS == inventory.OSAndroid {
			android = append(android, i)
		}
	}
	if len(android) > 0 {
		c, err := f.Cluster(ctx)
		for _, i := range android {
			if err != nil {
				out[i].Node = fmt.Sprintf("node %s left in the API: %v; kubectl delete node %s", out[i].Phone, err, out[i].Phone)
				continue
			}
			out[i].Node = deleteNode(ctx, c, out[i].Phone)
			if err := provision.RemoveHealthCredentials(ctx, c.Client, out[i].Phone); err != nil {
				out[i].Node += fmt.Sprintf("; its health credentials are left in the API: %v", err)
			}
		}
	}
	// A k3s phone reset out of a cluster that goes on: its health
	// reporter's credentials go too.
	if first, err := f.FirstServer(); err == nil && !slices.Contains(targets, first) {
		var k3s []int
		for i, p := range targets {
			if out[i].Err == nil && p.OS != inventory.OSAndroid {
				k3s = append(k3s, i)
			}
		}
		if len(k3s) > 0 {
			c, cerr := f.Cluster(ctx)
			for _, i := range k3s {
				err := cerr
				if err == nil {
					err = provision.RemoveHealthCredentials(ctx, c.Client, out[i].Phone)
				}
				if err != nil {
					out[i].Node = fmt.Sprintf("its health credentials are left in the API: %v", err)
				}
			}
		}
	}
	return out, nil
}

// deleteNode deletes a node and waits (30 s at most) for k3s's finalizers
// to let it go; it returns what to say of it.
func deleteNode(ctx context.Context, c *provision.Cluster, name string) string {
	nodes := c.Client.CoreV1().Nodes()
	if err := nodes.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return "no node to delete"
		}
		return fmt.Sprintf("node %s left in the API: %v", name, err)
	}
	for range 60 {
		if _, err := nodes.Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return "node deleted"
		}
		select {
		case <-ctx.Done():
			return "node deletion requested"
		case <-time.After(500 * time.Millisecond):
		}
	}
	return "node deletion requested (k3s has not released it yet)"
}
