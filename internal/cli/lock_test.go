package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phonefarm/phonefarm/farm"
	"github.com/phonefarm/phonefarm/internal/testbed"
	"github.com/phonefarm/phonefarm/internal/testenv"
)

// Two applies from two inventories naming the same phone: while one holds
// the phone, the other stops before changing anything and says who holds
// it; reset likewise.
func TestApplyRefusesALockedPhone(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mmdebstrap")
	ctx := context.Background()
	tb, err := testbed.Up(ctx, testbed.Options{Hosts: []testbed.HostSpec{{Name: "phone1", PostmarketOS: true}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tb.Down(context.Background()) })
	dir := t.TempDir()
	files := map[string]string{}
	for _, name := range []string{"first", "second"} {
		files[name] = filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(files[name], []byte(tb.Inventory(testbed.InventoryOptions{Name: name, K3s: "/bin/true", Servers: 1})), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fm, err := farm.Open(files["first"], farm.Options{CacheDir: filepath.Join(dir, "elsewhere")})
	if err != nil {
		t.Fatal(err)
	}
	release, err := fm.Lock(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	for _, args := range [][]string{{"apply", "-f", files["second"]}, {"reset", "-f", files["second"], "--yes"}} {
		code, stdout, stderr := run(t, args...)
		if code != 1 || !strings.Contains(stderr, "phone1 is being changed by another phonefarm command") {
			t.Errorf("phonefarm %s while the phone is locked: exit %d, want 1 and the holder\n%s%s", strings.Join(args, " "), code, stdout, stderr)
		}
	}
	if out, _ := tb.Exec(ctx, tb.Host("phone1"), "test -e /usr/local/bin/k3s && echo installed"); strings.TrimSpace(string(out)) != "" {
		t.Errorf("the refused apply installed k3s anyway")
	}
}
