package testbed

import (
	"context"
	"encoding/json"
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
	"syscall"
	"time"
)

// Tailnet tool versions scripts/build-tailscale.sh builds.
const (
	TailscaleVersion = "v1.101.0-pre"
	HeadscaleVersion = "v0.29.3"
)

// TailnetTools returns the directory holding tailscale, tailscaled and
// headscale as scripts/build-tailscale.sh caches them.
func TailnetTools() (string, error) {
	d := filepath.Join(DefaultCacheDir(), "tailnet", "ts-"+TailscaleVersion+"-hs-"+HeadscaleVersion+"-"+runtime.Version())
	waitBuilt(d)
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
	PID    int
	Dir    string
	Bin    string
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
cli:
  timeout: 30s
`, gw, dir)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		return nil, err
	}
	h := &Headscale{URL: "http://" + gw + ":8081", Dir: dir, Bin: filepath.Join(tools, "headscale")}
	logf, err := os.Create(filepath.Join(dir, "headscale.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(h.Bin, "-c", cfg, "serve")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detach(tb)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h.PID = cmd.Process.Pid
	go cmd.Wait() //nolint:errcheck // Stop kills it
	if err := waitHTTP(ctx, h.URL+"/health", 30*time.Second); err != nil {
		h.Stop()
		b, _ := os.ReadFile(filepath.Join(dir, "headscale.log"))
		return nil, fmt.Errorf("headscale: %w\n%s", err, b)
	}
	// The CLI talks to the unix socket, which headscale may open after it
	// answers /health.
	for i := 0; i < 150; i++ {
		if _, err := os.Stat(filepath.Join(dir, "headscale.sock")); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
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
	out, err := exec.CommandContext(ctx, h.Bin, append([]string{"-c", filepath.Join(h.Dir, "config.yaml")}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("headscale %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// PreAuthKey creates a headscale user (or finds it) and a one-hour
// pre-authorised key of that user.
func (h *Headscale) PreAuthKey(ctx context.Context, user string) (string, error) {
	out, err := h.CLI(ctx, "users", "list", "--name", user, "-o", "json")
	if err != nil {
		return "", err
	}
	var users []struct{ ID json.Number }
	if err := json.Unmarshal([]byte(out), &users); err != nil {
		return "", fmt.Errorf("headscale users list: %w: %s", err, out)
	}
	var id string
	if len(users) > 0 {
		id = users[0].ID.String()
	} else {
		if out, err = h.CLI(ctx, "users", "create", user, "-o", "json"); err != nil {
			return "", err
		}
		var u struct{ ID json.Number }
		if err := json.Unmarshal([]byte(out), &u); err != nil {
			return "", fmt.Errorf("headscale users create: %w: %s", err, out)
		}
		id = u.ID.String()
	}
	out, err = h.CLI(ctx, "preauthkeys", "create", "--user", id, "--expiration", "1h", "-o", "json")
	if err != nil {
		return "", err
	}
	var k struct{ Key string }
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.Key == "" {
		return "", fmt.Errorf("headscale preauthkeys create: %v: %s", err, out)
	}
	return k.Key, nil
}

// Stop ends headscale.
func (h *Headscale) Stop() { killPID(h.PID, "headscale") }

// Answers reports whether headscale is up.
func (h *Headscale) Answers(ctx context.Context) bool {
	return waitHTTP(ctx, h.URL+"/health", 0) == nil
}

// Controller is this machine on the tailnet: a userspace tailscaled whose
// outbound HTTP proxy reaches tailnet addresses, as a user's laptop on the
// tailnet would.
type Controller struct {
	// Proxy is the http://host:port of tailscaled's outbound proxy.
	Proxy string
	PID   int
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
	cmd := exec.Command(filepath.Join(tools, "tailscaled"), "--tun=userspace-networking", "--port=0", "--no-logs-no-support",
		"--state="+filepath.Join(dir, "state"), "--socket="+sock, "--outbound-http-proxy-listen=127.0.0.1:"+strconv.Itoa(port))
	cmd.Env = os.Environ()
	for k, v := range TailscaledEnv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detach(tb)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c.PID = cmd.Process.Pid
	go cmd.Wait() //nolint:errcheck // Stop kills it
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
func (c *Controller) Stop() { killPID(c.PID, "tailscaled") }

// Answers reports whether the controller's proxy accepts connections.
func (c *Controller) Answers() bool {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(c.Proxy, "http://"), time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// detach starts a persistent test bed's servers in their own session, so
// they outlive the command that started them and its terminal's Ctrl-C.
func detach(tb *Testbed) *syscall.SysProcAttr {
	if !tb.Persistent {
		return nil
	}
	return &syscall.SysProcAttr{Setsid: true}
}

// killPID kills pid if it still is the named program (a recorded PID may
// have been reused since).
func killPID(pid int, name string) {
	if pid <= 0 {
		return
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != name {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
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
