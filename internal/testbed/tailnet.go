package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Tailnet tool versions scripts/build-tailscale.sh builds.
const (
	TailscaleVersion = "v1.102.5"
	HeadscaleVersion = "v0.29.3"
)

// TailnetTools returns the directory holding tailscale, tailscaled and
// headscale as scripts/build-tailscale.sh caches them.
func TailnetTools() (string, error) {
	d := filepath.Join(DefaultCacheDir(), "tailnet", "ts-"+TailscaleVersion+"-hs-"+HeadscaleVersion+"-"+runtime.Version())
	for _, b := range []string{"tailscale", "tailscaled", "headscale"} {
		if _, err := os.Stat(filepath.Join(d, b)); err != nil {
			return "", fmt.Errorf("no %s in %s; scripts/build-tailscale.sh builds it", b, d)
		}
	}
	return d, nil
}

// TailscaledEnv is what tailscaled needs on the test bed: headscale's
// embedded DERP relay speaks plain HTTP, and nothing may probe routers.
var TailscaledEnv = map[string]string{"TS_DEBUG_USE_DERP_HTTP": "1", "TS_DISABLE_PORTMAPPER": "1"}

// Headscale is a control server on the test bed's bridge address, with its
// embedded DERP relay and STUN server there too; it reaches nothing else.
type Headscale struct {
	URL    string
	APIKey string
	dir    string
	bin    string
	cmd    *exec.Cmd
}

// StartHeadscale runs headscale for the test bed and creates an API key.
func StartHeadscale(ctx context.Context, tb *Testbed, tools string) (*Headscale, error) {
	dir := filepath.Join(tb.Dir, "headscale")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	gw := tb.Gateway
	config := fmt.Sprintf(`server_url: http://%[1]s:8081
listen_addr: %[1]s:8081
metrics_listen_addr: %[1]s:9091
grpc_listen_addr: %[1]s:50443
noise:
  private_key_path: %[2]s/noise.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
  allocation: sequential
derp:
  server:
    enabled: true
    region_id: 999
    region_code: testbed
    region_name: phonefarm test bed
    stun_listen_addr: %[1]s:3478
    private_key_path: %[2]s/derp.key
    automatically_add_embedded_derp_region: true
    ipv4: %[1]s
  urls: []
  auto_update_enabled: false
disable_check_updates: true
database:
  type: sqlite
  sqlite:
    path: %[2]s/db.sqlite
log:
  level: warn
dns:
  magic_dns: true
  base_domain: farm.test
  override_local_dns: false
  nameservers:
    global: []
unix_socket: %[2]s/headscale.sock
unix_socket_permission: "0770"
`, gw, dir)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		return nil, err
	}
	h := &Headscale{URL: "http://" + gw + ":8081", dir: dir, bin: filepath.Join(tools, "headscale")}
	logf, err := os.Create(filepath.Join(dir, "headscale.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	h.cmd = exec.Command(h.bin, "-c", cfg, "serve")
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	if err := h.cmd.Start(); err != nil {
		return nil, err
	}
	go h.cmd.Wait() //nolint:errcheck // Stop kills it
	if err := waitHTTP(ctx, h.URL+"/health", 30*time.Second); err != nil {
		h.Stop()
		b, _ := os.ReadFile(filepath.Join(dir, "headscale.log"))
		return nil, fmt.Errorf("headscale: %w\n%s", err, b)
	}
	out, err := h.CLI(ctx, "apikeys", "create", "--expiration", "24h")
	if err != nil {
		h.Stop()
		return nil, err
	}
	lines := strings.Fields(out)
	if len(lines) == 0 {
		h.Stop()
		return nil, errors.New("headscale apikeys create printed no key")
	}
	h.APIKey = lines[len(lines)-1]
	return h, nil
}

// CLI runs the headscale command against this server.
func (h *Headscale) CLI(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, h.bin, append([]string{"-c", filepath.Join(h.dir, "config.yaml")}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("headscale %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Stop ends headscale.
func (h *Headscale) Stop() {
	if h.cmd != nil && h.cmd.Process != nil {
		_ = h.cmd.Process.Kill()
	}
}

// Controller is this machine on the tailnet: a userspace tailscaled whose
// outbound HTTP proxy reaches tailnet addresses, as a user's laptop on the
// tailnet would.
type Controller struct {
	// Proxy is the http://host:port of tailscaled's outbound proxy.
	Proxy string
	cmd   *exec.Cmd
}

// JoinController starts a userspace tailscaled on this machine and logs it
// in to hs with key.
func JoinController(ctx context.Context, tb *Testbed, tools, loginServer, key string) (*Controller, error) {
	dir := filepath.Join(tb.Dir, "controller-tailscale")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "tailscaled.sock")
	logf, err := os.Create(filepath.Join(dir, "tailscaled.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	c := &Controller{Proxy: "http://127.0.0.1:" + strconv.Itoa(port)}
	c.cmd = exec.Command(filepath.Join(tools, "tailscaled"), "--tun=userspace-networking", "--port=0", "--no-logs-no-support",
		"--state="+filepath.Join(dir, "state"), "--socket="+sock, "--outbound-http-proxy-listen=127.0.0.1:"+strconv.Itoa(port))
	c.cmd.Env = os.Environ()
	for k, v := range TailscaledEnv {
		c.cmd.Env = append(c.cmd.Env, k+"="+v)
	}
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go c.cmd.Wait() //nolint:errcheck // Stop kills it
	keyFile := filepath.Join(dir, "authkey")
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		c.Stop()
		return nil, err
	}
	defer os.Remove(keyFile)
	var out []byte
	for i := 0; i < 50; i++ {
		out, err = exec.CommandContext(ctx, filepath.Join(tools, "tailscale"), "--socket="+sock, "up", "--timeout=30s",
			"--login-server="+loginServer, "--auth-key=file:"+keyFile, "--hostname=controller").CombinedOutput()
		if err == nil {
			return c, nil
		}
		time.Sleep(200 * time.Millisecond) // tailscaled still starting
	}
	c.Stop()
	return nil, fmt.Errorf("controller tailscale up: %w: %s", err, out)
}

// Stop ends the controller's tailscaled.
func (c *Controller) Stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitHTTP(ctx context.Context, url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering after %s: %v", url, limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
