package tui

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/phonefarm/phonefarm/inventory"
)

// Use is what the wizard makes of a phone.
type Use string

const (
	// UseSkip leaves the phone out.
	UseSkip Use = "skip"
	// UseLinux runs k3s on the Linux the phone runs (postmarketOS or
	// another distribution), over SSH.
	UseLinux Use = "k3s over SSH"
	// UseAgent keeps stock Android and runs phonefarm's rootless agent,
	// over adb.
	UseAgent Use = "rootless agent on Android"
	// UseFlash flashes postmarketOS; the inventory records the phone for
	// phonefarm flash, without a role until it runs postmarketOS.
	UseFlash Use = "flash postmarketOS"
)

// Uses are what a found phone can become, the likeliest first.
func (f Found) Uses() []Use {
	if f.Err != nil {
		return []Use{UseSkip}
	}
	var out []Use
	switch f.OS() {
	case inventory.OSPostmarketOS, inventory.OSLinux:
		out = append(out, UseLinux)
	case inventory.OSAndroid:
		out = append(out, UseAgent)
		if f.Device != nil {
			out = append(out, UseFlash)
		}
	case "fastboot":
		if f.Device != nil {
			out = append(out, UseFlash)
		}
	}
	return append(out, UseSkip)
}

// Decision is what the user chose for a found phone.
type Decision struct {
	Found Found
	Use   Use
	Role  string // server or agent; none for UseFlash
	Name  string
}

// Settings are the farm-wide choices the inventory records.
type Settings struct {
	// Farm is the farm's name.
	Farm string
	// User, Identity, Become and KnownHosts are how SSH phones are
	// reached.
	User, Identity, Become, KnownHosts string
	// K3sVersion is the k3s release to install.
	K3sVersion string
	// K3sFiles are local k3s binaries by architecture (for farms without
	// a way to GitHub's releases).
	K3sFiles map[string]string
	// ADBServer is the adb server Android phones are reached through.
	ADBServer string
	// Agent and Proot are phonefarm-agent and proot binaries by
	// architecture, and AndroidDir where they live on the phone, for
	// Android phones (android: in the inventory).
	Agent, Proot map[string]string
	AndroidDir   string
	// Skip are checks the farm skips, with why.
	Skip map[string]string
}

var nameClean = regexp.MustCompile(`[^a-z0-9-]+`)

// suggestName makes a DNS-1123 label of what a phone calls itself.
func suggestName(f Found, taken map[string]bool) string {
	base := ""
	switch {
	case f.Device != nil:
		_, base, _ = strings.Cut(f.Device.Codename, "-")
		if base == "" {
			base = f.Device.Codename
		}
	case f.Facts != nil && f.Facts.Hostname != "" && f.Facts.Hostname != "localhost":
		base = f.Facts.Hostname
	case f.Model != "":
		base = f.Model
	default:
		base = "phone"
	}
	base = strings.Trim(nameClean.ReplaceAllString(strings.ToLower(base), "-"), "-")
	if len(base) > 50 {
		base = base[:50]
	}
	if base == "" {
		base = "phone"
	}
	name := base
	for i := 2; taken[name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	taken[name] = true
	return name
}

// phoneNode is one phone of the inventory as YAML.
func phoneNode(d Decision, s Settings) map[string]any {
	p := map[string]any{"name": d.Name}
	f := d.Found
	if f.Device != nil {
		p["device"] = f.Device.Codename
	}
	switch d.Use {
	case UseLinux:
		p["os"] = f.OS()
		p["role"] = d.Role
		user, host, port := splitTarget(f.Address)
		ssh := map[string]any{"host": host}
		if port != 0 && port != inventory.DefaultSSHPort {
			ssh["port"] = port
		}
		if user != "" && user != s.User {
			ssh["user"] = user
		}
		p["ssh"] = ssh
	case UseAgent:
		p["os"] = inventory.OSAndroid
		p["role"] = inventory.RoleAgent
		a := map[string]any{"serial": f.Address}
		if s.ADBServer != "" {
			a["server"] = s.ADBServer
		}
		p["adb"] = a
	case UseFlash:
		// After flashing, postmarketOS answers on its USB network.
		p["os"] = inventory.OSPostmarketOS
		p["ssh"] = map[string]any{"host": USBNetwork}
	}
	return p
}

// header is the comment at the top of a new inventory.
const header = `# A phone farm, written by phonefarm init. phonefarm apply -f FILE converges
# the phones to it; phonefarm inventory validate -f FILE checks it.
# Secrets are never written here: reference them as env:NAME or file:PATH.
`

// RenderInventory writes the inventory for the decisions: a new file, or
// the phones added to the inventory already at path (other phones and
// the rest of the file as they are). The result is validated before it is
// returned.
func RenderInventory(path string, decisions []Decision, s Settings) ([]byte, error) {
	var phones []map[string]any
	for _, d := range decisions {
		if d.Use != UseSkip {
			phones = append(phones, phoneNode(d, s))
		}
	}
	if len(phones) == 0 {
		return nil, errors.New("no phone chosen: give at least one a use other than skip")
	}
	var out []byte
	existing, err := os.ReadFile(path)
	switch {
	case err == nil:
		if out, err = addPhones(existing, phones); err != nil {
			return nil, fmt.Errorf("add the phones to %s: %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist):
		android := false
		for _, d := range decisions {
			android = android || d.Use == UseAgent
		}
		if out, err = newInventory(phones, s, android); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	if _, err := inventory.Parse(path, out); err != nil {
		return nil, fmt.Errorf("the inventory phonefarm init wrote does not validate (please report this): %w", err)
	}
	return out, nil
}

func newInventory(phones []map[string]any, s Settings, android bool) ([]byte, error) {
	doc := map[string]any{
		"apiVersion": inventory.APIVersion,
		"kind":       inventory.Kind,
		"name":       s.Farm,
		"phones":     phones,
	}
	k3s := map[string]any{}
	if s.K3sVersion != "" {
		k3s["version"] = s.K3sVersion
	}
	if len(s.K3sFiles) > 0 {
		k3s["source"] = map[string]any{"files": s.K3sFiles}
	}
	if len(k3s) > 0 {
		doc["k3s"] = k3s
	}
	ssh := map[string]any{}
	for k, v := range map[string]string{"user": s.User, "identityFile": s.Identity, "become": s.Become, "knownHosts": s.KnownHosts} {
		if v != "" {
			ssh[k] = v
		}
	}
	if len(ssh) > 0 {
		doc["ssh"] = ssh
	}
	if android {
		a := map[string]any{}
		if len(s.Agent) > 0 {
			a["agent"] = s.Agent
		}
		if len(s.Proot) > 0 {
			a["proot"] = s.Proot
		}
		if s.AndroidDir != "" {
			a["dir"] = s.AndroidDir
		}
		if len(a) > 0 {
			doc["android"] = a
		}
	}
	if len(s.Skip) > 0 {
		var ids []string
		for id := range s.Skip {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		var skip []map[string]any
		for _, id := range ids {
			skip = append(skip, map[string]any{"id": id, "reason": s.Skip[id]})
		}
		doc["checks"] = map[string]any{"skip": skip}
	}
	// Fields in the order people read an inventory in.
	var b bytes.Buffer
	b.WriteString(header)
	for _, k := range []string{"apiVersion", "kind", "name", "k3s", "ssh", "android", "checks", "phones"} {
		v, ok := doc[k]
		if !ok {
			continue
		}
		n, err := orderedNode(map[string]any{k: v})
		if err != nil {
			return nil, err
		}
		enc := yaml.NewEncoder(&b)
		enc.SetIndent(2)
		if err := enc.Encode(n); err != nil {
			return nil, err
		}
		enc.Close()
	}
	return b.Bytes(), nil
}

// addPhones appends phones to the phones list of an inventory's YAML,
// keeping its comments and everything else.
func addPhones(src []byte, phones []map[string]any) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not an inventory")
	}
	root := doc.Content[0]
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "phones" {
			list = root.Content[i+1]
		}
	}
	if list == nil {
		list = &yaml.Node{Kind: yaml.SequenceNode}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "phones"}, list)
	}
	for _, p := range phones {
		n, err := orderedNode(p)
		if err != nil {
			return nil, err
		}
		list.Content = append(list.Content, n)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// writeInventory replaces path atomically.
func writeInventory(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// existingNames are the phone names an inventory at path already uses.
func existingNames(path string) map[string]bool {
	out := map[string]bool{}
	if f, err := inventory.Load(path); err == nil {
		for _, p := range f.Phones {
			out[p.Name] = true
		}
	}
	return out
}

// existingServer reports whether the inventory at path has a server.
func existingServer(path string) bool {
	if f, err := inventory.Load(path); err == nil {
		for _, p := range f.Phones {
			if p.Role == inventory.RoleServer {
				return true
			}
		}
	}
	return false
}

// keyOrder is the order of a phone's and the farm's fields in a written
// inventory, as people read them; other keys follow, sorted.
var keyOrder = map[string]int{"name": 0, "device": 1, "os": 2, "role": 3, "ssh": 4, "adb": 5, "host": 0, "port": 1, "user": 2, "serial": 0, "server": 1, "id": 0, "reason": 1}

// orderedNode encodes v with mapping keys in keyOrder.
func orderedNode(v any) (*yaml.Node, error) {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	var order func(*yaml.Node)
	order = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			type kv struct{ k, v *yaml.Node }
			var kvs []kv
			for i := 0; i+1 < len(n.Content); i += 2 {
				kvs = append(kvs, kv{n.Content[i], n.Content[i+1]})
			}
			sort.SliceStable(kvs, func(i, j int) bool {
				oi, iok := keyOrder[kvs[i].k.Value]
				oj, jok := keyOrder[kvs[j].k.Value]
				switch {
				case iok && jok:
					return oi < oj
				case iok != jok:
					return iok
				}
				return kvs[i].k.Value < kvs[j].k.Value
			})
			n.Content = n.Content[:0]
			for _, p := range kvs {
				n.Content = append(n.Content, p.k, p.v)
			}
		}
		for _, c := range n.Content {
			order(c)
		}
	}
	order(&n)
	return &n, nil
}
