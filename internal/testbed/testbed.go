// Package testbed brings up phone-like hosts on this machine for phonefarm's
// integration tests and demo farm. Each host is a network namespace behind a
// bridge, with private PID, mount and UTS namespaces, an overlay of one
// shared Debian image, OpenRC as PID 1, a real OpenSSH server and nftables
// loaded with postmarketOS's drop-by-default ruleset and fragments. Some hosts
// say postmarketOS in /etc/os-release, the others Debian.
//
// Hosts get no route beyond their own /24: nothing they run can reach
// another network. Everything needs root.
package testbed

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// HostSpec describes one host to start.
type HostSpec struct {
	Name         string // hostname and phone name; DNS-1123 label
	PostmarketOS bool   // os-release says postmarketOS instead of Debian
}

// Options configure Up.
type Options struct {
	Hosts []HostSpec
	// ID picks the bridge and subnet 10.99.ID.0/24; 0 allocates a free one
	// from 10 up. The demo farm uses a fixed ID.
	ID int
	// Dir keeps keys, known_hosts and per-host layers; a temporary
	// directory when empty.
	Dir string
	// CacheDir holds the shared image, default $PHONEFARM_TOOL_CACHE or
	// /var/cache/phonefarm.
	CacheDir string
	// Persistent test beds outlive the process that starts them (the demo
	// farm, bench scripts): their ID stays reserved while Dir exists,
	// instead of while the starting process lives.
	Persistent bool
	// Workloads is a directory of what a k3s release carries and a k3s
	// built from source lacks (WorkloadTools), mounted into every host so
	// its pods can run; without it nodes get Ready but run no pod.
	Workloads string
	Log       *slog.Logger
}

// Host is a running test-bed host.
type Host struct {
	Name         string
	Addr         string // IPv4 address on the bridge
	Netns        string
	PostmarketOS bool
	Dir          string        // upper layer, work dir and console log
	HostKey      ssh.PublicKey `json:"-"`
	// Cgroup is the host's own cgroup in every hierarchy (named like
	// Netns), for its kubelet's cgroup-root.
	Cgroup string
}

// Testbed is a set of running hosts behind one bridge.
type Testbed struct {
	ID         int
	Dir        string
	Bridge     string
	Gateway    string // the bridge's address, reachable from every host
	Rootfs     string
	KeyFile    string // private key accepted for root and "user" on every host
	KnownHosts string // host keys of every host
	Hosts      []*Host
	// Persistent: the test bed and the servers started for it outlive
	// the process that started them.
	Persistent bool
	Workloads  string
	log        *slog.Logger
}

const lockRoot = "/run/phonefarm-testbed"

// DefaultCacheDir is where tool builds and the image are cached per machine.
func DefaultCacheDir() string {
	if d := os.Getenv("PHONEFARM_TOOL_CACHE"); d != "" {
		return d
	}
	return "/var/cache/phonefarm"
}

// Up starts the hosts and waits until each answers on port 22.
func Up(ctx context.Context, opts Options) (*Testbed, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the test bed needs root (network namespaces and mounts)")
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.CacheDir == "" {
		opts.CacheDir = DefaultCacheDir()
	}
	if err := raiseInotifyLimits(); err != nil {
		return nil, err
	}
	rootfs, err := EnsureRootfs(ctx, opts.CacheDir, log)
	if err != nil {
		return nil, err
	}
	dir := opts.Dir
	if dir == "" {
		if opts.Persistent {
			return nil, errors.New("a persistent test bed needs a directory")
		}
		if dir, err = os.MkdirTemp("", "phonefarm-testbed-"); err != nil {
			return nil, err
		}
	}
	owner := strconv.Itoa(os.Getpid())
	if opts.Persistent {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		owner = "dir:" + dir
	}
	id, err := claimID(lockRoot, opts.ID, owner, func(id int) error { return removeNetwork(context.Background(), id) })
	if err != nil {
		return nil, err
	}
	tb := &Testbed{
		ID: id, Dir: dir, Bridge: fmt.Sprintf("pf%dbr", id), Gateway: fmt.Sprintf("10.99.%d.1", id),
		Rootfs: rootfs, KeyFile: filepath.Join(dir, "id_ed25519"), KnownHosts: filepath.Join(dir, "known_hosts"), log: log,
		Persistent: opts.Persistent, Workloads: opts.Workloads,
	}
	if err := tb.start(ctx, opts.Hosts); err != nil {
		_ = tb.Down(context.WithoutCancel(ctx))
		return nil, err
	}
	return tb, nil
}

func (tb *Testbed) start(ctx context.Context, specs []HostSpec) error {
	if err := os.MkdirAll(tb.Dir, 0o700); err != nil {
		return err
	}
	authorized, err := ensureClientKey(tb.KeyFile)
	if err != nil {
		return err
	}
	if err := tb.ensureBridge(ctx); err != nil {
		return err
	}
	hostinit := filepath.Join(tb.Dir, "hostinit.sh")
	b, _ := rootfsFiles.ReadFile("rootfs/hostinit.sh")
	if err := os.WriteFile(hostinit, b, 0o755); err != nil {
		return err
	}
	uid, gid, err := userIDs(tb.Rootfs, "user")
	if err != nil {
		return err
	}
	var known strings.Builder
	for i, spec := range specs {
		h := &Host{
			Name: spec.Name, PostmarketOS: spec.PostmarketOS,
			Addr:   fmt.Sprintf("10.99.%d.%d", tb.ID, 11+i),
			Netns:  fmt.Sprintf("pf%d-%s", tb.ID, spec.Name),
			Cgroup: fmt.Sprintf("pf%d-%s", tb.ID, spec.Name),
			Dir:    filepath.Join(tb.Dir, "hosts", spec.Name),
		}
		if h.HostKey, err = h.prepare(authorized, uid, gid); err != nil {
			return fmt.Errorf("prepare %s: %w", h.Name, err)
		}
		fmt.Fprintf(&known, "%s %s", h.Addr, ssh.MarshalAuthorizedKey(h.HostKey))
		if err := tb.boot(ctx, h, hostinit, i); err != nil {
			return fmt.Errorf("start %s: %w", h.Name, err)
		}
		tb.Hosts = append(tb.Hosts, h)
	}
	if err := os.WriteFile(tb.KnownHosts, []byte(known.String()), 0o600); err != nil {
		return err
	}
	for _, h := range tb.Hosts {
		if err := waitSSH(ctx, h, 90*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func (tb *Testbed) ensureBridge(ctx context.Context) error {
	subnet := fmt.Sprintf("10.99.%d.0/24", tb.ID)
	if out, _ := exec.CommandContext(ctx, "ip", "-o", "route", "show", subnet).Output(); len(out) > 0 && !strings.Contains(string(out), "dev "+tb.Bridge+" ") {
		return fmt.Errorf("another interface already routes %s: %s", subnet, strings.TrimSpace(string(out)))
	}
	if exec.CommandContext(ctx, "ip", "link", "show", tb.Bridge).Run() == nil {
		return nil
	}
	return run(ctx, [][]string{
		{"ip", "link", "add", tb.Bridge, "type", "bridge"},
		{"ip", "addr", "add", tb.Gateway + "/24", "dev", tb.Bridge},
		{"ip", "link", "set", tb.Bridge, "up"},
	})
}

// prepare writes the host's own upper layer: host key, authorized keys,
// hostname and os-release.
func (h *Host) prepare(authorized []byte, uid, gid int) (ssh.PublicKey, error) {
	up := filepath.Join(h.Dir, "upper")
	for _, d := range []string{up + "/etc/ssh", up + "/root/.ssh", up + "/home/user/.ssh", h.Dir + "/work", h.Dir + "/merged"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// Directories in the upper layer hide the image's, so their modes
	// must match a normal system: sshd reads authorized_keys as the user.
	for d, mode := range map[string]os.FileMode{"/root": 0o700, "/root/.ssh": 0o700, "/home/user/.ssh": 0o700} {
		if err := os.Chmod(up+d, mode); err != nil {
			return nil, err
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, h.Name)
	if err != nil {
		return nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{"/etc/ssh/ssh_host_ed25519_key", pem.EncodeToMemory(block), 0o600},
		{"/etc/ssh/ssh_host_ed25519_key.pub", ssh.MarshalAuthorizedKey(sshPub), 0o644},
		{"/root/.ssh/authorized_keys", authorized, 0o600},
		{"/home/user/.ssh/authorized_keys", authorized, 0o600},
		{"/etc/hostname", []byte(h.Name + "\n"), 0o644},
		{"/etc/machine-id", []byte(machineID() + "\n"), 0o444},
		{"/etc/hosts", []byte("127.0.0.1 localhost\n127.0.1.1 " + h.Name + "\n"), 0o644},
	}
	if h.PostmarketOS {
		files = append(files, struct {
			path string
			data []byte
			mode os.FileMode
		}{"/etc/os-release", []byte("NAME=\"postmarketOS\"\nID=postmarketos\nID_LIKE=alpine\nVERSION_ID=v25.06\nPRETTY_NAME=\"postmarketOS v25.06\"\nHOME_URL=\"https://postmarketos.org/\"\n"), 0o644})
	}
	for _, f := range files {
		if err := os.WriteFile(up+f.path, f.data, f.mode); err != nil {
			return nil, err
		}
	}
	for _, p := range []string{up + "/home/user", up + "/home/user/.ssh", up + "/home/user/.ssh/authorized_keys"} {
		if err := os.Chown(p, uid, gid); err != nil {
			return nil, err
		}
	}
	return sshPub, os.Chmod(up+"/home/user", 0o755)
}

func (tb *Testbed) boot(ctx context.Context, h *Host, hostinit string, i int) error {
	veth := fmt.Sprintf("pf%dh%d", tb.ID, i)
	// A leftover of a killed run: its processes must die before its name
	// goes, or the namespace lives on unnamed.
	killNetns(h.Netns)
	_ = exec.CommandContext(ctx, "ip", "netns", "del", h.Netns).Run()
	_ = exec.CommandContext(ctx, "ip", "link", "del", veth).Run()
	if err := run(ctx, [][]string{
		{"ip", "netns", "add", h.Netns},
		{"ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.Netns},
		{"ip", "link", "set", veth, "master", tb.Bridge, "up"},
		{"ip", "-n", h.Netns, "addr", "add", h.Addr + "/24", "dev", "eth0"},
		{"ip", "-n", h.Netns, "link", "set", "lo", "up"},
		{"ip", "-n", h.Netns, "link", "set", "eth0", "up"},
	}); err != nil {
		return err
	}
	console, err := os.Create(filepath.Join(h.Dir, "console.log"))
	if err != nil {
		return err
	}
	defer console.Close()
	// setsid detaches the host from this process: the demo farm outlives
	// the command that started it.
	cmd := exec.Command("ip", "netns", "exec", h.Netns, "setsid", "unshare", "--mount", "--pid", "--uts", "--fork", "--kill-child",
		"sh", hostinit, tb.Rootfs, h.Dir, h.Name, h.Cgroup, tb.Workloads)
	cmd.Stdout, cmd.Stderr = console, console
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait() //nolint:errcheck // reaped; the host's life is tracked through its namespace
	return nil
}

func waitSSH(ctx context.Context, h *Host, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(h.Addr, "22"), time.Second)
		if err == nil {
			buf := make([]byte, 4)
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if n == 4 && string(buf) == "SSH-" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(h.Dir, "console.log"))
			return fmt.Errorf("host %s (%s) did not answer on port 22 within %s; console:\n%s", h.Name, h.Addr, limit, tail(log, 2000))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Host returns the host named name.
func (tb *Testbed) Host(name string) *Host {
	for _, h := range tb.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Exec runs a shell command inside a host's namespaces as its root,
// without SSH: the controller's back door for setting up and breaking
// things in tests.
func (tb *Testbed) Exec(ctx context.Context, h *Host, command string) ([]byte, error) {
	pid, err := initPID(h.Netns)
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(pid), "-m", "-u", "-p", "-n", "-r", "-w",
		"/bin/sh", "-c", command).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %s: %w: %s", h.Name, command, err, out)
	}
	return out, nil
}

// WriteFile writes a file inside a host (its parent directories made),
// through its root as its PID 1 sees it: the controller's way to hand a
// host a file without SSH.
func (tb *Testbed) WriteFile(h *Host, path string, data []byte, mode os.FileMode) error {
	pid, err := initPID(h.Netns)
	if err != nil {
		return err
	}
	p := filepath.Join(fmt.Sprintf("/proc/%d/root", pid), path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

// initPID finds the PID (in this namespace) of the host's PID 1.
func initPID(netns string) (int, error) {
	for _, p := range netnsPIDs(netns) {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "NSpid:" && f[2] == "1" {
				return p, nil
			}
		}
	}
	return 0, fmt.Errorf("host namespace %s has no running init", netns)
}

func netnsPIDs(netns string) []int {
	out, _ := exec.Command("ip", "netns", "pids", netns).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// Stop kills a host's processes (as pulling the battery would) and removes
// its namespace; its files stay until Down.
func (tb *Testbed) Stop(ctx context.Context, h *Host) error {
	killNetns(h.Netns)
	return exec.CommandContext(ctx, "ip", "netns", "del", h.Netns).Run()
}

func killNetns(netns string) {
	// The namespace's PID 1 ignores SIGTERM, so everything gets SIGKILL.
	for range 100 {
		pids := netnsPIDs(netns)
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			_ = exec.Command("kill", "-9", strconv.Itoa(p)).Run()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Down stops every host and removes the bridge and the test bed's files.
func (tb *Testbed) Down(ctx context.Context) error {
	errs := []error{removeNetwork(ctx, tb.ID)}
	if err := os.RemoveAll(tb.Dir); err != nil {
		errs = append(errs, err)
	}
	releaseID(tb.ID)
	return errors.Join(errs...)
}

// raiseInotifyLimits lifts this machine's inotify limits, which every host's
// containerd and kubelet draw on: they are per user, and every host runs as
// root, so a few k3s nodes exhaust the default 128 instances and containerd
// fails with "too many open files".
func raiseInotifyLimits() error {
	for f, min := range map[string]int{"max_user_instances": 8192, "max_user_watches": 524288} {
		p := "/proc/sys/fs/inotify/" + f
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n < min {
			if err := os.WriteFile(p, []byte(strconv.Itoa(min)), 0o644); err != nil {
				return fmt.Errorf("raise fs.inotify.%s for the test bed's k3s nodes: %w", f, err)
			}
		}
	}
	return nil
}

func machineID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// removeCgroups removes the hosts' cgroups (and what kubelets made under
// them) from every hierarchy, deepest first.
func removeCgroups(id int) {
	roots, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/*/pf%d-*", id))
	v2, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/pf%d-*", id))
	for _, root := range append(roots, v2...) {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
	}
}

// removeNetwork kills the hosts of test bed id and deletes its namespaces
// and bridge, also when a killed run left them behind.
func removeNetwork(ctx context.Context, id int) error {
	var errs []error
	out, _ := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	prefix := fmt.Sprintf("pf%d-", id)
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			killNetns(f[0])
			if err := exec.CommandContext(ctx, "ip", "netns", "del", f[0]).Run(); err != nil {
				errs = append(errs, fmt.Errorf("delete namespace %s: %w", f[0], err))
			}
		}
	}
	links, _ := exec.CommandContext(ctx, "ip", "-o", "link", "show").Output()
	for _, line := range strings.Split(string(links), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, fmt.Sprintf("pf%dh", id)) || name == fmt.Sprintf("pf%dbr", id) {
			_ = exec.CommandContext(ctx, "ip", "link", "del", name).Run()
		}
	}
	removeCgroups(id)
	return errors.Join(errs...)
}

// claimID reserves a test-bed ID, so concurrent test packages use distinct
// bridges and subnets. The reservation records its owner: a process ID, or
// "dir:PATH" for a persistent test bed. A reservation whose owner is gone
// (the process died, the directory was removed) is taken over, after
// clearOut has removed what it left running. Claims are made one at a
// time, across processes and within one (an exclusive flock on
// root/.lock): two test beds that both found the same stale reservation
// would otherwise both take it, and each tear down the other's network.
func claimID(root string, want int, owner string, clearOut func(id int) error) (int, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return 0, err
	}
	unlock, err := lockFile(filepath.Join(root, ".lock"))
	if err != nil {
		return 0, fmt.Errorf("lock the test-bed IDs: %w", err)
	}
	defer unlock()
	try := func(id int) bool {
		dir := filepath.Join(root, strconv.Itoa(id))
		if err := os.Mkdir(dir, 0o755); err != nil {
			// Taken, unless its owner is gone or never got written (a
			// claimer that died under the lock).
			b, rerr := os.ReadFile(filepath.Join(dir, "owner"))
			if rerr == nil && ownerAlive(strings.TrimSpace(string(b))) && want == 0 {
				return false
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(owner), 0o644); err != nil {
			return false
		}
		// Whatever a dead owner left running goes first.
		return clearOut(id) == nil
	}
	if want != 0 {
		try(want) // a fixed ID (the demo) is always taken over
		return want, nil
	}
	for id := 10; id < 250; id++ {
		if try(id) {
			return id, nil
		}
	}
	return 0, errors.New("no free test-bed ID between 10 and 249")
}

func ownerAlive(owner string) bool {
	if dir, ok := strings.CutPrefix(owner, "dir:"); ok {
		_, err := os.Stat(dir)
		return err == nil
	}
	pid, err := strconv.Atoi(owner)
	return err == nil && pid > 0 && processAlive(pid)
}

// lockFile takes an exclusive flock on path (made if missing), waiting
// while another holds it; unlock releases it.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

func releaseID(id int) { _ = os.RemoveAll(filepath.Join(lockRoot, strconv.Itoa(id))) }

func processAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

func run(ctx context.Context, cmds [][]string) error {
	for _, c := range cmds {
		if out, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(c, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// ensureClientKey creates the test bed's client key and returns its
// authorized_keys line.
func ensureClientKey(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		signer, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, err
		}
		return ssh.MarshalAuthorizedKey(signer.PublicKey()), nil
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "phonefarm-testbed")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return ssh.MarshalAuthorizedKey(sshPub), os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644)
}

func userIDs(rootfs, user string) (int, int, error) {
	b, err := os.ReadFile(filepath.Join(rootfs, "etc", "passwd"))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 3 && f[0] == user {
			uid, _ := strconv.Atoi(f[2])
			gid, _ := strconv.Atoi(f[3])
			return uid, gid, nil
		}
	}
	return 0, 0, fmt.Errorf("no user %q in the test-bed image", user)
}
