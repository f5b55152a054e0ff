package flash

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/ulikunitz/xz"

	"github.com/phonefarm/phonefarm/devicedb"
)

// Image roles.
const (
	RoleKernel = "kernel" // boot.img, to the kernel (boot) partition
	RoleRootfs = "rootfs" // the root filesystem image, to userdata
	RoleDtbo   = "dtbo"
	RoleVbmeta = "vbmeta" // generated: verification disabled
)

// ErrChecksumMismatch is an image whose checksum is not the expected one.
// Nothing has been sent to the phone when it is returned.
var ErrChecksumMismatch = errors.New("checksum mismatch")

// Checksum is an expected digest.
type Checksum struct {
	Algo string `json:"algo"` // "sha256" or "sha512"
	Hex  string `json:"hex"`
}

// ParseChecksum reads "sha256:HEX", "sha512:HEX" or a bare hex digest
// (whose length says the algorithm).
func ParseChecksum(s string) (Checksum, error) {
	algo, h, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		h, algo = algo, ""
	}
	h = strings.ToLower(h)
	if _, err := hex.DecodeString(h); err != nil {
		return Checksum{}, fmt.Errorf("checksum %q: not hex", s)
	}
	switch {
	case algo == "" && len(h) == 64, algo == "sha256" && len(h) == 64:
		return Checksum{Algo: "sha256", Hex: h}, nil
	case algo == "" && len(h) == 128, algo == "sha512" && len(h) == 128:
		return Checksum{Algo: "sha512", Hex: h}, nil
	}
	return Checksum{}, fmt.Errorf("checksum %q: want 64 hex digits (sha256) or 128 (sha512)", s)
}

func (c Checksum) newHash() hash.Hash {
	if c.Algo == "sha512" {
		return sha512.New()
	}
	return sha256.New()
}

// Source says where the images come from: a `pmbootstrap export`
// directory, or the URL of a rootfs image (images.postmarketos.org style,
// *.img or *.img.xz) whose boot image sits next to it as *-boot.img[.xz].
type Source struct {
	Dir string
	URL string
	// Checksum is the expected digest of the rootfs image as stored or
	// served (of the .xz file when compressed). Required for URLs; the
	// boot image's digest then comes from its .sha256/.sha512 file next to
	// it.
	Checksum *Checksum
}

// Image is one image ready to flash: a local, uncompressed file whose
// checksum has been verified.
type Image struct {
	Role string `json:"role"`
	// Path is the local file flashed.
	Path string `json:"path"`
	// Origin is where it came from (a file or URL), for the plan.
	Origin string `json:"origin"`
	Size   int64  `json:"size"`
	// SHA256 is the digest of Path, the bytes sent to the phone.
	SHA256 string `json:"sha256"`
	// Verified names the checksum the origin was checked against, if any.
	Verified *Checksum `json:"verified,omitempty"`
}

// Images are the resolved images of one flash.
type Images struct {
	List []Image
	// tmp holds downloads and generated images; Close removes it.
	tmp string
}

// Get returns the image with role.
func (im *Images) Get(role string) (Image, bool) {
	for _, i := range im.List {
		if i.Role == role {
			return i, true
		}
	}
	return Image{}, false
}

// Close removes downloaded and generated files.
func (im *Images) Close() error {
	if im == nil || im.tmp == "" {
		return nil
	}
	return os.RemoveAll(im.tmp)
}

// DownloadProgress reports an image being fetched or decompressed.
type DownloadProgress struct {
	Name        string
	Done, Total int64 // Total is -1 when unknown
}

// ImageOptions tune ResolveImages.
type ImageOptions struct {
	HTTP     *http.Client
	TempDir  string // parent of the temporary directory; "" is os.TempDir
	Progress func(DownloadProgress)
}

// ResolveImages finds, fetches, decompresses and verifies the images dev
// needs. Every checksum is checked here, before anything talks to a phone.
func ResolveImages(ctx context.Context, dev devicedb.Device, src Source, opts ImageOptions) (*Images, error) {
	tmp, err := os.MkdirTemp(opts.TempDir, "phonefarm-flash-")
	if err != nil {
		return nil, err
	}
	im := &Images{tmp: tmp}
	switch {
	case src.Dir != "" && src.URL != "":
		err = errors.New("give an image directory or a URL, not both")
	case src.Dir != "":
		err = im.fromDir(ctx, dev, src, opts)
	case src.URL != "":
		err = im.fromURL(ctx, dev, src, opts)
	default:
		err = errors.New("no image given: pass a pmbootstrap export directory or an image URL")
	}
	if err == nil && dev.VbmetaDisableVerification {
		err = im.addVbmeta()
	}
	if err != nil {
		im.Close()
		return nil, err
	}
	return im, nil
}

// needsKernel reports whether dev flashes a separate boot image.
func needsKernel(dev devicedb.Device) bool {
	v, _ := dev.Value("generate_bootimg")
	return dev.Partitions.Kernel != "" && (v == "true" || dev.FlashMethod == devicedb.MethodFastbootBootpart || dev.Heimdall())
}

func kernelNames(dev devicedb.Device) []string {
	if dev.FlashMethod == devicedb.MethodFastbootBootpart {
		return []string{dev.Codename + "-boot.img"}
	}
	return []string{"boot.img", dev.Codename + "-boot.img"}
}

func rootfsNames(dev devicedb.Device) []string {
	return []string{dev.Codename + ".img", dev.Codename + "-root.img", "rootfs.img"}
}

func (im *Images) fromDir(ctx context.Context, dev devicedb.Device, src Source, opts ImageOptions) error {
	find := func(role string, names []string) error {
		for _, n := range names {
			for _, cand := range []string{n, n + ".xz"} {
				p := filepath.Join(src.Dir, cand)
				if _, err := os.Stat(p); err != nil {
					continue
				}
				var want *Checksum
				if role == RoleRootfs {
					want = src.Checksum
				}
				img, err := im.local(ctx, role, p, want, opts)
				if err != nil {
					return err
				}
				im.List = append(im.List, img)
				return nil
			}
		}
		return fmt.Errorf("no %s image in %s: looked for %s (run pmbootstrap export)", role, src.Dir, strings.Join(names, ", "))
	}
	if needsKernel(dev) {
		if err := find(RoleKernel, kernelNames(dev)); err != nil {
			return err
		}
	}
	if err := find(RoleRootfs, rootfsNames(dev)); err != nil {
		return err
	}
	if dev.Partitions.Dtbo != "" {
		if err := find(RoleDtbo, []string{"dtbo.img"}); err != nil {
			return err
		}
	}
	return nil
}

// local verifies a file (and decompresses it when it is .xz).
func (im *Images) local(ctx context.Context, role, path string, want *Checksum, opts ImageOptions) (Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return Image{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Image{}, err
	}
	if !strings.HasSuffix(path, ".xz") {
		c := Checksum{Algo: "sha256"}
		if want != nil {
			c.Algo = want.Algo
		}
		h := c.newHash()
		s256 := sha256.New()
		if _, err := io.Copy(io.MultiWriter(h, s256), ctxReader{ctx, f}); err != nil {
			return Image{}, fmt.Errorf("read %s: %w", path, err)
		}
		if err := verify(path, want, h); err != nil {
			return Image{}, err
		}
		return Image{Role: role, Path: path, Origin: path, Size: st.Size(), SHA256: hex.EncodeToString(s256.Sum(nil)), Verified: want}, nil
	}
	return im.unpack(ctx, role, path, f, st.Size(), want, opts)
}

func verify(name string, want *Checksum, h hash.Hash) error {
	if want == nil {
		return nil
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.Hex {
		return fmt.Errorf("%s: %w: got %s %s, want %s", name, ErrChecksumMismatch, want.Algo, got, want.Hex)
	}
	return nil
}

// unpack streams r (xz-compressed when origin ends in .xz) into a file in
// the temporary directory, hashing what it reads, and verifies the hash at
// the end; a mismatch removes the file.
func (im *Images) unpack(ctx context.Context, role, origin string, r io.Reader, total int64, want *Checksum, opts ImageOptions) (Image, error) {
	c := Checksum{Algo: "sha256"}
	if want != nil {
		c.Algo = want.Algo
	}
	h := c.newHash()
	pr := &progressReader{r: ctxReader{ctx, r}, total: total, name: filepath.Base(origin), report: opts.Progress}
	raw := bufio.NewReaderSize(io.TeeReader(pr, h), 1<<20)
	var in io.Reader = raw
	name := strings.TrimSuffix(filepath.Base(origin), ".xz")
	if strings.HasSuffix(origin, ".xz") {
		xr, err := xz.NewReader(in)
		if err != nil {
			return Image{}, fmt.Errorf("decompress %s: %w", origin, err)
		}
		in = xr
	}
	out := filepath.Join(im.tmp, role+"-"+name)
	f, err := os.Create(out)
	if err != nil {
		return Image{}, err
	}
	s256 := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, s256), in)
	if err == nil {
		// Hash anything after the xz stream too (padding), like sha256sum.
		_, err = io.Copy(io.Discard, raw)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out)
		return Image{}, fmt.Errorf("fetch %s: %w", origin, err)
	}
	if err := verify(origin, want, h); err != nil {
		os.Remove(out)
		return Image{}, err
	}
	return Image{Role: role, Path: out, Origin: origin, Size: n, SHA256: hex.EncodeToString(s256.Sum(nil)), Verified: want}, nil
}

func (im *Images) fromURL(ctx context.Context, dev devicedb.Device, src Source, opts ImageOptions) error {
	if src.Checksum == nil {
		return fmt.Errorf("image URL %s needs its checksum (--sha256 or --sha512)", src.URL)
	}
	u, err := url.Parse(src.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("image URL %q: want an http or https URL", src.URL)
	}
	client := opts.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	if needsKernel(dev) {
		bootURL, err := bootURLFor(src.URL)
		if err != nil {
			return err
		}
		sum, err := fetchChecksum(ctx, client, bootURL, src.Checksum.Algo)
		if err != nil {
			return err
		}
		img, err := im.fetch(ctx, client, RoleKernel, bootURL, &sum, opts)
		if err != nil {
			return err
		}
		im.List = append(im.List, img)
	}
	img, err := im.fetch(ctx, client, RoleRootfs, src.URL, src.Checksum, opts)
	if err != nil {
		return err
	}
	im.List = append(im.List, img)
	return nil
}

// bootURLFor derives the boot image's URL from the rootfs image's:
// NAME.img.xz → NAME-boot.img.xz.
func bootURLFor(rootfs string) (string, error) {
	for _, ext := range []string{".img.xz", ".img"} {
		if base, ok := strings.CutSuffix(rootfs, ext); ok {
			return base + "-boot" + ext, nil
		}
	}
	return "", fmt.Errorf("image URL %s: want a name ending in .img or .img.xz", rootfs)
}

func get(ctx context.Context, client *http.Client, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("fetch %s: %s", u, resp.Status)
	}
	return resp, nil
}

func fetchChecksum(ctx context.Context, client *http.Client, imageURL, algo string) (Checksum, error) {
	u := imageURL + "." + algo
	resp, err := get(ctx, client, u)
	if err != nil {
		return Checksum{}, fmt.Errorf("checksum of %s: %w", imageURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return Checksum{}, fmt.Errorf("checksum of %s: %w", imageURL, err)
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return Checksum{}, fmt.Errorf("checksum file %s is empty", u)
	}
	c, err := ParseChecksum(algo + ":" + fields[0])
	if err != nil {
		return Checksum{}, fmt.Errorf("checksum file %s: %w", u, err)
	}
	return c, nil
}

func (im *Images) fetch(ctx context.Context, client *http.Client, role, u string, want *Checksum, opts ImageOptions) (Image, error) {
	resp, err := get(ctx, client, u)
	if err != nil {
		return Image{}, err
	}
	defer resp.Body.Close()
	return im.unpack(ctx, role, u, resp.Body, resp.ContentLength, want, opts)
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

type progressReader struct {
	r      io.Reader
	name   string
	done   int64
	total  int64
	last   int64
	report func(DownloadProgress)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.report != nil && (p.done-p.last >= 4<<20 || errors.Is(err, io.EOF)) {
		p.last = p.done
		p.report(DownloadProgress{Name: p.name, Done: p.done, Total: p.total})
	}
	return n, err
}
