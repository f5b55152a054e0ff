package k3s

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseToken(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	tests := []struct {
		in      string
		want    Token
		wantErr string
	}{
		{in: "K10" + hash + "::server:s3cret", want: Token{CAHash: hash, Password: "s3cret"}},
		{in: "K10" + strings.ToUpper(hash) + "::node:pw\n", want: Token{CAHash: hash, Password: "pw"}},
		{in: "K10" + hash + "::abcdef.0123456789abcdef", want: Token{CAHash: hash, Bootstrap: "abcdef.0123456789abcdef"}},
		{in: "abcdef.0123456789abcdef", want: Token{Bootstrap: "abcdef.0123456789abcdef"}},
		{in: "just-a-password", want: Token{Password: "just-a-password"}},
		{in: "  ", wantErr: "empty"},
		{in: "K10" + hash + "server:s3cret", wantErr: "no '::'"},
		{in: "K10abc::server:s3cret", wantErr: "has 3 characters, want 64"},
		{in: "K10" + strings.Repeat("zz", 32) + "::server:s3cret", wantErr: "not hexadecimal"},
		{in: "K10" + hash + "::server:", wantErr: "no password"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseToken(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %+v, %v; want an error saying %q", got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error %q quotes the token's password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// A server whose CA is not the one the token pins is refused before any
// credential is sent to it; the right CA is accepted.
func TestJoinChecksTheServersCA(t *testing.T) {
	var authed []string
	srv := httptest.NewTLSServer(nil)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pw, ok := r.BasicAuth(); ok {
			authed = append(authed, r.URL.Path+" "+pw)
		}
		if r.URL.Path == "/cacerts" {
			w.Write(caPEM)
			return
		}
		http.Error(w, "not here", http.StatusNotFound)
	})
	defer srv.Close()
	sum := sha256.Sum256(caPEM)
	right := hex.EncodeToString(sum[:])
	if got, err := CAHash(caPEM); err != nil || got != right {
		t.Fatalf("CAHash: got %s %v, want %s (the file's SHA-256)", got, err, right)
	}

	wrong := strings.Repeat("0", 64)
	j := &Joiner{Server: srv.URL, Token: Token{CAHash: wrong, Password: "s3cret"}, NodeName: "phone1", Retry: time.Second}
	_, err := j.Join(t.Context())
	if err == nil || !strings.Contains(err.Error(), "is not the one the join token names") {
		t.Fatalf("join with a token pinning another CA: %v, want a refusal", err)
	}
	if len(authed) != 0 {
		t.Errorf("the token's password went to a server whose CA was not yet checked: %q", authed)
	}

	j.Token.CAHash = right
	if _, err := j.fetchCA(t.Context(), nil); err != nil {
		t.Errorf("the right CA: %v", err)
	}
	if len(authed) != 0 {
		t.Errorf("/cacerts was asked with the token's password: %q", authed)
	}
}
