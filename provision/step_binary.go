package provision

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/phonefarm/phonefarm/transport"
)

// binaryStep uploads the k3s binary for the phone's architecture and the
// command links the k3s installer makes (kubectl, crictl, ctr).
type binaryStep struct {
	art     Artifact
	why     string
	upgrade bool
}

func (s *binaryStep) Title() string {
	return fmt.Sprintf("upload k3s %s (%s, %d MB)", s.art.Version, s.art.Arch, s.art.Size>>20)
}
func (s *binaryStep) Why() string { return s.why }

func (s *binaryStep) Apply(ctx context.Context, t *Target) error {
	f, err := os.Open(s.art.Path)
	if err != nil {
		return fmt.Errorf("open k3s binary: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if t.Progress != nil {
		r = &countingReader{r: f, total: s.art.Size, report: t.Progress}
	}
	if err := t.Host.WriteFile(ctx, BinaryPath, 0o755, r); err != nil {
		return err
	}
	// The links the k3s installer makes, and the uploaded file's hash in the
	// phone's hash cache (state.sh): SSH delivered exactly these bytes, so
	// the next plan need not read 200 MB back to know it.
	_, err = transport.Output(ctx, t.Host, fmt.Sprintf(`for c in kubectl crictl ctr; do [ -e /usr/local/bin/$c ] || ln -s k3s /usr/local/bin/$c; done
f=%[1]s c=%[2]s
key=$(stat -c '%%s %%Y %%i' "$f") && mkdir -p "${c%%/*}" &&
	{ grep -v "^$f " "$c" 2>/dev/null; echo "$f $key %[3]s"; } > "$c.$$" && mv -f "$c.$$" "$c"`, BinaryPath, hashCache, s.art.SHA256))
	return err
}

type countingReader struct {
	r      io.Reader
	done   int64
	total  int64
	report func(done, total int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.done += int64(n)
	c.report(c.done, c.total)
	return n, err
}
