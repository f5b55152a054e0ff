package pods

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probe runs a run's startup, liveness and readiness probes until ctx
// ends (the run exits or the pod stops).
func (c *container) probe(ctx context.Context, proc *process) {
	spec := c.spec()
	if sp := spec.StartupProbe; sp != nil {
		if !c.loop(ctx, sp, "Startup", true) {
			return
		}
		c.mu.Lock()
		c.st.Started = ptr(true)
		c.st.Ready = spec.ReadinessProbe == nil && !c.init
		c.mu.Unlock()
		c.p.changed()
	}
	if spec.LivenessProbe != nil {
		go c.loop(ctx, spec.LivenessProbe, "Liveness", false)
	}
	if spec.ReadinessProbe != nil {
		go c.loop(ctx, spec.ReadinessProbe, "Readiness", false)
	}
}

// loop runs one probe on its period. A startup probe returns true at its
// first success; a liveness probe kills the run after failureThreshold
// failures in a row; a readiness probe marks the container ready after
// successThreshold successes in a row and unready after failureThreshold
// failures.
func (c *container) loop(ctx context.Context, pr *corev1.Probe, kind string, startup bool) bool {
	period := time.Duration(or32(pr.PeriodSeconds, 10)) * time.Second
	timeout := time.Duration(or32(pr.TimeoutSeconds, 1)) * time.Second
	failures, successes := 0, 0
	failLimit, successLimit := int(or32(pr.FailureThreshold, 3)), int(or32(pr.SuccessThreshold, 1))
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Duration(pr.InitialDelaySeconds) * time.Second):
	}
	for {
		err := c.check(ctx, pr.ProbeHandler, timeout)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			failures, successes = 0, successes+1
		} else {
			failures, successes = failures+1, 0
			c.p.m.log().Debug("probe failed", "pod", c.p.pod.Name, "container", c.name(), "probe", kind, "err", err)
		}
		switch {
		case startup && err == nil:
			return true
		case kind == "Readiness":
			c.setReady(successes >= successLimit, failures >= failLimit)
		case failures >= failLimit && (startup || kind == "Liveness"):
			c.kill(kind + "ProbeFailed")
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(period):
		}
	}
}

func (c *container) setReady(ready, unready bool) {
	c.mu.Lock()
	was := c.st.Ready
	switch {
	case ready && c.proc != nil:
		c.st.Ready = true
	case unready:
		c.st.Ready = false
	}
	now := c.st.Ready
	c.mu.Unlock()
	if now != was {
		c.p.changed()
	}
}

func or32(v, def int32) int32 {
	if v == 0 {
		return def
	}
	return v
}

// check runs one probe or hook handler: a command in the container, an
// HTTP GET or a TCP connection to the pod (the phone).
func (c *container) check(ctx context.Context, h corev1.ProbeHandler, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case h.Exec != nil:
		code, err := c.execQuiet(ctx, h.Exec.Command)
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("exited %d", code)
		}
		return nil
	case h.HTTPGet != nil:
		return c.httpGet(ctx, h.HTTPGet)
	case h.TCPSocket != nil:
		port, err := c.port(h.TCPSocket.Port)
		if err != nil {
			return err
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host(h.TCPSocket.Host), strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	case h.GRPC != nil:
		return fmt.Errorf("gRPC probes are not supported by the rootless agent")
	}
	return fmt.Errorf("the probe has no handler")
}

// host is where a probe connects: the pod shares the phone's network.
func host(h string) string {
	if h == "" {
		return "127.0.0.1"
	}
	return h
}

func (c *container) port(p intstr.IntOrString) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.spec().Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("no container port named %q", p.StrVal)
}

func (c *container) httpGet(ctx context.Context, g *corev1.HTTPGetAction) error {
	port, err := c.port(g.Port)
	if err != nil {
		return err
	}
	scheme := "http"
	if g.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(host(g.Host), strconv.Itoa(port)), Path: g.Path}
	if u.Path == "" {
		u.Path = "/"
	}
	if p, q, ok := splitQuery(g.Path); ok {
		u.Path, u.RawQuery = p, q
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/1.32")
	for _, h := range g.HTTPHeaders {
		req.Header.Add(h.Name, h.Value)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}} //nolint:gosec // as the kubelet's probes
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}

func splitQuery(p string) (string, string, bool) {
	for i := 0; i < len(p); i++ {
		if p[i] == '?' {
			return p[:i], p[i+1:], true
		}
	}
	return p, "", false
}

// hook runs a lifecycle handler (postStart, preStop) within limit.
func (c *container) hook(ctx context.Context, h *corev1.LifecycleHandler, limit time.Duration) error {
	if h.Sleep != nil {
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Duration(h.Sleep.Seconds)*time.Second, limit)):
		}
		return nil
	}
	return c.check(ctx, corev1.ProbeHandler{Exec: h.Exec, HTTPGet: h.HTTPGet, TCPSocket: h.TCPSocket}, limit)
}
