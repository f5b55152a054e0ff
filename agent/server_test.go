package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &ca{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (c *ca) issue(t *testing.T, subject pkix.Name, server bool) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: subject, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Only the API server's client certificate may use the kubelet API: not
// another node's, not one from another CA, not an anonymous client.
func TestKubeletAPIAnswersOnlyTheAPIServer(t *testing.T) {
	clientCA, serverCA, stranger := newCA(t, "client-ca"), newCA(t, "server-ca"), newCA(t, "stranger")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	calls := 0
	s, err := listenKubelet("127.0.0.1", port, serverCA.issue(t, pkix.Name{CommonName: "phone1"}, true), clientCA.pem, api.PodHandlerConfig{
		GetPodsFromKubernetes: func(context.Context) ([]*corev1.Pod, error) { calls++; return nil, nil },
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close(context.Background())

	roots := x509.NewCertPool()
	roots.AddCert(serverCA.cert)
	get := func(cert *tls.Certificate) int {
		t.Helper()
		cfg := &tls.Config{RootCAs: roots}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/pods", port))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	apiserver := clientCA.issue(t, pkix.Name{CommonName: "system:kube-apiserver"}, false)
	admin := clientCA.issue(t, pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}}, false)
	otherNode := clientCA.issue(t, pkix.Name{CommonName: "system:node:phone2", Organization: []string{"system:nodes"}}, false)
	forged := stranger.issue(t, pkix.Name{CommonName: "system:kube-apiserver"}, false)
	for _, tt := range []struct {
		who  string
		cert *tls.Certificate
		want int
	}{
		{"the API server", &apiserver, http.StatusOK},
		{"system:masters", &admin, http.StatusOK},
		{"another node", &otherNode, http.StatusForbidden},
		{"no certificate", nil, http.StatusUnauthorized},
	} {
		if got := get(tt.cert); got != tt.want {
			t.Errorf("%s: got %d, want %d", tt.who, got, tt.want)
		}
	}
	// /metrics is the agent process's own, as the kubelet serves its own.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{apiserver}}}, Timeout: 10 * time.Second}
	resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("\ngo_goroutines ")) {
		t.Errorf("/metrics: %s, %v, want 200 with go_goroutines:\n%.500s", resp.Status, err, body)
	}
	// A certificate from another CA, sent although the server asks for
	// its client CA's, fails the TLS handshake.
	cfg := &tls.Config{RootCAs: roots, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &forged, nil }}
	c = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	if resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/pods", port)); err == nil {
		resp.Body.Close()
		t.Errorf("a certificate from another CA: got %s, want the handshake refused", resp.Status)
	}
	if calls != 2 {
		t.Errorf("handler calls: got %d, want 2 (the API server and system:masters)", calls)
	}
}
