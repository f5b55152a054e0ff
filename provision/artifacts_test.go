package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func release(t *testing.T, body, sums string) (string, *atomic.Int32) {
	t.Helper()
	var downloads atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/v1.32.0+k3s1/sha256sum-arm64.txt", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, sums) })
	mux.HandleFunc("/v1.32.0+k3s1/k3s-arm64", func(w http.ResponseWriter, _ *http.Request) {
		downloads.Add(1)
		fmt.Fprint(w, body)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, &downloads
}

func hexSum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestResolveRelease(t *testing.T) {
	body := "pretend this is k3s for arm64"
	url, downloads := release(t, body, hexSum("other")+"  k3s\n"+hexSum(body)+"  k3s-arm64\n")
	src := Source{Version: "v1.32.0+k3s1", ReleaseURL: url, CacheDir: t.TempDir()}
	for i := range 2 {
		arts, err := Resolve(t.Context(), src, []string{"arm64", "arm64"})
		if err != nil {
			t.Fatal(err)
		}
		a := arts["arm64"]
		if a.SHA256 != hexSum(body) || a.Size != int64(len(body)) || a.Version != "v1.32.0+k3s1" {
			t.Errorf("round %d: got %+v", i, a)
		}
		if b, _ := os.ReadFile(a.Path); string(b) != body {
			t.Errorf("round %d: cached file holds %q", i, b)
		}
	}
	if n := downloads.Load(); n != 1 {
		t.Errorf("downloads: got %d, want 1 (the second resolve uses the cache)", n)
	}
}

func TestResolveReleaseChecksumMismatch(t *testing.T) {
	url, _ := release(t, "tampered", hexSum("the real thing")+"  k3s-arm64\n")
	cache := t.TempDir()
	_, err := Resolve(t.Context(), Source{Version: "v1.32.0+k3s1", ReleaseURL: url, CacheDir: cache}, []string{"arm64"})
	if err == nil || !strings.Contains(err.Error(), "does not match the release checksum") {
		t.Fatalf("got %v, want a checksum mismatch", err)
	}
	matches, _ := filepath.Glob(filepath.Join(cache, "k3s", "*", "k3s-arm64*"))
	if len(matches) != 0 {
		t.Errorf("a rejected download was kept: %v", matches)
	}
}

func TestResolveMissingChecksumEntry(t *testing.T) {
	url, _ := release(t, "x", hexSum("x")+"  k3s\n")
	_, err := Resolve(t.Context(), Source{Version: "v1.32.0+k3s1", ReleaseURL: url, CacheDir: t.TempDir()}, []string{"arm64"})
	if err == nil || !strings.Contains(err.Error(), "no entry for k3s-arm64") {
		t.Errorf("got %v, want an error naming the missing entry", err)
	}
}

func TestResolveLocalFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k3s")
	if err := os.WriteFile(p, []byte("local k3s"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := Source{Version: "v1.32.0+k3s1", Files: map[string]string{"amd64": p}, CacheDir: t.TempDir()}
	arts, err := Resolve(t.Context(), src, []string{"amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if a := arts["amd64"]; a.SHA256 != hexSum("local k3s") || a.Path != p {
		t.Errorf("got %+v", a)
	}
	// A changed file is hashed again, not served from the hash cache.
	if err := os.WriteFile(p, []byte("local k3s, rebuilt"), 0o755); err != nil {
		t.Fatal(err)
	}
	arts, err = Resolve(t.Context(), src, []string{"amd64"})
	if err != nil || arts["amd64"].SHA256 != hexSum("local k3s, rebuilt") {
		t.Errorf("after a rebuild: got %+v, %v", arts["amd64"], err)
	}
	if _, err := Resolve(t.Context(), Source{Files: map[string]string{"amd64": filepath.Join(dir, "nope")}}, []string{"amd64"}); err == nil {
		t.Error("a missing local binary: got no error")
	}
}
