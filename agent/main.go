package agent

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/phonefarm/phonefarm/agent/config"
)

// Main is phonefarm-agent's command line: `phonefarm-agent -config FILE`.
// It returns the exit status.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("phonefarm-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", "", "the agent's configuration file (JSON, written by phonefarm apply)")
	debug := fs.Bool("debug", false, "log debug messages")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: phonefarm-agent -config FILE\n\nphonefarm's rootless node agent: joins a k3s cluster and runs its pods under proot.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgFile == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	c, err := config.Load(*cfgFile)
	if err != nil {
		log.Error("configuration", "err", err)
		return 1
	}
	if err := Run(ctx, c, log); err != nil {
		log.Error("agent stopped", "err", err)
		return 1
	}
	return 0
}
