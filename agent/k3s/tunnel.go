package k3s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rancher/remotedialer"
)

// Tunnel keeps the agent's tunnels open to every server: k3s's API
// servers reach kubelets through them (the default egress selector), so
// logs, exec, attach and port-forward work although nothing dials the
// phone. Only connections to the kubelet API on this machine's loopback
// are allowed through. It returns when ctx ends.
type Tunnel struct {
	Creds       *Credentials
	KubeletPort int
	Log         *slog.Logger
	// Connected, when set, is called each time a server's tunnel is up.
	Connected func(server string)
}

// Run opens and reopens the tunnels until ctx ends.
func (t *Tunnel) Run(ctx context.Context) {
	log := t.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var mu sync.Mutex
	running := map[string]bool{}
	start := func(server string) {
		mu.Lock()
		defer mu.Unlock()
		if running[server] {
			return
		}
		running[server] = true
		go t.keep(ctx, server, log)
	}
	start(hostPort(t.Creds.Server))
	// Servers that join later get a tunnel too; the list is refreshed
	// while the agent runs.
	for {
		if servers, err := t.servers(ctx); err == nil {
			for _, s := range servers {
				start(s)
			}
		} else {
			log.Debug("list the cluster's servers", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Minute):
		}
	}
}

// keep holds one server's tunnel open, reconnecting with back-off.
func (t *Tunnel) keep(ctx context.Context, server string, log *slog.Logger) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(t.Creds.ServerCA)
	dialer := &websocket.Dialer{
		HandshakeTimeout: 10 * time.Second,
		TLSClientConfig:  &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{t.Creds.Client}, MinVersion: tls.VersionTLS12},
	}
	kubelet := net.JoinHostPort("127.0.0.1", strconv.Itoa(t.KubeletPort))
	allow := func(proto, address string) bool {
		host, port, err := net.SplitHostPort(address)
		return err == nil && proto == "tcp" && (host == "127.0.0.1" || host == "::1") && port == strconv.Itoa(t.KubeletPort)
	}
	local := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", kubelet)
	}
	u := url.URL{Scheme: "wss", Host: server, Path: "/v1-k3s/connect"}
	backoff := time.Second
	for ctx.Err() == nil {
		began := time.Now()
		err := remotedialer.ConnectToProxyWithDialer(ctx, u.String(), nil, allow, dialer, local, func(context.Context, *remotedialer.Session) error {
			log.Info("tunnel to the server open", "server", server)
			if t.Connected != nil {
				t.Connected(server)
			}
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			backoff = time.Second
		}
		log.Warn("tunnel to the server closed; reconnecting", "server", server, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// servers lists the cluster's API servers (host:port) from the supervisor.
func (t *Tunnel) servers(ctx context.Context) ([]string, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(t.Creds.ServerCA)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{t.Creds.Client}, MinVersion: tls.VersionTLS12}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.Creds.Server+"/v1-k3s/apiservers", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/v1-k3s/apiservers: %s", resp.Status)
	}
	var list []string
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, fmt.Errorf("/v1-k3s/apiservers: %w", err)
	}
	return list, nil
}

func hostPort(server string) string {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return strings.TrimPrefix(server, "https://")
	}
	return u.Host
}
