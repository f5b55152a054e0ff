// Command testbed starts and stops phonefarm's test-bed hosts by hand, for
// bench scripts and debugging. The state (keys, known_hosts, testbed.json)
// stays in DIR between calls.
//
//	testbed up DIR N [PMOS]             start N hosts, the first PMOS of them postmarketOS
//	testbed inventory DIR K3S [SERVERS [AIRGAP...]]
//	                                    print a farm.yaml for the hosts, with
//	                                    image tarballs to ship to every phone
//	testbed down DIR                    stop them and remove DIR
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/phonefarm/phonefarm/internal/testbed"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "testbed:", err)
		os.Exit(1)
	}
}

const usage = "usage: testbed up DIR N [PMOS] | testbed inventory DIR K3S [SERVERS [AIRGAP...]] | testbed down DIR"

func intArg(args []string, i, def int) int {
	if len(args) > i {
		if n, err := strconv.Atoi(args[i]); err == nil {
			return n
		}
	}
	return def
}

func run(ctx context.Context, args []string) error {
	if len(args) < 2 {
		return fmt.Errorf(usage)
	}
	dir := args[1]
	state := filepath.Join(dir, "testbed.json")
	load := func() (*testbed.Testbed, error) {
		b, err := os.ReadFile(state)
		if err != nil {
			return nil, err
		}
		var tb testbed.Testbed
		return &tb, json.Unmarshal(b, &tb)
	}
	switch args[0] {
	case "up":
		n, pmos := intArg(args, 2, 1), intArg(args, 3, 0)
		var specs []testbed.HostSpec
		for i := range n {
			specs = append(specs, testbed.HostSpec{Name: fmt.Sprintf("phone%d", i+1), PostmarketOS: i < pmos})
		}
		tb, err := testbed.Up(ctx, testbed.Options{Hosts: specs, Dir: dir, Persistent: true,
			Log: slog.New(slog.NewTextHandler(os.Stderr, nil))})
		if err != nil {
			return err
		}
		b, _ := json.MarshalIndent(tb, "", "  ")
		if err := os.WriteFile(state, b, 0o600); err != nil {
			return err
		}
		for _, h := range tb.Hosts {
			fmt.Printf("%s %s\n", h.Name, h.Addr)
		}
		return nil
	case "inventory":
		if len(args) < 3 {
			return fmt.Errorf(usage)
		}
		tb, err := load()
		if err != nil {
			return err
		}
		var airgap []string
		if len(args) > 4 {
			airgap = args[4:]
		}
		fmt.Print(tb.Inventory(testbed.InventoryOptions{Name: "testbed", K3s: args[2], Servers: intArg(args, 3, 1), AirgapImages: airgap}))
		return nil
	case "down":
		tb, err := load()
		if err != nil {
			return err
		}
		return tb.Down(ctx)
	}
	return fmt.Errorf("unknown command %q; %s", args[0], usage)
}
