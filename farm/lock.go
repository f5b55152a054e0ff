package farm

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/phonefarm/phonefarm/internal/parallel"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport"
)

// ErrLocked: another phonefarm command is changing the farm or one of its
// phones.
var ErrLocked = errors.New("locked by another phonefarm command")

// Lock takes the locks a changing command (apply, reset) holds while it
// works: this machine's lock on the inventory, keyed on the file's
// identity (a symlink or hard link of it is the same inventory), and a
// lock on each phone of names (every phone with a role when empty), so
// that a copy of the inventory, another inventory naming the same phone
// or another machine cannot change it at the same time.
//
// A phone's lock is held by a process on the phone that lives as long as
// the connection phonefarm holds it over: when phonefarm ends (even
// killed), the connection closes and the process removes the lock; a
// lock whose process is gone (the phone rebooted, the process was killed)
// is taken over. A phone that cannot be reached is not locked (it cannot
// be changed either). Release with the returned function.
func (f *Farm) Lock(ctx context.Context, names []string) (release func(), err error) {
	local, err := f.lockLocal()
	if err != nil {
		return nil, err
	}
	phones, err := f.phonesOf(names)
	if err != nil {
		local()
		return nil, err
	}
	owner := lockOwner(f.opts.Now())
	held := make([]*phoneLock, len(phones))
	errs := make([]error, len(phones))
	_ = parallel.Each(ctx, len(phones), f.opts.Parallel, func(ctx context.Context, i int) error {
		held[i], errs[i] = f.lockPhone(ctx, phones[i], owner)
		return nil
	})
	release = func() {
		var wg sync.WaitGroup
		for _, l := range held {
			if l != nil {
				wg.Add(1)
				go func() { defer wg.Done(); l.release() }()
			}
		}
		wg.Wait()
		local()
	}
	if err := errors.Join(errs...); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// lockOwner says who holds a lock, for the message another command gets.
func lockOwner(now time.Time) string {
	who := "someone"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s@%s, pid %d, since %s", who, host, os.Getpid(), now.Format(time.RFC3339))
}

// lockLocal takes this machine's lock on the inventory file.
func (f *Farm) lockLocal() (func(), error) {
	file := f.Inventory.File()
	key := file
	var st syscall.Stat_t
	if err := syscall.Stat(file, &st); err == nil {
		key = fmt.Sprintf("dev %d inode %d", st.Dev, st.Ino)
	} else if abs, err := filepath.Abs(file); err == nil {
		key = abs
	}
	sum := sha256.Sum256([]byte(key))
	dir := filepath.Join(f.opts.CacheDir, "locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(filepath.Join(dir, hex.EncodeToString(sum[:8])), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(lf.Name())
		lf.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another phonefarm command is changing the phones of %s (%s); wait for it to finish", ErrLocked, file, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("lock %s: %w", file, err)
	}
	_ = lf.Truncate(0)
	_, _ = fmt.Fprintf(lf, "pid %d", os.Getpid())
	return func() { lf.Close() }, nil
}

// phoneLock is a phone's lock, held by the command that keeps running on
// the phone while stdin stays open.
type phoneLock struct {
	h     transport.Host
	stdin *io.PipeWriter
	done  chan error
}

func (l *phoneLock) release() {
	l.stdin.Close()
	select {
	case <-l.done:
	case <-time.After(10 * time.Second):
	}
	l.h.Close()
}

// lockDir is where a phone keeps phonefarm's lock: /run (gone at reboot)
// where the phone's user may write it, the shell user's directory on
// Android.
func (f *Farm) lockDir(p *inventory.Phone) string {
	if p.OS == inventory.OSAndroid {
		dir := inventory.DefaultAndroidDir
		if a := f.Inventory.Android; a != nil && a.Dir != "" {
			dir = a.Dir
		}
		return path.Dir(dir) + "/phonefarm-lock"
	}
	return "/run/phonefarm"
}

// lockScript takes the lock directory $d/lock atomically (mkdir), taking
// over a lock whose holder is gone (its process is not running, or the
// phone rebooted since), says "locked" and holds it until its standard
// input closes. Exit 75 with the holder when the lock is taken.
const lockScript = `d=%s owner=%s
l=$d/lock
boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)
mkdir -p "$d" 2>/dev/null || { d=/tmp/phonefarm-$(id -u); l=$d/lock; mkdir -p "$d" || exit 1; }
if ! mkdir "$l" 2>/dev/null; then
	pid=$(cat "$l/pid" 2>/dev/null) held=$(cat "$l/owner" 2>/dev/null) hboot=$(cat "$l/boot" 2>/dev/null)
	if [ -n "$pid" ] && [ -e "/proc/$pid" ] && [ "$hboot" = "$boot" ]; then
		echo "held: $held"
		exit 75
	fi
	# The holder is gone. Move its lock aside (one taker wins), check it
	# is the one seen, and take the lock.
	if mv "$l" "$l.stale.$$" 2>/dev/null; then
		if [ "$(cat "$l.stale.$$/pid" 2>/dev/null)" != "$pid" ]; then
			mv "$l.stale.$$" "$l" 2>/dev/null
			echo "held: $(cat "$l/owner" 2>/dev/null)"
			exit 75
		fi
		rm -rf "$l.stale.$$"
	fi
	mkdir "$l" 2>/dev/null || { echo "held: $(cat "$l/owner" 2>/dev/null)"; exit 75; }
	echo "recovered: $held"
fi
printf '%%s\n' "$owner" > "$l/owner"
echo "$boot" > "$l/boot"
echo $$ > "$l/pid"
echo locked
cat >/dev/null
rm -rf "$l"
`

// lockPhone takes p's lock. An unreachable phone is not locked and not
// an error here: the command that follows reports it.
func (f *Farm) lockPhone(ctx context.Context, p *inventory.Phone, owner string) (*phoneLock, error) {
	h, err := f.Connect(ctx, p)
	if err != nil {
		f.opts.Log.Debug("phone not locked: unreachable", "host", p.Name, "err", err)
		return nil, nil
	}
	stdinR, stdinW := io.Pipe()
	outR, outW := io.Pipe()
	l := &phoneLock{h: h, stdin: stdinW, done: make(chan error, 1)}
	var stderr strings.Builder
	go func() {
		// The lock's life is the connection's, not the caller's context.
		err := h.Run(context.WithoutCancel(ctx), transport.Command{
			Cmd:   fmt.Sprintf(lockScript, transport.Quote(f.lockDir(p)), transport.Quote(owner)),
			Stdin: stdinR, Stdout: outW, Stderr: &stderr,
		})
		outW.CloseWithError(io.EOF)
		l.done <- err
	}()
	sc := bufio.NewScanner(outR)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "locked":
			go func() { _, _ = io.Copy(io.Discard, outR) }()
			return l, nil
		case strings.HasPrefix(line, "held: "):
			stdinW.Close()
			<-l.done
			h.Close()
			return nil, fmt.Errorf("%w: %s is being changed by another phonefarm command (%s); wait for it to finish", ErrLocked, p.Name, strings.TrimPrefix(line, "held: "))
		case strings.HasPrefix(line, "recovered: "):
			f.opts.Log.Info("took over a lock whose holder is gone", "host", p.Name, "holder", strings.TrimPrefix(line, "recovered: "))
		}
	}
	stdinW.Close()
	err = <-l.done
	h.Close()
	return nil, fmt.Errorf("lock %s: %v %s", p.Name, err, strings.TrimSpace(stderr.String()))
}
