// Package archtest guards phonefarm's package boundaries: leaf packages
// import nothing of phonefarm, and the engine's packages reach phones only
// through the transport interface, never a concrete transport.
package archtest

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/phonefarm/phonefarm/"

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", module+pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	var own []string
	for _, d := range strings.Fields(string(out)) {
		if strings.HasPrefix(d, module) && d != module+pkg {
			own = append(own, strings.TrimPrefix(d, module))
		}
	}
	return own
}

func TestBoundaries(t *testing.T) {
	tests := []struct {
		pkg       string
		forbidden []string // package path prefixes; "" forbids every phonefarm package
	}{
		{pkg: "inventory", forbidden: []string{""}},
		{pkg: "kernelcfg", forbidden: []string{""}},
		{pkg: "devicedb", forbidden: []string{""}},
		{pkg: "transport", forbidden: []string{""}},
		// The in-memory phone for failure-path tests carries no engine.
		{pkg: "transport/transporttest", forbidden: []string{"provision", "facts", "checks", "internal/", "inventory", "transport/ssh", "transport/adb"}},
		{pkg: "facts", forbidden: []string{"transport/", "internal/cli", "inventory"}},
		{pkg: "checks", forbidden: []string{"transport/", "internal/cli", "inventory"}},
		{pkg: "flash", forbidden: []string{"transport/", "internal/cli"}},
		// provision writes the agent's configuration (agent/config, a
		// leaf) and carries none of the agent.
		{pkg: "provision", forbidden: []string{"farm", "internal/cli", "internal/testbed", "internal/demo", "transport/", "agent$", "agent/k3s", "agent/image", "agent/node", "agent/pods", "agent/proot"}},
		// The engine as a library: the front-ends (CLI, TUI, Pulumi
		// provider) drive it; it carries none of them, nor the test bed.
		{pkg: "farm", forbidden: []string{"internal/cli", "internal/testbed", "internal/demo", "tui", "pulumi", "cmd/"}},
		// The farm's nodes view reads through the engine; the front-ends
		// show it.
		{pkg: "nodes", forbidden: []string{"internal/cli", "internal/testbed", "internal/demo", "tui", "pulumi", "cmd/"}},
		// The wizard drives the engine; it carries no other front-end and
		// no test bed.
		{pkg: "tui", forbidden: []string{"internal/cli", "internal/testbed", "internal/demo", "pulumi", "cmd/"}},
		// The Pulumi provider is a front-end over the engine, not a second
		// engine: it plans and applies through farm, carries no other
		// front-end, and its generated SDK carries nothing of phonefarm.
		{pkg: "pulumi/provider", forbidden: []string{"internal/cli", "internal/testbed", "internal/demo", "tui", "cmd/", "pulumi/sdk"}},
		{pkg: "pulumi/sdk/go/phonefarm", forbidden: []string{"farm", "provision", "inventory", "internal/cli", "pulumi/provider", "transport"}},
		{pkg: "internal/oci", forbidden: []string{""}},
		{pkg: "internal/kube", forbidden: []string{""}},
		// The agent runs on the phone: it carries none of the engine that
		// provisions phones, nor the front-ends.
		{pkg: "agent", forbidden: []string{"provision", "internal/", "transport", "inventory", "facts", "checks", "flash", "tui", "cmd/"}},
		{pkg: "agent/k3s", forbidden: []string{""}},
		{pkg: "agent/config", forbidden: []string{""}},
		{pkg: "agent/image", forbidden: []string{"provision", "internal/", "transport", "agent/k3s", "agent/node", "agent/pods"}},
		{pkg: "agent/proot", forbidden: []string{""}},
		{pkg: "agent/node", forbidden: []string{"provision", "internal/", "transport", "agent/k3s", "agent/image", "agent/pods"}},
		{pkg: "agent/health", forbidden: []string{"provision", "internal/", "transport", "agent/k3s", "agent/image", "agent/pods", "agent$"}},
		{pkg: "agent/pods", forbidden: []string{"provision", "internal/", "transport", "agent/k3s", "agent/node"}},
		{pkg: "examples/apps", forbidden: []string{"internal/cli", "internal/testbed", "provision", "transport"}},
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			for _, d := range deps(t, tt.pkg) {
				if strings.HasPrefix(d, "devicedb/internal") && tt.pkg == "devicedb" {
					continue
				}
				for _, f := range tt.forbidden {
					// "pkg$" forbids pkg itself, not the packages under it.
					if exact, ok := strings.CutSuffix(f, "$"); ok && d == exact || !ok && strings.HasPrefix(d, f) {
						t.Errorf("%s imports %s; it must not depend on %q", tt.pkg, d, f)
					}
				}
			}
		})
	}
}

// imports lists the phonefarm packages pkg imports directly.
func imports(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, module+pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	var own []string
	for _, d := range strings.Fields(string(out)) {
		if strings.HasPrefix(d, module) {
			own = append(own, strings.TrimPrefix(d, module))
		}
	}
	return own
}

// The command line reaches the test bed only through the demo's own
// package, so the engine's front-ends never grow test-bed code.
func TestCLIUsesTestbedOnlyThroughDemo(t *testing.T) {
	for _, d := range imports(t, "internal/cli") {
		if strings.HasPrefix(d, "internal/testbed") {
			t.Errorf("internal/cli imports %s; reach the test bed through internal/demo", d)
		}
	}
	if !slices.Contains(imports(t, "internal/demo"), "internal/testbed") {
		t.Error("internal/demo does not import internal/testbed; the check above guards nothing")
	}
}
