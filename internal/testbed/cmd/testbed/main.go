// Command testbed starts and stops phonefarm's test-bed hosts by hand, for
// benchmarks and debugging: testbed up DIR N [pmos-count], testbed down DIR.
// The state (keys, known_hosts, hosts.txt) stays in DIR between the two.
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

func run(ctx context.Context, args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: testbed up DIR N [PMOS] | testbed down DIR")
	}
	dir := args[1]
	state := filepath.Join(dir, "testbed.json")
	switch args[0] {
	case "up":
		n, pmos := 1, 0
		if len(args) > 2 {
			n, _ = strconv.Atoi(args[2])
		}
		if len(args) > 3 {
			pmos, _ = strconv.Atoi(args[3])
		}
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
	case "down":
		b, err := os.ReadFile(state)
		if err != nil {
			return err
		}
		var tb testbed.Testbed
		if err := json.Unmarshal(b, &tb); err != nil {
			return err
		}
		return tb.Down(ctx)
	}
	return fmt.Errorf("unknown command %q", args[0])
}
