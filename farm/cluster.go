package farm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/provision"
)

// Name is the farm's name, "phonefarm" when the inventory gives none: the
// cluster's name in kubeconfigs.
func (f *Farm) Name() string {
	if f.Inventory.Name == "" {
		return "phonefarm"
	}
	return f.Inventory.Name
}

// FirstServer is the inventory's first phone with role server, the one
// that starts the cluster.
func (f *Farm) FirstServer() (*inventory.Phone, error) {
	for i := range f.Inventory.Phones {
		if f.Inventory.Phones[i].Role == inventory.RoleServer {
			return &f.Inventory.Phones[i], nil
		}
	}
	return nil, fmt.Errorf("%s has no phone with role server", f.Inventory.File())
}

// Cluster is a client of the farm's API through its first server, with an
// admin kubeconfig pointing at the server's reachable address.
func (f *Farm) Cluster(ctx context.Context) (*provision.Cluster, error) {
	first, err := f.FirstServer()
	if err != nil {
		return nil, err
	}
	h, err := f.Connect(ctx, first)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	st, err := provision.Observe(ctx, h)
	if err != nil {
		return nil, err
	}
	kc, err := h.ReadFile(ctx, provision.KubeconfigPath)
	if err != nil {
		return nil, fmt.Errorf("read k3s kubeconfig on %s (is k3s installed? run phonefarm apply): %w", first.Name, err)
	}
	ip := provision.NodeIP(provision.PhoneInput{Phone: first, State: st}, f.Inventory.Tailscale != nil)
	if ip == "" {
		return nil, fmt.Errorf("%s has not joined the tailnet yet (tailscale: %q, backend %q); run phonefarm apply", first.Name, st.Tailscale.Installed, st.Tailscale.BackendState)
	}
	return provision.NewCluster(kc, "https://"+ip+":6443", f.Name())
}

// DefaultKubeconfigPath is where WriteKubeconfig writes without a path:
// ~/.kube/phonefarm-NAME.yaml.
func (f *Farm) DefaultKubeconfigPath() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".kube", "phonefarm-"+f.Name()+".yaml"), nil
}

// WriteKubeconfig writes the cluster's admin kubeconfig to path (the
// default path when empty), mode 0600, atomically, and returns the
// absolute path written.
func (f *Farm) WriteKubeconfig(ctx context.Context, path string) (string, error) {
	c, err := f.Cluster(ctx)
	if err != nil {
		return "", err
	}
	if path == "" {
		if path, err = f.DefaultKubeconfigPath(); err != nil {
			return "", err
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return "", err
	}
	return abs, writeFileAtomic(abs, c.Kubeconfig, 0o600)
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
