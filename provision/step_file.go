package provision

import (
	"bytes"
	"context"
	"io/fs"
)

// fileStep writes one managed file (config, service definition) atomically.
type fileStep struct {
	path    string
	mode    fs.FileMode
	content []byte
	title   string
	why     string
	old     string // the SHA-256 of the phone's file, "" when it has none
}

func (s *fileStep) Title() string { return s.title + " " + s.path }
func (s *fileStep) Why() string   { return s.why }

func (s *fileStep) Apply(ctx context.Context, t *Target) error {
	return t.Host.WriteFile(ctx, s.path, s.mode, bytes.NewReader(s.content))
}
