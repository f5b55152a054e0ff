package tui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/phonefarm/phonefarm/checks"
	"github.com/phonefarm/phonefarm/devicedb"
	"github.com/phonefarm/phonefarm/facts"
	"github.com/phonefarm/phonefarm/farm"
	"github.com/phonefarm/phonefarm/fastboot"
	"github.com/phonefarm/phonefarm/flash"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/kernelcfg"
	"github.com/phonefarm/phonefarm/provision"
	"github.com/phonefarm/phonefarm/transport"
	"github.com/phonefarm/phonefarm/transport/adb"
	"github.com/phonefarm/phonefarm/transport/ssh"
)

// Engine is what the wizard asks of the world. Every call runs inside a
// tea.Cmd, off the UI's goroutine; the wizard holds no connection itself.
type Engine interface {
	// Discover finds phones over USB (adb, fastboot, postmarketOS's USB
	// network) and at the SSH hosts given, and identifies each.
	Discover(ctx context.Context, o DiscoverOptions) []Found
	// Plan opens the inventory at path and plans it (reading the phones),
	// with the warnings phonefarm plan gives.
	Plan(ctx context.Context, path string) (*provision.Plan, []string, error)
	// Apply applies what Plan planned last, sending its events to send;
	// it locks the phones first, as apply does.
	Apply(ctx context.Context, send func(provision.Event)) (provision.Summary, error)
	// Close lets go of what Plan read the phones over.
	Close()
	// Finish writes the cluster's kubeconfig and reads its nodes.
	Finish(ctx context.Context, path string) (kubeconfig string, nodes []Node, err error)
}

// DiscoverOptions say where to look besides USB.
type DiscoverOptions struct {
	// SSH are hosts to reach over SSH ("[user@]host[:port]").
	SSH []string
	// Fastboot are fastboot devices over TCP ("tcp:host:port"), beside
	// those on USB.
	Fastboot []string
	// ADBServer is the adb server (adb's default when empty).
	ADBServer string
	// User, Identity, Become and KnownHosts are how SSH hosts are reached
	// when the host does not say.
	User, Identity, Become, KnownHosts string
	// OnlySSH looks at the SSH hosts only, not USB.
	OnlySSH bool
}

// Found is a phone discovery found, and what phonefarm knows of it.
type Found struct {
	// Via is how it was found: "adb", "fastboot", "ssh".
	Via string
	// Address is how to reach it: the adb serial, the fastboot serial, or
	// [user@]host[:port].
	Address string
	// Model is what the phone calls itself; Device the postmarketOS
	// device it matches, when one does.
	Model  string
	Device *devicedb.Device
	// Facts are what a running phone reported (Android or Linux).
	Facts *facts.Facts
	// Unlock is the bootloader unlock guidance for a phone postmarketOS
	// can be flashed onto.
	Unlock *flash.Unlock
	// Kernel is the kernel-config verdict for a running Linux phone.
	Kernel string
	// Checks are the failed checks of a running phone.
	Checks []string
	// Err says why the phone could not be read.
	Err error
}

// OS is what the phone runs: android, postmarketos, linux, or fastboot
// (in its bootloader).
func (f Found) OS() string {
	switch {
	case f.Via == "fastboot":
		return "fastboot"
	case f.Facts == nil:
		return ""
	case f.Facts.OS.Android != nil:
		return inventory.OSAndroid
	case f.Facts.OS.ID == "postmarketos":
		return inventory.OSPostmarketOS
	}
	return inventory.OSLinux
}

// Node is a node of the cluster as the done screen shows it.
type Node struct {
	Name, Status, Roles, Address string
}

// Real is the Engine on the real world: the adb server, fastboot over USB
// and TCP, SSH, and phonefarm's engine (package farm).
type Real struct {
	Log *slog.Logger
	// Kubeconfig is where Finish writes the kubeconfig (the farm's
	// default when empty).
	Kubeconfig string

	mu      sync.Mutex
	planned *farm.Planned
}

var _ Engine = (*Real)(nil)

func (r *Real) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

// USBNetwork is where a postmarketOS phone on USB answers.
const USBNetwork = "172.16.42.1"

func (r *Real) Discover(ctx context.Context, o DiscoverOptions) []Found {
	var mu sync.Mutex
	var out []Found
	add := func(f Found) {
		mu.Lock()
		out = append(out, f)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	hosts := append([]string{}, o.SSH...)
	if !o.OnlySSH {
		wg.Add(2)
		go func() { defer wg.Done(); r.adbPhones(ctx, o, add) }()
		go func() { defer wg.Done(); r.fastbootPhones(ctx, o, add) }()
		// postmarketOS on USB answers at its USB network's address.
		if reachable(ctx, net.JoinHostPort(USBNetwork, "22")) && !containsHost(hosts, USBNetwork) {
			hosts = append(hosts, USBNetwork)
		}
	}
	for _, h := range hosts {
		wg.Add(1)
		go func() { defer wg.Done(); add(r.sshPhone(ctx, o, h)) }()
	}
	wg.Wait()
	sortFound(out)
	return out
}

func containsHost(hosts []string, h string) bool {
	for _, x := range hosts {
		if _, host, _ := splitTarget(x); host == h {
			return true
		}
	}
	return false
}

// reachable: an SSH server answers at addr (its banner, not only a TCP
// connection: some networks accept any connection).
func reachable(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: 700 * time.Millisecond}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	banner := make([]byte, 4)
	n, _ := io.ReadFull(c, banner)
	return n == 4 && string(banner) == "SSH-"
}

func (r *Real) adbPhones(ctx context.Context, o DiscoverOptions, add func(Found)) {
	ds, err := adb.Devices(ctx, o.ADBServer)
	if err != nil {
		r.log().Debug("no adb server", "err", err)
		return
	}
	for _, d := range ds {
		f := Found{Via: "adb", Address: d.Serial, Model: d.Model}
		if d.State != "device" {
			f.Err = fmt.Errorf("adb says %s: %s", d.State, adbStateHint(d.State))
			add(f)
			continue
		}
		h, err := adb.Dial(ctx, adb.Config{Name: d.Serial, Serial: d.Serial, Server: o.ADBServer, Logger: r.log()})
		if err != nil {
			f.Err = err
			add(f)
			continue
		}
		r.identify(ctx, h, &f)
		h.Close()
		add(f)
	}
}

func adbStateHint(state string) string {
	switch state {
	case "unauthorized":
		return "accept the USB debugging prompt on the phone"
	case "offline":
		return "reconnect the cable, or restart adb"
	}
	return "the phone cannot be used over adb yet"
}

func (r *Real) fastbootPhones(ctx context.Context, o DiscoverOptions, add func(Found)) {
	serials := append([]string{}, o.Fastboot...)
	if usb, err := fastboot.ListUSB(ctx); err == nil {
		for _, d := range usb {
			serials = append(serials, d.Serial)
		}
	}
	for _, s := range serials {
		f := Found{Via: "fastboot", Address: s}
		c, err := fastboot.Open(ctx, s, fastboot.Options{})
		if err != nil {
			f.Err = err
			add(f)
			continue
		}
		product, err := c.GetVar(ctx, "product")
		c.Close()
		if err != nil {
			f.Err = err
			add(f)
			continue
		}
		f.Model = product
		if ds := devicedb.ByProduct(product); len(ds) > 0 {
			f.Device = &ds[0]
			u := flash.UnlockGuide(ds[0])
			f.Unlock = &u
		}
		add(f)
	}
}

// splitTarget reads [user@]host[:port].
func splitTarget(t string) (user, host string, port int) {
	if u, rest, ok := strings.Cut(t, "@"); ok {
		user, t = u, rest
	}
	host = t
	if h, p, err := net.SplitHostPort(t); err == nil {
		if n, err := strconv.Atoi(p); err == nil {
			host, port = h, n
		}
	}
	return user, host, port
}

func (r *Real) sshPhone(ctx context.Context, o DiscoverOptions, target string) Found {
	f := Found{Via: "ssh", Address: target}
	user, host, port := splitTarget(target)
	if user == "" {
		user = o.User
	}
	become := o.Become
	if become == "none" {
		become = ""
	}
	d := &ssh.Dialer{Log: r.log()}
	h, err := d.Dial(ctx, ssh.Config{Name: host, Host: host, Port: port, User: user, IdentityFile: inventory.ExpandHome(o.Identity),
		KnownHosts: inventory.ExpandHome(o.KnownHosts), HostKeyPolicy: ssh.AcceptNew, Become: become, DialTimeout: 5 * time.Second})
	if err != nil {
		f.Err = err
		return f
	}
	defer h.Close()
	r.identify(ctx, h, &f)
	return f
}

// identify reads a running phone's facts and what it needs.
func (r *Real) identify(ctx context.Context, h transport.Host, f *Found) {
	fs, err := facts.Gather(ctx, h)
	if err != nil {
		f.Err = err
		return
	}
	f.Facts = &fs
	if a := fs.OS.Android; a != nil {
		if f.Model == "" {
			f.Model = a.Model
		}
		if ds := devicedb.ByProduct(a.Device); len(ds) > 0 {
			f.Device = &ds[0]
			u := flash.UnlockGuide(ds[0])
			f.Unlock = &u
		}
	} else if f.Model == "" {
		f.Model = fs.OS.Name
	}
	o, err := checks.Observe(ctx, h, "")
	if err != nil {
		return
	}
	role := inventory.RoleAgent
	profiles, _ := kernelcfg.LookupProfiles("k3s")
	osName := f.OS()
	rep := checks.Evaluate(checks.Spec{Phone: h.Name(), OS: osName, Role: role, Profiles: profiles}, fs, o, time.Now())
	if rep.Kernel != nil {
		f.Kernel = rep.Kernel.Verdict
	}
	for _, res := range rep.Results {
		// What only matters once k3s runs (its CNI plugins, the pause
		// image) says nothing about a phone that has none yet.
		if res.Status == checks.Fail && !slices.Contains(checks.Advisory, res.ID) {
			f.Checks = append(f.Checks, res.ID+": "+res.Message)
		}
	}
}

func (r *Real) open(path string) (*farm.Farm, error) {
	return farm.Open(path, farm.Options{Log: r.log()})
}

func (r *Real) Plan(ctx context.Context, path string) (*provision.Plan, []string, error) {
	r.Close()
	f, err := r.open(path)
	if err != nil {
		return nil, nil, err
	}
	p, err := f.Plan(ctx, farm.PlanOptions{})
	if err != nil {
		return nil, nil, err
	}
	r.mu.Lock()
	r.planned = p
	r.mu.Unlock()
	return p.Plan, p.Warnings, nil
}

func (r *Real) Apply(ctx context.Context, send func(provision.Event)) (provision.Summary, error) {
	r.mu.Lock()
	p := r.planned
	r.mu.Unlock()
	if p == nil {
		return provision.Summary{}, errors.New("nothing planned")
	}
	release, err := p.Farm().Lock(ctx, nil)
	if err != nil {
		return provision.Summary{}, err
	}
	defer release()
	return p.Apply(ctx, send), nil
}

func (r *Real) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.planned != nil {
		r.planned.Close()
		r.planned = nil
	}
}

func (r *Real) Finish(ctx context.Context, path string) (string, []Node, error) {
	f, err := r.open(path)
	if err != nil {
		return "", nil, err
	}
	kc, err := f.WriteKubeconfig(ctx, r.Kubeconfig)
	if err != nil {
		return "", nil, err
	}
	c, err := f.Cluster(ctx)
	if err != nil {
		return kc, nil, err
	}
	list, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return kc, nil, err
	}
	var out []Node
	for _, n := range list.Items {
		nd := Node{Name: n.Name, Status: "NotReady"}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				nd.Status = "Ready"
			}
		}
		var roles []string
		for k := range n.Labels {
			if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok {
				roles = append(roles, r)
			}
		}
		sort.Strings(roles)
		nd.Roles = strings.Join(roles, ",")
		if n.Labels["phonefarm.dev/runtime"] == "proot" {
			nd.Roles = "rootless agent"
		}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				nd.Address = a.Address
			}
		}
		out = append(out, nd)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return kc, out, nil
}

// errNoPhones is the discovery that found nothing.
var errNoPhones = errors.New("no phones found")

// home is the user's home, for shortening paths on screen.
func home() string {
	h, _ := os.UserHomeDir()
	return h
}

// sortFound orders what discovery found: by how it was found, then address.
func sortFound(fs []Found) {
	rank := map[string]int{"ssh": 0, "adb": 1, "fastboot": 2}
	sort.SliceStable(fs, func(i, j int) bool {
		if rank[fs[i].Via] != rank[fs[j].Via] {
			return rank[fs[i].Via] < rank[fs[j].Via]
		}
		return fs[i].Address < fs[j].Address
	})
}
