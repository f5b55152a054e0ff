// Package k3s is the agent's wrapper around a k3s server's supervisor: it
// joins the cluster as a k3s agent does (the server's CA from /cacerts,
// checked against the join token's hash; a node password; the node's
// client and serving certificates) and keeps the tunnel through which the
// API server reaches the agent's kubelet API.
package k3s

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Token is a parsed k3s join token: K10<CA hash>::<user>:<password>, a
// bootstrap token (abcdef.0123456789abcdef), or a bare password.
type Token struct {
	// CAHash is the hex SHA-256 the server's CA must have; "" when the
	// token does not pin it (the CA is then trusted on first use, as k3s
	// agents do).
	CAHash string
	// Password authenticates as user "node" (k3s agents always use that
	// user, whatever the token names).
	Password string
	// Bootstrap is a kubeadm-style bootstrap token, used as a bearer token
	// instead of a password.
	Bootstrap string
}

var bootstrapRe = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)

// ParseToken reads a join token. Errors never quote the token.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, errors.New("the join token is empty")
	}
	var t Token
	creds := s
	if rest, ok := strings.CutPrefix(s, "K10"); ok {
		hash, c, found := strings.Cut(rest, "::")
		if !found {
			return Token{}, errors.New("the join token starts with K10 but has no '::' between its CA hash and credentials")
		}
		if hash != "" && len(hash) != sha256.Size*2 {
			return Token{}, fmt.Errorf("the join token's CA hash has %d characters, want %d", len(hash), sha256.Size*2)
		}
		if _, err := hex.DecodeString(hash); err != nil {
			return Token{}, errors.New("the join token's CA hash is not hexadecimal")
		}
		t.CAHash, creds = strings.ToLower(hash), c
		if bootstrapRe.MatchString(creds) {
			t.Bootstrap = creds
			return t, nil
		}
		_, pw, ok := strings.Cut(creds, ":")
		if !ok || pw == "" {
			return Token{}, errors.New("the join token has no password after its user name")
		}
		t.Password = pw
		return t, nil
	}
	if bootstrapRe.MatchString(creds) {
		t.Bootstrap = creds
		return t, nil
	}
	t.Password = creds // a bare password, as the server's --token
	return t, nil
}

// CAHash is the hash a K10 token pins for a CA bundle as /cacerts serves
// it: the SHA-256 of the file's bytes when it holds one certificate, else
// of the DER of the root that the first certificate chains to.
func CAHash(bundle []byte) (string, error) {
	var certs []*x509.Certificate
	for rest := bundle; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return "", fmt.Errorf("the server's CA: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return "", errors.New("the server's CA bundle holds no certificate")
	}
	data := bundle
	if len(certs) > 1 {
		roots, inter := x509.NewCertPool(), x509.NewCertPool()
		for _, c := range certs[1:] {
			if len(c.AuthorityKeyId) == 0 || string(c.AuthorityKeyId) == string(c.SubjectKeyId) {
				roots.AddCert(c)
			} else {
				inter.AddCert(c)
			}
		}
		if chains, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err == nil {
			chain := chains[0]
			data = chain[len(chain)-1].Raw
		}
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}
