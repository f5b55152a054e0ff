package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"k8s.io/component-base/metrics/legacyregistry"
)

// kubeletServer is the kubelet API (logs, exec, attach, port-forward,
// pods, stats, metrics) over HTTPS. Only the API server may call it: a
// client certificate from the cluster's client CA whose subject is the
// API server's (CN system:kube-apiserver, or the system:masters group).
// Other clients, nodes included, are refused.
type kubeletServer struct {
	srv *http.Server
	ln  net.Listener
}

func apiServerClient(c *x509.Certificate) bool {
	return c.Subject.CommonName == "system:kube-apiserver" || slices.Contains(c.Subject.Organization, "system:masters")
}

func authorize(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "Unauthorized: a client certificate from the cluster's client CA is required", http.StatusUnauthorized)
			return
		}
		if c := r.TLS.VerifiedChains[0][0]; !apiServerClient(c) {
			log.Warn("kubelet API call refused", "subject", c.Subject.String(), "path", r.URL.Path)
			http.Error(w, "Forbidden: only the API server may use this kubelet's API", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// listenKubelet serves h on addr:port with the node's serving
// certificate.
func listenKubelet(addr string, port int, serving tls.Certificate, clientCA []byte, h api.PodHandlerConfig, log *slog.Logger) (*kubeletServer, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(clientCA) {
		return nil, errors.New("the cluster's client CA holds no certificate")
	}
	mux := http.NewServeMux()
	// With the kubelet's debugging handlers (on by default in the kubelet
	// and k3s): /runningpods/, what the agent itself runs.
	api.AttachPodRoutes(h, mux, true)
	// /metrics, as a kubelet serves it: here the agent process's own (Go
	// runtime, process), read through the API server's node proxy.
	mux.Handle("/metrics", legacyregistry.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	s := &kubeletServer{ln: ln, srv: &http.Server{
		Handler:           authorize(mux, log),
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{serving},
			ClientCAs:    pool,
			ClientAuth:   tls.VerifyClientCertIfGiven,
			MinVersion:   tls.VersionTLS12,
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}
	go func() { _ = s.srv.ServeTLS(ln, "", "") }()
	return s, nil
}

func (s *kubeletServer) close(ctx context.Context) { _ = s.srv.Shutdown(ctx) }
