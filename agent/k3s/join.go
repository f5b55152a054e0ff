package k3s

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrPasswordRejected is the server refusing the node password: another
// node registered under this name, or the agent's password file changed.
var ErrPasswordRejected = errors.New("the server rejected the node password")

// Credentials are what a joined node holds.
type Credentials struct {
	// Server is the supervisor's and API server's base URL.
	Server string
	// ServerCA verifies the API server and the supervisor (PEM).
	ServerCA []byte
	// ClientCA verifies the API server's client certificate when it calls
	// the kubelet API (PEM).
	ClientCA []byte
	// Client authenticates as system:node:NAME in group system:nodes;
	// ClientCert and ClientKey are the same in PEM, for client-go.
	Client                tls.Certificate
	ClientCert, ClientKey []byte
	// Serving is the kubelet API's certificate, signed by the server CA for
	// the node's name and addresses.
	Serving tls.Certificate
}

// Joiner joins one node to a k3s cluster through its supervisor.
type Joiner struct {
	Server   string // https://host:6443
	Token    Token
	NodeName string
	// NodeIPs go into the serving certificate: every address the node
	// publishes.
	NodeIPs []string
	// PasswordFile keeps the node password; created on first join.
	PasswordFile string
	Log          *slog.Logger
	// Retry bounds how long Join waits for a server that is not ready yet
	// (503, 401 before the node exists); default 2 minutes.
	Retry time.Duration
}

// Join fetches and checks the server's CA, then the node's certificates.
func (j *Joiner) Join(ctx context.Context) (*Credentials, error) {
	log := j.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := strings.ToLower(j.NodeName)
	ca, err := j.fetchCA(ctx, log)
	if err != nil {
		return nil, err
	}
	pw, err := nodePassword(j.PasswordFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("the server's CA bundle holds no usable certificate")
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	get := func(path string, nodeHeaders bool) ([]byte, error) {
		return j.get(ctx, c, path, func(r *http.Request) {
			if nodeHeaders {
				r.Header.Set("k3s-Node-Name", name)
				r.Header.Set("k3s-Node-Password", pw)
				r.Header.Set("k3s-Node-IP", strings.Join(j.NodeIPs, ","))
			}
		})
	}
	creds := &Credentials{Server: strings.TrimSuffix(j.Server, "/"), ServerCA: ca}
	if creds.ClientCA, err = get("/v1-k3s/client-ca.crt", false); err != nil {
		return nil, err
	}
	client, err := get("/v1-k3s/client-kubelet.crt", true)
	if err != nil {
		return nil, err
	}
	if creds.Client, creds.ClientCert, creds.ClientKey, err = keyPair(client); err != nil {
		return nil, fmt.Errorf("client-kubelet certificate: %w", err)
	}
	serving, err := get("/v1-k3s/serving-kubelet.crt", true)
	if err != nil {
		return nil, err
	}
	if creds.Serving, _, _, err = keyPair(serving); err != nil {
		return nil, fmt.Errorf("serving-kubelet certificate: %w", err)
	}
	return creds, nil
}

// fetchCA reads /cacerts and checks it against the token's hash; without a
// hash it is trusted on first use, as k3s agents do, and says so.
func (j *Joiner) fetchCA(ctx context.Context, log *slog.Logger) ([]byte, error) {
	// The CA is what lets us verify the server: fetching it cannot
	// verify; its hash does.
	// Nor is it asked with the token's credentials, which must reach only
	// the server the token names (/cacerts is served to anyone).
	anon := *j
	anon.Token = Token{}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // checked against the token's hash below
	body, err := anon.get(ctx, c, "/cacerts", nil)
	if err != nil {
		return nil, err
	}
	got, err := CAHash(body)
	if err != nil {
		return nil, err
	}
	switch {
	case j.Token.CAHash == "":
		log.Warn("the join token does not pin the server's CA; trusting the one the server sent", "hash", got)
	case got != j.Token.CAHash:
		return nil, fmt.Errorf("the server's CA (sha256 %s) is not the one the join token names (%s): wrong server, or a server in the middle", got, j.Token.CAHash)
	}
	// The server must prove it holds that CA's certificate.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(body)
	verified := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	if _, err := anon.get(ctx, verified, "/cacerts", nil); err != nil {
		return nil, fmt.Errorf("the server's certificate does not chain to its own CA: %w", err)
	}
	return body, nil
}

// get requests a supervisor path with the token's credentials, retrying
// while the server is not ready.
func (j *Joiner) get(ctx context.Context, c *http.Client, path string, edit func(*http.Request)) ([]byte, error) {
	limit := j.Retry
	if limit == 0 {
		limit = 2 * time.Minute
	}
	deadline := time.Now().Add(limit)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(j.Server, "/")+path, nil)
		if err != nil {
			return nil, err
		}
		switch {
		case j.Token.Bootstrap != "":
			req.Header.Set("Authorization", "Bearer "+j.Token.Bootstrap)
		case j.Token.Password != "":
			req.SetBasicAuth("node", j.Token.Password)
		}
		if edit != nil {
			edit(req)
		}
		resp, err := c.Do(req)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}
		retry := false
		switch {
		case err != nil:
			err, retry = fmt.Errorf("%s: %w", path, err), true
		case resp.StatusCode == http.StatusOK:
			return body, nil
		case resp.StatusCode == http.StatusForbidden && strings.Contains(path, "-kubelet.crt"):
			return nil, fmt.Errorf("%s: %w (another node named %s, or its password file %s changed; delete the node to join anew)", path, ErrPasswordRejected, j.NodeName, j.PasswordFile)
		case resp.StatusCode == http.StatusUnauthorized && j.Token.Password == "" && j.Token.Bootstrap == "":
			return nil, fmt.Errorf("%s: the server wants a join token", path)
		case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusUnauthorized:
			// The server is starting, or (401) does not accept the token
			// yet: retry until the deadline, then say which.
			err, retry = fmt.Errorf("%s: %s", path, resp.Status), true
		default:
			return nil, fmt.Errorf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
		}
		if !retry || time.Now().After(deadline) {
			if resp != nil && resp.StatusCode == http.StatusUnauthorized {
				return nil, fmt.Errorf("%w: the join token is not accepted by the server", err)
			}
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// nodePassword reads the node password, creating it on first join: 16
// random bytes, hex, as k3s agents keep theirs.
func nodePassword(file string) (string, error) {
	if b, err := os.ReadFile(file); err == nil {
		if pw := strings.TrimSpace(string(b)); pw != "" {
			return pw, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("node password: %w", err)
	}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	pw := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("node password: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return "", fmt.Errorf("node password: %w", err)
	}
	return pw, nil
}

// keyPair splits the supervisor's answer (certificate chain, then the
// private key) into a TLS certificate.
func keyPair(b []byte) (_ tls.Certificate, certs, key []byte, _ error) {
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if strings.Contains(blk.Type, "PRIVATE KEY") {
			key = pem.EncodeToMemory(blk)
		} else {
			certs = append(certs, pem.EncodeToMemory(blk)...)
		}
	}
	if len(certs) == 0 || len(key) == 0 {
		return tls.Certificate{}, nil, nil, errors.New("the answer holds no certificate and key")
	}
	c, err := tls.X509KeyPair(certs, key)
	return c, certs, key, err
}
