package testbed

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/phonefarm/phonefarm/internal/testenv"
)

func TestUpHosts(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mmdebstrap")
	ctx := context.Background()
	tb, err := Up(ctx, Options{
		Hosts: []HostSpec{{Name: "pmos1", PostmarketOS: true}, {Name: "deb1"}},
		Log:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tb.Down(context.Background()); err != nil {
			t.Errorf("Down: %v", err)
		}
	})

	tests := []struct {
		host, cmd, want string
	}{
		{"pmos1", ". /etc/os-release; echo $ID", "postmarketos"},
		{"deb1", ". /etc/os-release; echo $ID", "debian"},
		{"pmos1", "cat /proc/1/comm", "openrc-init"},
		{"pmos1", "hostname", "pmos1"},
		{"deb1", "rc-service sshd status", "started"},
		{"pmos1", "nft list chain inet filter input", "policy drop"},
		{"pmos1", "nft list chain inet filter input", `log prefix "DROP:  "`},
		{"pmos1", "nft list chain inet filter forward", "policy drop"},
		{"deb1", "ip route", "10.99."},
	}
	for _, tt := range tests {
		t.Run(tt.host+"/"+tt.cmd, func(t *testing.T) {
			out, err := tb.Exec(ctx, tb.Host(tt.host), tt.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("got %q, want it to contain %q", out, tt.want)
			}
		})
	}
	// No route leaves the test bed's own subnet.
	out, err := tb.Exec(ctx, tb.Host("deb1"), "ip route")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "default") {
		t.Errorf("host has a default route, want none: %s", out)
	}
	// Hosts reach each other's SSH through the firewall.
	pmos := tb.Host("pmos1")
	if out, err := tb.Exec(ctx, tb.Host("deb1"), "timeout 2 bash -c 'echo > /dev/tcp/"+pmos.Addr+"/22' && echo open"); err != nil || !strings.Contains(string(out), "open") {
		t.Errorf("ssh from deb1 to pmos1: got %q, %v; want open", out, err)
	}
}
