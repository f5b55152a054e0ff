package provider_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/phonefarm/phonefarm/internal/kube"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testenv"
)

// pulumiProgram is a Pulumi YAML program over an inventory file: no SDK.
const pulumiProgram = `name: phonefarm-test
runtime: yaml
config:
  token:
    type: string
    secret: true
resources:
  farm:
    type: phonefarm:index:Farm
    properties:
      inventoryFile: %s
      secrets:
        PF_TOKEN: ${token}
outputs:
  kubeconfig: ${farm.kubeconfig}
  phones: ${farm.phones}
`

// The provider under the real pulumi CLI, installed as a plugin, on a
// three-phone test bed: preview shows phonefarm's plan; up brings the
// nodes Ready; a label change previews and applies as an update of that
// phone alone; k3s stopped by hand shows in refresh and up repairs it;
// destroy resets the phones; the state holds no secret in plain text.
// Then phonefarm up and destroy do the same through the Automation API.
func TestPulumiCLI(t *testing.T) {
	t.Parallel()
	cli, err := testbed.PulumiCLI()
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	tb, write := testFarm(t, testbed.HostSpec{Name: "server1", PostmarketOS: true},
		testbed.HostSpec{Name: "agent1", PostmarketOS: true}, testbed.HostSpec{Name: "agent2"})
	ctx := context.Background()
	dir := t.TempDir()
	env, err := testbed.PulumiEnv(cli, filepath.Join(dir, "pulumi"), "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	env = append(env, "HOME="+dir, "PHONEFARM_CACHE="+filepath.Join(dir, "cache"))
	bin := filepath.Join(dir, "bin", "phonefarm")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/phonefarm").CombinedOutput(); err != nil {
		t.Fatalf("build phonefarm: %v\n%s", err, out)
	}
	run := func(wantOK bool, name string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Env = filepath.Join(dir, "program"), env
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	pulumi := func(args ...string) string {
		t.Helper()
		return run(true, filepath.Join(cli, "pulumi"), args...)
	}
	inventory := filepath.Join(dir, "farm.yaml")
	writeInventory := func(shelf string) {
		t.Helper()
		inv := write(map[string]map[string]string{"agent1": {"phonefarm.dev/shelf": shelf}, "agent2": {"phonefarm.dev/shelf": "top"}})
		if err := os.WriteFile(inventory, []byte(inv), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeInventory("top")
	if err := os.MkdirAll(filepath.Join(dir, "program"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "program", "Pulumi.yaml"), []byte(strings.Replace(pulumiProgram, "%s", inventory, 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	// phonefarm is the plugin, as pulumi installs it.
	plugin := filepath.Join(dir, "bin", "pulumi-resource-phonefarm")
	if err := os.Link(bin, plugin); err != nil {
		t.Fatal(err)
	}
	pulumi("plugin", "install", "resource", "phonefarm", "0.1.0", "--file", plugin)
	if out := pulumi("plugin", "ls"); !regexp.MustCompile(`phonefarm\s+resource\s+0\.1\.0`).MatchString(out) {
		t.Fatalf("pulumi plugin ls does not list phonefarm 0.1.0:\n%s", out)
	}
	pulumi("stack", "init", "farm")
	pulumi("config", "set", "--secret", "token", token)

	// Preview is phonefarm's plan, per phone, with reasons.
	out := pulumi("preview")
	t.Logf("pulumi preview:\n%s", out)
	for _, h := range []string{"server1", "agent1", "agent2"} {
		if !regexp.MustCompile(h + `: \d+ changes`).MatchString(out) {
			t.Errorf("pulumi preview does not show the plan of %s", h)
		}
	}
	if !strings.Contains(out, "upload k3s "+testbed.K3sVersion) {
		t.Errorf("pulumi preview does not show the plan's steps")
	}

	// Up brings the nodes Ready.
	pulumi("up", "--yes")
	kubeconfig := pulumi("stack", "output", "kubeconfig", "--show-secrets")
	c, err := kube.NewClient([]byte(kubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	nodes := func() map[string]corev1.Node {
		t.Helper()
		list, err := c.Core.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]corev1.Node{}
		for _, n := range list.Items {
			m[n.Name] = n
		}
		return m
	}
	allReady := func(when string) {
		t.Helper()
		ns := nodes()
		for _, h := range []string{"server1", "agent1", "agent2"} {
			n, ok := ns[h]
			ready := false
			for _, c := range n.Status.Conditions {
				ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
			}
			if !ok || !ready {
				t.Errorf("%s: node %s not Ready: %v", when, h, n.Status.Conditions)
			}
		}
	}
	allReady("after pulumi up")

	// One label: an update of agent1's label alone.
	writeInventory("bottom")
	out = pulumi("preview", "--diff")
	t.Logf("pulumi preview --diff after a label change:\n%s", out)
	if !strings.Contains(out, "~ phonefarm:index:Farm: (update)") ||
		!regexp.MustCompile(`(?s)~ phones: \{\s*~ agent1: \{\s*~ labels: \{\s*~ phonefarm.dev/shelf: "top" => "bottom"`).MatchString(out) {
		t.Errorf("preview of a label change does not show agent1's label going from top to bottom")
	}
	if strings.Contains(out, "~ server1") || strings.Contains(out, "~ agent2") || strings.Contains(out, "- phones") {
		t.Errorf("preview of agent1's label change shows other phones changing")
	}
	if !strings.Contains(out, "agent1: 1 changes") || !strings.Contains(out, "server1: no changes") || !strings.Contains(out, "agent2: no changes") {
		t.Errorf("preview of a label change: want one change on agent1, none elsewhere")
	}
	out = pulumi("up", "--yes")
	if got := nodes()["agent1"].Labels["phonefarm.dev/shelf"]; got != "bottom" {
		t.Errorf("after up, agent1's label is %q, want bottom\n%s", got, out)
	}

	// k3s stopped by hand: refresh shows the drift, up repairs it.
	if out, err := tb.Exec(ctx, tb.Host("agent2"), "rc-service k3s-agent stop"); err != nil {
		t.Fatalf("stop k3s on agent2: %v\n%s", err, out)
	}
	out = pulumi("refresh", "--yes", "--diff")
	t.Logf("pulumi refresh after k3s stopped on agent2:\n%s", out)
	if !regexp.MustCompile(`(?s)agent2.*converged\s*:\s*true\s*=>\s*false`).MatchString(out) {
		t.Errorf("refresh does not show agent2's drift (converged true => false)")
	}
	out = pulumi("up", "--yes")
	if _, err := tb.Exec(ctx, tb.Host("agent2"), "pgrep -f '^/usr/local/bin/k3s agent' >/dev/null"); err != nil {
		t.Errorf("up after the drift did not start k3s on agent2 again:\n%s", out)
	}
	// After the repair the plan is empty: preview fails with
	// --expect-no-changes otherwise.
	if out := pulumi("preview", "--expect-no-changes"); !strings.Contains(out, "2 unchanged") {
		t.Errorf("after the repair, preview does not show both resources unchanged:\n%s", out)
	}

	// Destroy resets the phones.
	clientKey := regexp.MustCompile(`client-key-data: (\S+)`).FindStringSubmatch(kubeconfig)
	pulumi("destroy", "--yes")
	reset := func(when string) {
		t.Helper()
		for _, h := range tb.Hosts {
			left, err := tb.Exec(ctx, h, "ls -d /usr/local/bin/k3s /var/lib/rancher/k3s /etc/rancher/k3s 2>/dev/null; pgrep -f '^/usr/local/bin/k3s' || true")
			if err != nil || strings.TrimSpace(string(left)) != "" {
				t.Errorf("%s: %s still has %q (%v)", when, h.Name, left, err)
			}
		}
	}
	reset("after pulumi destroy")

	// The state (with its history and backups) holds no secret in plain
	// text: not the join token, not the kubeconfig's client key.
	secrets := map[string]string{"the join token": token}
	if len(clientKey) == 2 {
		secrets["the kubeconfig's client key"] = clientKey[1]
	} else {
		t.Error("no client key in the kubeconfig output")
	}
	noSecrets(t, filepath.Join(dir, "pulumi", "state"), secrets)

	// phonefarm up and destroy: the same through the Automation API.
	upEnv := append(env, "PF_TOKEN="+token)
	phonefarm := func(wantOK bool, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir, cmd.Env = dir, upEnv
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("phonefarm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	state := filepath.Join(dir, "up-state")
	out = phonefarm(true, "up", "-f", inventory, "--state", state, "--preview")
	if !strings.Contains(out, "agent2: ") || !strings.Contains(out, "+ phonefarm:index:Farm: (create)") {
		t.Errorf("phonefarm up --preview does not show the farm's creation and plan:\n%s", out)
	}
	out = phonefarm(true, "up", "-f", inventory, "--state", state)
	t.Logf("phonefarm up:\n%s", out)
	kc := filepath.Join(dir, "kubeconfig")
	phonefarm(true, "kubeconfig", "-f", inventory, "--out", kc)
	b, err := os.ReadFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	if c, err = kube.NewClient(b); err != nil {
		t.Fatal(err)
	}
	allReady("after phonefarm up")
	if out := phonefarm(false, "destroy", "-f", inventory, "--state", state); !strings.Contains(out, "Type yes") || !strings.Contains(out, "nothing changed") {
		t.Errorf("phonefarm destroy without --yes and no answer:\n%s", out)
	}
	phonefarm(true, "destroy", "-f", inventory, "--state", state, "--yes")
	reset("after phonefarm destroy")
	noSecrets(t, state, map[string]string{"the join token": token})
}

// noSecrets fails t when a file under dir holds one of secrets.
func noSecrets(t *testing.T, dir string, secrets map[string]string) {
	t.Helper()
	files, encrypted := 0, false
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		encrypted = encrypted || strings.Contains(string(b), `"ciphertext"`)
		for what, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("%s holds %s in plain text", path, what)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 || !encrypted {
		t.Errorf("under %s: %d files, none with an encrypted secret; want the stack's state with its secrets encrypted", dir, files)
	}
}
