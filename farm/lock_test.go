package farm_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phonefarm/phonefarm/farm"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testenv"
)

// TestMain lets the test binary play a second phonefarm that holds a
// phone's lock until it is killed.
func TestMain(m *testing.M) {
	if inv := os.Getenv("PHONEFARM_TEST_HOLD_LOCK"); inv != "" {
		fm, err := farm.Open(inv, farm.Options{CacheDir: os.Getenv("PHONEFARM_TEST_CACHE")})
		if err == nil {
			_, err = fm.Lock(context.Background(), nil)
		}
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("holding")
		select {}
	}
	os.Exit(m.Run())
}

// This machine's lock is the inventory file's, whatever path names it: a
// symlink or a hard link is the same inventory; another file is not.
func TestLocalLockFollowsTheFile(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "farm.yaml")
	if err := os.WriteFile(inv, []byte("apiVersion: phonefarm.dev/v1alpha1\nkind: Farm\nphones:\n  - {name: a, os: linux, ssh: {host: 192.0.2.1}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link, hard, cp := filepath.Join(dir, "link.yaml"), filepath.Join(dir, "hard.yaml"), filepath.Join(dir, "copy.yaml")
	if err := os.Symlink(inv, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(inv, hard); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(inv)
	if err := os.WriteFile(cp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	o := farm.Options{CacheDir: filepath.Join(dir, "cache")}
	open := func(p string) *farm.Farm {
		f, err := farm.Open(p, o)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	// Phone a has no role: only this machine's lock is taken.
	release, err := open(inv).Lock(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{link, hard, "./" + filepath.Base(inv)} {
		if p[0] == '.' {
			t.Chdir(dir)
		}
		if _, err := open(p).Lock(t.Context(), nil); !errors.Is(err, farm.ErrLocked) {
			t.Errorf("lock through %s while farm.yaml is locked: got %v, want ErrLocked", p, err)
		}
	}
	other, err := open(cp).Lock(t.Context(), nil)
	if err != nil {
		t.Errorf("a copy (another file): %v", err)
	} else {
		other()
	}
	release()
	again, err := open(link).Lock(t.Context(), nil)
	if err != nil {
		t.Errorf("after release: %v", err)
	} else {
		again()
	}
}

// A phone's lock holds across inventories and machines: two inventories
// naming the same test-bed phone cannot change it at once; the lock of a
// phonefarm that was SIGKILLed, or whose holder on the phone is gone, is
// taken over by the next.
func TestPhoneLock(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mmdebstrap")
	ctx := context.Background()
	tb, err := testbed.Up(ctx, testbed.Options{Hosts: []testbed.HostSpec{{Name: "phone1", PostmarketOS: true}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tb.Down(context.Background()) })
	dir := t.TempDir()
	inventory := func(name string) string {
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte(tb.Inventory(testbed.InventoryOptions{Name: name, K3s: "/bin/true", Servers: 1})), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := inventory("first"), inventory("second")
	open := func(p, cache string) *farm.Farm {
		f, err := farm.Open(p, farm.Options{CacheDir: filepath.Join(dir, cache)})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	// Different caches stand for different machines: only the phone's
	// lock is shared.
	release, err := open(a, "machine1").Lock(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = open(b, "machine2").Lock(ctx, nil)
	if !errors.Is(err, farm.ErrLocked) || !strings.Contains(err.Error(), "phone1 is being changed by another phonefarm command") || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("second inventory, same phone: got %v, want ErrLocked naming phone1 and the holder", err)
	}
	release()
	release, err = open(b, "machine2").Lock(ctx, nil)
	if err != nil {
		t.Fatalf("after the first released: %v", err)
	}
	release()

	// A phonefarm holding the lock is SIGKILLed.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	holder := exec.Command(self, "-test.run=^$")
	holder.Env = append(os.Environ(), "PHONEFARM_TEST_HOLD_LOCK="+a, "PHONEFARM_TEST_CACHE="+filepath.Join(dir, "machine3"))
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "holding\n" {
		t.Fatalf("holder: %q", line)
	}
	if _, err := open(b, "machine2").Lock(ctx, nil); !errors.Is(err, farm.ErrLocked) {
		t.Errorf("while another process holds it: got %v, want ErrLocked", err)
	}
	_ = holder.Process.Signal(syscall.SIGKILL)
	_ = holder.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for {
		release, err = open(b, "machine2").Lock(ctx, nil)
		if err == nil {
			release()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed holder's lock was not recovered within 30 s: %v", err)
		}
		time.Sleep(time.Second)
	}

	// A lock whose holder on the phone is gone (killed there, or from
	// before a reboot) is taken over.
	phone := tb.Host("phone1")
	script := `mkdir -p /run/phonefarm/lock && sh -c 'echo $$' > /run/phonefarm/lock/pid && echo 'ghost@elsewhere, pid 1' > /run/phonefarm/lock/owner && cat /proc/sys/kernel/random/boot_id > /run/phonefarm/lock/boot`
	if _, err := tb.Exec(ctx, phone, script); err != nil {
		t.Fatal(err)
	}
	release, err = open(a, "machine1").Lock(ctx, nil)
	if err != nil {
		t.Fatalf("a lock whose holder is gone: %v", err)
	}
	release()
	if out, _ := tb.Exec(ctx, phone, "ls /run/phonefarm"); strings.TrimSpace(string(out)) != "" {
		t.Errorf("/run/phonefarm after release: %q, want empty", out)
	}
}
