// Command phonefarm turns a drawer of old phones into a k3s cluster.
// Started as pulumi-resource-phonefarm (by the Pulumi engine), it serves
// phonefarm's Pulumi provider.
package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/phonefarm/phonefarm/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var code int
	if filepath.Base(os.Args[0]) == cli.PluginName {
		code = cli.RunProvider(ctx, os.Stderr)
	} else {
		code = cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	}
	stop()
	os.Exit(code)
}
