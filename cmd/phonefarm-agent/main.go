// Command phonefarm-agent is phonefarm's rootless node agent for stock
// Android phones; phonefarm apply installs and starts it over adb.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/phonefarm/phonefarm/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := agent.Main(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
