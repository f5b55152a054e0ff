package agent

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/phonefarm/phonefarm/agent/config"
	"github.com/phonefarm/phonefarm/agent/health"
	"github.com/phonefarm/phonefarm/agent/node"
)

// Main is phonefarm-agent's command line: `phonefarm-agent -config FILE`.
// It returns the exit status.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "health" {
		return healthMain(ctx, args[1:], stderr)
	}
	fs := flag.NewFlagSet("phonefarm-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", "", "the agent's configuration file (JSON, written by phonefarm apply)")
	debug := fs.Bool("debug", false, "log debug messages")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: phonefarm-agent -config FILE\n       phonefarm-agent health -kubeconfig FILE -node NAME\n\nphonefarm's rootless node agent: joins a k3s cluster and runs its pods under proot.\nWith health, it reports a k3s phone's battery and heat on its node instead.")
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

// healthMain is `phonefarm-agent health`: the phone-health reporter for a
// phone that runs k3s.
func healthMain(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("phonefarm-agent health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kubeconfig := fs.String("kubeconfig", "", "a kubeconfig allowed to read and patch this node and its status")
	nodeName := fs.String("node", "", "the node's name (the phone's name in the inventory)")
	interval := fs.Duration("interval", 10*time.Second, "how often the phone is read")
	low := fs.Int("battery-low", node.DefaultThresholds.BatteryLowPercent, "battery percentage at or below which, off the charger, the node is tainted")
	hot := fs.Float64("hot", node.DefaultThresholds.HotC, "temperature in °C at or above which the node is tainted")
	sys := fs.String("sys", "/sys", "where sysfs is")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: phonefarm-agent health -kubeconfig FILE -node NAME\n\nReports the phone's battery, charger and temperature on its node as the conditions\nPhoneOnBattery, PhoneBatteryLow and PhoneHot, and taints the node "+health.TaintKey+"\n(NoSchedule) while it is hot or low on battery off the charger.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *kubeconfig == "" || *nodeName == "" || fs.NArg() > 0 || *interval < time.Second {
		fs.Usage()
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Error("kubeconfig", "err", err)
		return 1
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Error("kubeconfig", "err", err)
		return 1
	}
	th := node.DefaultThresholds
	th.BatteryLowPercent, th.HotC = *low, *hot
	r := &health.Reporter{Client: client, Node: *nodeName, Sensors: node.Sensors{Sys: *sys}, Thresholds: th, Interval: *interval, Log: log}
	log.Info("reporting phone health", "node", *nodeName, "interval", *interval, "batteryLow", *low, "hotC", *hot)
	if err := r.Run(ctx); err != nil {
		log.Error("health reporter stopped", "err", err)
		return 1
	}
	return 0
}
