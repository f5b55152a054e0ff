// Command pong is phonefarm's smallest workload: an HTTP server that
// answers every request with the pod and the phone that served it, so
// spreading replicas over phones is visible from one curl loop.
//
// It reads POD_NAME and NODE_NAME from the environment (the downward API
// sets them) and drains on SIGTERM: readiness fails at once, requests are
// still served for --drain, then it stops, so a rolling update loses none.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	drain := flag.Duration("drain", 5*time.Second, "keep serving this long after SIGTERM, while endpoints forget the pod")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	pod, node := env("POD_NAME", "pong"), env("NODE_NAME", "unknown")
	var draining atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pong from %s on %s\n", pod, node)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		draining.Store(true)
		log.Info("draining", "for", drain.String())
		time.Sleep(*drain)
		shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	log.Info("serving", "addr", *addr, "pod", pod, "node", node)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
