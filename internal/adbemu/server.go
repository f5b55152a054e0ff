package adbemu

import (
	"bufio"
	"context"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phonefarm/phonefarm/internal/testenv"
)

// Server is a private adb server (the real adb binary) for one test: its own
// port, its own HOME (so its keys stay in a temporary directory), killed when
// the test ends.
type Server struct {
	bin  string
	Port int
	home string
}

// StartServer starts an adb server on a free port. Without adb on PATH the
// test is skipped locally and fails under CI.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin := testenv.RequireTool(t, "adb")
	port, err := serverPort()
	if err != nil {
		t.Fatalf("find a free port for the adb server: %v", err)
	}
	s := &Server{bin: bin, Port: port, home: t.TempDir()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := s.Command(ctx, "kill-server").CombinedOutput(); err != nil {
			t.Logf("adb kill-server: %v: %s", err, out)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := s.Command(ctx, "start-server").CombinedOutput(); err != nil {
		t.Fatalf("adb -P %d start-server: %v: %s", port, err, out)
	}
	return s
}

// serverPort is a free port below the kernel's ephemeral range. The adb
// client connects to the port before its server listens there, and a port
// in that range can be the client's own source port, which Linux connects
// to itself: start-server then reads back its own request and fails with
// "protocol fault (status 30 30 30 63?!)" ("000c", seen in a full run).
func serverPort() (int, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				low = n
			}
		}
	}
	var last error
	for range 100 {
		port := 10000 + rand.IntN(low-10000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			ln.Close()
			return port, nil
		}
		last = err
	}
	return 0, last
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Command is the adb client for this server, for tests that need its
// streams.
func (s *Server) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, s.bin, append([]string{"-P", strconv.Itoa(s.Port)}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+s.home, "ANDROID_SDK_HOME="+s.home, "ANDROID_USER_HOME="+s.home+"/.android")
	return cmd
}

// Run runs the adb client against this server and returns its combined
// output.
func (s *Server) Run(ctx context.Context, args ...string) (string, error) {
	out, err := s.Command(ctx, args...).CombinedOutput()
	return string(out), err
}

// Devices returns serial → state as `adb devices` lists them.
func (s *Server) Devices(ctx context.Context) (map[string]string, error) {
	out, err := s.Run(ctx, "devices")
	if err != nil {
		return nil, err
	}
	devs := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 {
			devs[f[0]] = f[1]
		}
	}
	return devs, nil
}

// WaitState waits until `adb devices` shows serial in state, and fails the
// test after 20 seconds.
func (s *Server) WaitState(t testing.TB, serial, state string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last map[string]string
	for {
		devs, err := s.Devices(ctx)
		if err == nil && devs[serial] == state {
			return
		}
		last = devs
		select {
		case <-ctx.Done():
			t.Fatalf("adb devices: got %v, want %s in state %q", last, serial, state)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
