package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/phonefarm/phonefarm/internal/testbed"
)

// Tailnet is the demo's headscale and this machine's tailscaled on its
// tailnet, both outliving the command that started them.
type Tailnet struct {
	Headscale  *testbed.Headscale
	Controller *testbed.Controller
	Inventory  testbed.TailnetInventory
	NoProxy    string // what is reached directly: the demo network
}

// Env is the environment of a process that reaches the farm's k3s API on
// its tailnet address, through this machine's userspace tailscaled.
func (tn *Tailnet) Env() []string {
	return []string{"HTTPS_PROXY=" + tn.Controller.Proxy, "NO_PROXY=" + tn.NoProxy}
}

// TailnetStatePath is where the demo records its tailnet's processes.
func TailnetStatePath(dir string) string { return filepath.Join(dir, "tailnet.json") }

// startTailnet starts headscale and the controller's tailscaled unless
// both of a previous run still answer.
func startTailnet(ctx context.Context, o Options, tb *testbed.Testbed) (*Tailnet, error) {
	tools, err := testbed.TailnetTools()
	if err != nil {
		return nil, err
	}
	var tn Tailnet
	if b, err := os.ReadFile(TailnetStatePath(o.Dir)); err == nil && json.Unmarshal(b, &tn) == nil &&
		tn.Headscale != nil && tn.Controller != nil && tn.Headscale.Answers(ctx) && tn.Controller.Answers() {
		fmt.Fprintln(o.Progress, "demo tailnet already running")
		return &tn, nil
	}
	if err := stopTailnet(o.Dir); err != nil {
		return nil, err
	}
	fmt.Fprintln(o.Progress, "starting the demo tailnet: headscale on "+tb.Gateway+" and this machine's tailscaled")
	hs, err := testbed.StartHeadscale(ctx, tb, tools)
	if err != nil {
		return nil, err
	}
	tn = Tailnet{Headscale: hs, NoProxy: noProxy(tb)}
	keyFile := filepath.Join(o.Dir, "headscale-api-key")
	if err := os.WriteFile(keyFile, []byte(hs.APIKey), 0o600); err != nil {
		hs.Stop()
		return nil, err
	}
	tn.Inventory = testbed.TailnetInventory{LoginServer: hs.URL, APIKeyFile: keyFile, Tools: tools}
	key, err := hs.PreAuthKey(ctx, "demo-admin")
	if err == nil {
		tn.Controller, err = testbed.JoinController(ctx, tb, tools, hs.URL, key)
	}
	if err != nil {
		hs.Stop()
		return nil, err
	}
	b, err := json.MarshalIndent(tn, "", "  ")
	if err == nil {
		err = os.WriteFile(TailnetStatePath(o.Dir), b, 0o600)
	}
	if err != nil {
		tn.Controller.Stop()
		hs.Stop()
		return nil, err
	}
	return &tn, nil
}

// stopTailnet ends the demo tailnet's processes, if any.
func stopTailnet(dir string) error {
	b, err := os.ReadFile(TailnetStatePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var tn Tailnet
	if err := json.Unmarshal(b, &tn); err != nil {
		return fmt.Errorf("read %s: %w", TailnetStatePath(dir), err)
	}
	if tn.Controller != nil {
		tn.Controller.Stop()
	}
	if tn.Headscale != nil {
		tn.Headscale.Stop()
	}
	return os.Remove(TailnetStatePath(dir))
}
