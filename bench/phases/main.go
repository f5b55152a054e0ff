// Command phases applies an inventory through phonefarm's engine and
// prints where the time went, for bench/apply.sh: reading the phones
// (gather and plan), the uploads, the first server started, the join
// token on the phones, the agents started, and every node Ready, each as
// the time from the start.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/phonefarm/phonefarm/farm"
	"github.com/phonefarm/phonefarm/provision"
)

func main() {
	file := flag.String("f", "farm.yaml", "inventory")
	skip := flag.String("skip-checks", "", "checks to skip")
	flag.Parse()
	if err := run(context.Background(), *file, *skip); err != nil {
		fmt.Fprintln(os.Stderr, "phases:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, file, skip string) error {
	start := time.Now()
	fm, err := farm.Open(file, farm.Options{})
	if err != nil {
		return err
	}
	var skips []string
	if skip != "" {
		skips = strings.Split(skip, ",")
	}
	p, err := fm.Plan(ctx, farm.PlanOptions{SkipChecks: skips})
	if err != nil {
		return err
	}
	defer p.Close()
	planned := time.Since(start)
	first := ""
	for _, pp := range p.Plan.Phones {
		if pp.Stage == provision.StageFirstServer {
			first = pp.Phone
		}
	}
	var mu sync.Mutex
	last := map[string]time.Duration{}
	mark := func(k string, at time.Duration) {
		if at > last[k] {
			last[k] = at
		}
	}
	sum := p.Apply(ctx, func(e provision.Event) {
		mu.Lock()
		defer mu.Unlock()
		at := time.Since(start)
		d, ok := e.(provision.StepDone)
		if !ok || d.Err != nil {
			return
		}
		title := d.Step.Title()
		switch {
		case strings.HasPrefix(title, "upload "):
			mark("uploads done", at)
		case strings.HasPrefix(title, "restart k3s") && d.Phone == first:
			mark("first server started", at)
		case strings.HasPrefix(title, "write join token"):
			mark("token on every joining phone", at)
		case strings.HasPrefix(title, "restart k3s"):
			mark("agents started", at)
		case strings.HasPrefix(title, "wait for node"):
			mark("all Ready", at)
		}
	})
	if err := sum.Err(); err != nil {
		return err
	}
	fmt.Printf("%-30s %6.1fs\n", "gather and plan", planned.Seconds())
	for _, k := range []string{"uploads done", "first server started", "token on every joining phone", "agents started", "all Ready"} {
		if at, ok := last[k]; ok {
			fmt.Printf("%-30s %6.1fs\n", k, at.Seconds())
		}
	}
	return nil
}
