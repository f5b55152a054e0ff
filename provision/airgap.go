package provision

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport"
)

// AirgapImagesDir is where k3s imports image tarballs from when it starts.
const AirgapImagesDir = "/var/lib/rancher/k3s/agent/images"

// airgapOwned lists, one name per line, the tarballs in AirgapImagesDir
// that phonefarm uploaded: those it removes when the inventory no longer
// names them. Files others put there are left alone.
const airgapOwned = "/var/lib/phonefarm/airgap-images"

// ImageArtifact is an image tarball on this machine, ready to upload.
type ImageArtifact struct {
	Artifact
	// Name is the file name on the phone, under AirgapImagesDir.
	Name string
}

// PhonePath is where the tarball goes on a phone.
func (a ImageArtifact) PhonePath() string { return path.Join(AirgapImagesDir, a.Name) }

// ResolveAirgapImages hashes the inventory's image tarballs for the given
// architectures (hashes are remembered in cacheDir by size and time, so a
// converged plan does not read gigabytes again).
func ResolveAirgapImages(farm *inventory.Farm, cacheDir string, arches []string) (map[string][]ImageArtifact, error) {
	out := map[string][]ImageArtifact{}
	for _, arch := range arches {
		files, ok := farm.K3s.AirgapImages[arch]
		if !ok || out[arch] != nil {
			continue
		}
		list := []ImageArtifact{}
		for i, f := range files {
			p := farm.Resolve(f)
			a, err := localArtifact(Source{Version: "(local)", CacheDir: cacheDir}, arch, p)
			if err != nil {
				return nil, fmt.Errorf("k3s.airgapImages[%s][%d]: %w", arch, i, err)
			}
			list = append(list, ImageArtifact{Artifact: a, Name: filepath.Base(p)})
		}
		out[arch] = list
	}
	return out, nil
}

// imageStep uploads one image tarball into k3s's import directory; k3s
// imports it when it next starts.
type imageStep struct {
	img ImageArtifact
	why string
}

func (s *imageStep) Title() string {
	return fmt.Sprintf("upload airgap images %s (%s, %d MB)", s.img.Name, s.img.Arch, s.img.Size>>20)
}
func (s *imageStep) Why() string { return s.why }

func (s *imageStep) Apply(ctx context.Context, t *Target) error {
	if err := uploadHashed(ctx, t, s.img.Artifact, s.img.PhonePath(), 0o644); err != nil {
		return err
	}
	_, err := transport.Output(ctx, t.Host, ownedImages(s.img.Name, true))
	return err
}

// imageRemoveStep deletes a tarball phonefarm uploaded that the inventory
// no longer names, so k3s stops importing it at every start. Images
// already imported stay in containerd until unused.
type imageRemoveStep struct{ name string }

func (s *imageRemoveStep) Title() string {
	return "remove airgap images " + s.name
}
func (s *imageRemoveStep) Why() string {
	return "phonefarm uploaded it and k3s.airgapImages no longer names it"
}

func (s *imageRemoveStep) Apply(ctx context.Context, t *Target) error {
	_, err := transport.Output(ctx, t.Host, "rm -f "+transport.Quote(path.Join(AirgapImagesDir, s.name))+" && "+ownedImages(s.name, false))
	return err
}

// ownedImages is the shell command that adds name to (or removes it from)
// the list of tarballs phonefarm uploaded, replacing the list atomically.
func ownedImages(name string, add bool) string {
	echo := ""
	if add {
		echo = "echo " + transport.Quote(name) + ";"
	}
	return fmt.Sprintf(`f=%[1]s n=%[2]s; mkdir -p "${f%%/*}" && { grep -vxF "$n" "$f" 2>/dev/null || true; %[3]s } > "$f.$$" && mv -f "$f.$$" "$f"`,
		airgapOwned, transport.Quote(name), echo)
}

// uploadHashed uploads a local artifact to dst and records its hash in the
// phone's hash cache (state.sh): the transport delivered exactly these
// bytes, so the next plan need not read them back.
func uploadHashed(ctx context.Context, t *Target, art Artifact, dst string, mode os.FileMode) error {
	if err := upload(ctx, t, art, dst, mode); err != nil {
		return err
	}
	_, err := transport.Output(ctx, t.Host, rememberHash(dst, art.SHA256))
	return err
}

// upload writes a local artifact to dst on the phone, reporting progress.
func upload(ctx context.Context, t *Target, art Artifact, dst string, mode os.FileMode) error {
	f, err := os.Open(art.Path)
	if err != nil {
		return fmt.Errorf("open %s: %w", art.Path, err)
	}
	defer f.Close()
	var r io.Reader = f
	if t.Progress != nil {
		r = &countingReader{r: f, total: art.Size, report: t.Progress}
	}
	return t.Host.WriteFile(ctx, dst, mode, r)
}

// rememberHash is the shell command that records a file's hash in the
// phone's hash cache, keyed as state.sh keys it.
func rememberHash(file, sum string) string {
	return fmt.Sprintf(`f=%[1]s c=%[2]s
key=$(stat -c '%%s %%Y %%i' "$f") && mkdir -p "${c%%/*}" &&
	{ grep -v "^$f " "$c" 2>/dev/null; echo "$f $key %[3]s"; } > "$c.$$" && mv -f "$c.$$" "$c"`, transport.Quote(file), hashCache, sum)
}
