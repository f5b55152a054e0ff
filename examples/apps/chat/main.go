// Command chat is an HTTP chat bot whose replies come from a file of
// commands (a ConfigMap in Kubernetes) and say which pod on which phone
// answered, so requests through a Service show the work spread over the
// farm.
//
//	GET /?say=hello  ->  "[chat-7d9f-x2 on enchilada] Hello from the drawer!"
//
// The commands file has one "name: reply" per line; "{pod}" and "{node}"
// in a reply are replaced. It is read again when it changes, as a
// ConfigMap update arrives. SIGTERM drains as pong does.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// commands is the reply table, reloaded when its file changes.
type commands struct {
	file string
	mu   sync.Mutex
	mod  time.Time
	m    map[string]string
	err  error
}

func (c *commands) get() (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := os.Stat(c.file)
	if err != nil {
		return nil, err
	}
	if c.m != nil && st.ModTime().Equal(c.mod) {
		return c.m, c.err
	}
	c.m, c.err = parse(c.file)
	c.mod = st.ModTime()
	return c.m, c.err
}

func parse(file string) (map[string]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return m, fmt.Errorf("%s:%d: want \"name: reply\", got %q", file, n, line)
		}
		m[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	return m, sc.Err()
}

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	file := flag.String("commands", "/etc/chat/commands", "file of \"name: reply\" lines")
	drain := flag.Duration("drain", 5*time.Second, "keep serving this long after SIGTERM")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	pod, node := env("POD_NAME", "chat"), env("NODE_NAME", "unknown")
	cmds := &commands{file: *file}
	var draining atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		m, err := cmds.get()
		if err != nil {
			log.Error("commands", "err", err)
			http.Error(w, fmt.Sprintf("[%s on %s] my commands are broken: %v", pod, node, err), http.StatusInternalServerError)
			return
		}
		say := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("say")))
		reply, ok := m[say]
		if !ok {
			names := make([]string, 0, len(m))
			for k := range m {
				names = append(names, k)
			}
			sort.Strings(names)
			reply = fmt.Sprintf("I know: %s (try ?say=%s)", strings.Join(names, ", "), first(names))
		}
		reply = strings.NewReplacer("{pod}", pod, "{node}", node).Replace(reply)
		fmt.Fprintf(w, "[%s on %s] %s\n", pod, node, reply)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := cmds.get(); err != nil || draining.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
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
		time.Sleep(*drain)
		shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	log.Info("serving", "addr", *addr, "pod", pod, "node", node, "commands", *file)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return "hello"
	}
	return s[0]
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
