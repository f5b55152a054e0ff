// Command phonefarm turns a drawer of old phones into a k3s cluster.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/phonefarm/phonefarm/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
