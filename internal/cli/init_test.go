package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phonefarm/phonefarm/internal/adbemu"
	"github.com/phonefarm/phonefarm/internal/fastbootemu"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testbed/farmtest"
	"github.com/phonefarm/phonefarm/internal/testenv"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport/adb"
)

// tmuxTerm is phonefarm init in a real terminal (tmux, 80x24), driven as a
// person would: keys in, screens out.
type tmuxTerm struct {
	t       *testing.T
	session string
	screens []string
}

func (m *tmuxTerm) keys(keys ...string) {
	m.t.Helper()
	if out, err := exec.Command("tmux", append([]string{"send-keys", "-t", m.session}, keys...)...).CombinedOutput(); err != nil {
		m.t.Fatalf("tmux send-keys %q: %v\n%s", keys, err, out)
	}
}

func (m *tmuxTerm) screen() string {
	out, _ := exec.Command("tmux", "capture-pane", "-p", "-t", m.session).Output()
	return string(out)
}

// waitFor waits until the screen shows want, and keeps that screen.
func (m *tmuxTerm) waitFor(want string, limit time.Duration) string {
	m.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		s := m.screen()
		if strings.Contains(s, want) {
			m.screens = append(m.screens, s)
			return s
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("the terminal did not show %q within %s; it shows:\n%s", want, limit, s)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// A newcomer's session: phonefarm init finds two phones at SSH hosts (one
// given on the command line, one typed into the wizard), a stock Android
// phone on adb and a phone in its bootloader on fastboot; the Android
// phone is left out, the fastboot one recorded for flashing; the failed
// kernel-config check is skipped with its reason; the inventory is
// written, planned and applied, and the done screen shows the nodes
// Ready. The inventory validates, and plan finds the farm converged.
func TestInitWizardInTmux(t *testing.T) {
	t.Parallel()
	testenv.RequireTool(t, "tmux")
	f := farmtest.New(t, farmtest.Options{}, testbed.HostSpec{Name: "server1", PostmarketOS: true}, testbed.HostSpec{Name: "agent1"})
	tb := f.Testbed
	srv := adbemu.StartServer(t)
	dev, err := adbemu.Start(t.Context(), adbemu.Options{Properties: map[string]string{
		"ro.product.model": "Pixel 3a", "ro.product.device": "sargo", "ro.build.version.release": "14", "ro.build.version.sdk": "34",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	if err := adb.Connect(t.Context(), srv.Addr(), dev.Addr()); err != nil {
		t.Fatal(err)
	}
	srv.WaitState(t, dev.Addr(), "device")
	fb := fastbootemu.Start(t, fastbootemu.Options{Product: "enchilada", Serial: "c8a4e3f0", Locked: true})

	bin := buildPhonefarm(t)
	dir := t.TempDir()
	file, kc := filepath.Join(dir, "farm.yaml"), filepath.Join(dir, "kubeconfig")
	session := fmt.Sprintf("pfinit%d", os.Getpid())
	term := &tmuxTerm{t: t, session: session}
	command := fmt.Sprintf("PHONEFARM_CACHE=%s %s init -f %s --ssh %s --identity %s --known-hosts %s --k3s-file amd64=%s --adb-server %s --fastboot %s --kubeconfig %s; echo EXIT=$?; sleep 600",
		filepath.Join(dir, "cache"), bin, file, tb.Host("server1").Addr, tb.KeyFile, tb.KnownHosts, f.K3s, srv.Addr(), fb.Serial(), kc)
	if out, err := exec.Command("tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", command).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, s := range term.screens {
				t.Logf("screen %d:\n%s", i+1, s)
			}
		}
		_ = exec.Command("tmux", "kill-session", "-t", session).Run()
	})

	// 1. The phones found.
	s := term.waitFor("1/5 phones", 2*time.Minute)
	for _, want := range []string{"ssh " + tb.Host("server1").Addr, "k3s over SSH", "server", "adb " + dev.Addr(), "rootless agent on Android", "fastboot " + fb.Serial()[:10], "flash postmarketOS"} {
		if !strings.Contains(s, want) {
			t.Errorf("phones screen lacks %q:\n%s", want, s)
		}
	}
	// Another phone, typed in.
	term.keys("a")
	term.waitFor("user@host:port", 10*time.Second)
	term.keys(tb.Host("agent1").Addr, "Enter")
	s = term.waitFor("ssh "+tb.Host("agent1").Addr, time.Minute)
	// The Android phone (the second row: phones typed in come last) is
	// left out.
	term.keys("Down")
	s = term.waitFor("> sargo", 10*time.Second)
	if !strings.Contains(s, "Android 14 (SDK 34)") {
		t.Errorf("the Android phone's details lack its release:\n%s", s)
	}
	term.keys("Space", "Space")
	term.waitFor("skip", 10*time.Second)
	term.keys("Down")
	s = term.waitFor("OnePlus 6 (postmarketOS device oneplus-enchilada", 10*time.Second)
	if !strings.Contains(s, "unlock (OnePlus)") {
		t.Errorf("the fastboot phone's details lack the unlock guidance:\n%s", s)
	}

	// 2. The inventory: skip the kernel-config check the test bed fails.
	term.keys("Enter")
	s = term.waitFor("2/5 inventory", 10*time.Second)
	if strings.Contains(s, "kernel-config") {
		term.keys("Space")
		term.waitFor("[x] kernel-config", 10*time.Second)
	}
	// 3. The plan, 4. apply, 5. done.
	term.keys("Enter")
	term.waitFor("Plan: ", 2*time.Minute)
	term.keys("Enter")
	term.waitFor("4/5 apply", 10*time.Second)
	s = term.waitFor("5/5 done", 6*time.Minute)
	if !strings.Contains(s, "Your farm runs.") || strings.Count(s, " Ready ") != 2 {
		t.Errorf("done screen: want both nodes Ready:\n%s", s)
	}
	term.keys("q")
	s = term.waitFor("EXIT=", 30*time.Second)
	if !strings.Contains(s, "EXIT=0") || !strings.Contains(s, "export KUBECONFIG="+kc) {
		t.Errorf("after the wizard: want exit 0 and the kubeconfig line:\n%s", s)
	}
	for i, s := range term.screens {
		t.Logf("screen %d:\n%s", i+1, s)
	}

	// The inventory is valid, holds what was chosen, and the CLI finds
	// the farm converged.
	fm, err := inventory.Load(file)
	if err != nil {
		t.Fatalf("the wizard's inventory: %v", err)
	}
	var got []string
	for _, p := range fm.Phones {
		got = append(got, p.Name+" "+p.OS+" "+p.Role)
	}
	if strings.Join(got, ", ") != "server1 postmarketos server, enchilada postmarketos , agent1 linux agent" {
		t.Errorf("phones in the inventory: %q", got)
	}
	// A k3s server on this loaded machine can restart by itself (its
	// controllers lose leader election, and k3s exits with them); while it
	// does, and until its node is Ready again, plan rightly says the API
	// does not answer or plans only waits for Ready. That is given up to 3
	// minutes to pass; any other change fails at once.
	restarting := func(out, errOut string) bool {
		if strings.Contains(errOut, "does not answer from this machine") {
			return true
		}
		waits := strings.Count(out, "+ wait for node ")
		return waits > 0 && strings.Count(out, "(node not Ready)") == waits && strings.Contains(out, fmt.Sprintf("Plan: %d changes", waits))
	}
	code, out, errOut := run(t, "plan", "-f", file)
	for deadline := time.Now().Add(3 * time.Minute); restarting(out, errOut) && time.Now().Before(deadline); {
		t.Logf("plan while the server's k3s restarts; planning again in 5 s:\n%s%s", out, errOut)
		time.Sleep(5 * time.Second)
		code, out, errOut = run(t, "plan", "-f", file)
	}
	if code != 0 || strings.Count(out, ": no changes") != 2 {
		log, _ := tb.Exec(t.Context(), tb.Host("server1"), "date -u; grep -c 'Starting k3s v' /var/log/k3s.log; tail -n 60 /var/log/k3s.log")
		t.Errorf("plan on the wizard's inventory: exit %d, want both phones unchanged:\n%s%s\nserver1's k3s starts and log:\n%s", code, out, errOut, log)
	}
	if _, err := os.Stat(kc); err != nil {
		t.Errorf("kubeconfig: %v", err)
	}
}
