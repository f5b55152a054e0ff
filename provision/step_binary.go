package provision

import (
	"context"
	"fmt"
	"io"

	"github.com/phonefarm/phonefarm/transport"
)

// binaryStep uploads the k3s binary for the phone's architecture and the
// command links the k3s installer makes (kubectl, crictl, ctr).
type binaryStep struct {
	art     Artifact
	why     string
	upgrade bool
	// old and oldVersion are the installed binary's SHA-256 and version.
	old, oldVersion string
}

func (s *binaryStep) Title() string {
	return fmt.Sprintf("upload k3s %s (%s, %d MB)", s.art.Version, s.art.Arch, s.art.Size>>20)
}
func (s *binaryStep) Why() string { return s.why }

func (s *binaryStep) Apply(ctx context.Context, t *Target) error {
	if err := uploadHashed(ctx, t, s.art, BinaryPath, 0o755); err != nil {
		return err
	}
	// The links the k3s installer makes.
	_, err := transport.Output(ctx, t.Host, `for c in kubectl crictl ctr; do [ -e /usr/local/bin/$c ] || ln -s k3s /usr/local/bin/$c; done`)
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
