package provision

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// DefaultReleaseURL is where k3s releases are downloaded from.
const DefaultReleaseURL = "https://github.com/k3s-io/k3s/releases/download"

// Artifact is a k3s binary on this machine, ready to upload.
type Artifact struct {
	Arch    string // arm64, arm, amd64
	Version string
	Path    string
	SHA256  string
	Size    int64
}

// Source says where k3s binaries come from.
type Source struct {
	Version    string
	ReleaseURL string            // DefaultReleaseURL when empty
	Files      map[string]string // arch -> local binary (air-gapped)
	// CacheDir keeps downloads and the hashes of local files.
	CacheDir string
	HTTP     *http.Client
}

// releaseAsset names the release asset and its checksum file for arch.
func releaseAsset(arch string) (asset, sums string, ok bool) {
	switch arch {
	case "amd64":
		return "k3s", "sha256sum-amd64.txt", true
	case "arm64":
		return "k3s-arm64", "sha256sum-arm64.txt", true
	case "arm":
		return "k3s-armhf", "sha256sum-arm.txt", true
	}
	return "", "", false
}

// Resolve finds a verified k3s binary for each architecture: a local file
// from the inventory, or the release asset, downloaded once into the cache
// and checked against the release's sha256sum file.
func Resolve(ctx context.Context, src Source, arches []string) (map[string]Artifact, error) {
	out := map[string]Artifact{}
	var errs []error
	for _, arch := range arches {
		if _, done := out[arch]; done {
			continue
		}
		var a Artifact
		var err error
		if path, ok := src.Files[arch]; ok {
			a, err = localArtifact(src, arch, path)
		} else {
			a, err = releaseArtifact(ctx, src, arch)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[arch] = a
	}
	return out, errors.Join(errs...)
}

func localArtifact(src Source, arch, path string) (Artifact, error) {
	v := src.Version
	if v == "" {
		v = "(local)"
	}
	return fileArtifact(src.CacheDir, "k3s binary for "+arch, arch, path, v)
}

// fileArtifact stats and hashes a binary on this machine; what names it in
// errors.
func fileArtifact(cacheDir, what, arch, path, version string) (Artifact, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Artifact{}, fmt.Errorf("%s: %w", what, err)
	}
	sum, err := cachedHash(cacheDir, path, st)
	if err != nil {
		return Artifact{}, fmt.Errorf("%s: %w", what, err)
	}
	return Artifact{Arch: arch, Version: version, Path: path, SHA256: sum, Size: st.Size()}, nil
}

// cachedHash hashes path, remembering the result by size and modification
// time so a converged re-apply does not read a 200 MB binary again.
func cachedHash(cacheDir, path string, st os.FileInfo) (string, error) {
	abs, _ := filepath.Abs(path)
	key := sha256.Sum256([]byte(fmt.Sprintf("%s|%d|%d", abs, st.Size(), st.ModTime().UnixNano())))
	memo := ""
	if cacheDir != "" {
		memo = filepath.Join(cacheDir, "hashes", hex.EncodeToString(key[:8]))
		if b, err := os.ReadFile(memo); err == nil && len(b) == 64 {
			return string(b), nil
		}
	}
	sum, err := fileSHA256(path)
	if err != nil {
		return "", err
	}
	if memo != "" && os.MkdirAll(filepath.Dir(memo), 0o755) == nil {
		_ = os.WriteFile(memo, []byte(sum), 0o644)
	}
	return sum, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func releaseArtifact(ctx context.Context, src Source, arch string) (Artifact, error) {
	asset, sums, ok := releaseAsset(arch)
	if !ok {
		return Artifact{}, fmt.Errorf("k3s has no release for %s", arch)
	}
	if src.Version == "" {
		return Artifact{}, fmt.Errorf("k3s binary for %s: set k3s.version in the inventory (or k3s.source.files.%s)", arch, arch)
	}
	base := strings.TrimSuffix(src.ReleaseURL, "/")
	if base == "" {
		base = DefaultReleaseURL
	}
	dir := filepath.Join(src.CacheDir, "k3s", src.Version)
	path := filepath.Join(dir, asset)
	meta := path + ".json"
	// A cached download is trusted as far as its recorded hash still
	// matches the file (checked through the hash cache).
	if b, err := os.ReadFile(meta); err == nil {
		var a Artifact
		if json.Unmarshal(b, &a) == nil {
			if st, err := os.Stat(path); err == nil && st.Size() == a.Size {
				if sum, err := cachedHash(src.CacheDir, path, st); err == nil && sum == a.SHA256 {
					return a, nil
				}
			}
		}
	}
	client := src.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	rel := base + "/" + url.PathEscape(src.Version) + "/"
	want, err := expectedSum(ctx, client, rel+sums, asset)
	if err != nil {
		return Artifact{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Artifact{}, err
	}
	tmp, err := os.CreateTemp(dir, asset+".download-")
	if err != nil {
		return Artifact{}, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := download(ctx, client, rel+asset, io.MultiWriter(tmp, h))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Artifact{}, err
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != want {
		return Artifact{}, fmt.Errorf("k3s %s %s: sha256 %s does not match the release checksum %s; not using it", src.Version, asset, got, want)
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return Artifact{}, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return Artifact{}, err
	}
	a := Artifact{Arch: arch, Version: src.Version, Path: path, SHA256: got, Size: n}
	b, _ := json.Marshal(a)
	return a, os.WriteFile(meta, b, 0o644)
}

func expectedSum(ctx context.Context, client *http.Client, sumsURL, asset string) (string, error) {
	var b strings.Builder
	if _, err := download(ctx, client, sumsURL, &b); err != nil {
		return "", err
	}
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && strings.TrimPrefix(f[1], "*") == asset {
			return strings.ToLower(f[0]), nil
		}
	}
	return "", fmt.Errorf("checksum file %s has no entry for %s", sumsURL, asset)
}

func download(ctx context.Context, client *http.Client, u string, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("download %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("download %s: %s", u, resp.Status)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("download %s: %w", u, err)
	}
	return n, nil
}
