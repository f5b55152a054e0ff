package ssh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"

	"github.com/pkg/sftp"

	"github.com/phonefarm/phonefarm/transport"
)

// sftpClient returns the host's one SFTP session, opened on first use.
func (h *Host) sftpClient() (*sftp.Client, error) {
	h.sftpOnce.Do(func() {
		h.sftp, h.sftpErr = sftp.NewClient(h.client,
			sftp.UseConcurrentWrites(true),
			sftp.UseConcurrentReads(true),
			sftp.MaxConcurrentRequestsPerFile(64),
		)
	})
	if h.sftpErr != nil {
		return nil, fmt.Errorf("%s: start sftp: %w", h.cfg.Name, h.sftpErr)
	}
	return h.sftp, nil
}

func tempName(p string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return path.Join(path.Dir(p), "."+path.Base(p)+".phonefarm-"+hex.EncodeToString(b))
}

// WriteFile implements transport.Host. Without privilege escalation the
// file is written over SFTP next to its destination, synced and renamed
// over it with posix-rename; with sudo/doas it is staged in /tmp over SFTP
// and moved into place by a root shell in the same temp+sync+rename way.
func (h *Host) WriteFile(ctx context.Context, p string, mode fs.FileMode, r io.Reader) error {
	if h.become != "" {
		return h.writeFileBecome(ctx, p, mode, r)
	}
	c, err := h.sftpClient()
	if err != nil {
		return err
	}
	if err := c.MkdirAll(path.Dir(p)); err != nil {
		return fmt.Errorf("write %s on %s: create directory: %w", p, h.cfg.Name, err)
	}
	tmp := tempName(p)
	if err := h.upload(ctx, c, tmp, mode, r); err != nil {
		_ = c.Remove(tmp) // best effort: if the phone is gone the temp file stays, the target is untouched
		return fmt.Errorf("write %s on %s: %w", p, h.cfg.Name, err)
	}
	if err := c.PosixRename(tmp, p); err != nil {
		_ = c.Remove(tmp)
		return fmt.Errorf("write %s on %s: rename into place: %w", p, h.cfg.Name, err)
	}
	// Temp files of earlier writes that were cut off (the phone dropped
	// off mid-transfer) are removed once a write of the same file succeeds.
	if stale, err := c.Glob(path.Join(path.Dir(p), "."+path.Base(p)+".phonefarm-*")); err == nil {
		for _, s := range stale {
			_ = c.Remove(s)
		}
	}
	return nil
}

func (h *Host) upload(ctx context.Context, c *sftp.Client, p string, mode fs.FileMode, r io.Reader) error {
	f, err := c.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	// Always concurrent: the context wrapper hides the size ReadFrom looks for.
	if _, err := f.ReadFromWithConcurrency(transport.ContextReader(ctx, r), 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode.Perm()); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync: %w", err)
	}
	return f.Close()
}

func (h *Host) writeFileBecome(ctx context.Context, p string, mode fs.FileMode, r io.Reader) error {
	c, err := h.sftpClient()
	if err != nil {
		return err
	}
	// Staged copies of earlier writes of this file that were cut off would
	// otherwise stay in /tmp, which is RAM on most phones.
	if stale, err := c.Glob("/tmp/." + path.Base(p) + ".phonefarm-*"); err == nil {
		for _, s := range stale {
			_ = c.Remove(s)
		}
	}
	stage := tempName("/tmp/" + path.Base(p))
	if err := h.upload(ctx, c, stage, 0o600, r); err != nil {
		_ = c.Remove(stage)
		return fmt.Errorf("write %s on %s: stage in /tmp: %w", p, h.cfg.Name, err)
	}
	defer c.Remove(stage) //nolint:errcheck // removed by the script on success
	dir := path.Dir(p)
	script := fmt.Sprintf(`set -e
mkdir -p %[1]s
rm -f %[2]s*
t=$(mktemp %[2]sXXXXXX)
trap 'rm -f "$t"' EXIT
cat %[3]s > "$t"
chmod %[4]o "$t"
sync "$t" 2>/dev/null || sync
mv -f "$t" %[5]s
trap - EXIT
rm -f %[3]s`, transport.Quote(dir), transport.Quote(dir+"/."+path.Base(p)+".phonefarm-"), transport.Quote(stage), mode.Perm(), transport.Quote(p))
	if _, err := transport.Output(ctx, h, script); err != nil {
		return fmt.Errorf("write %s on %s: %w", p, h.cfg.Name, err)
	}
	return nil
}

// ReadFile implements transport.Host.
func (h *Host) ReadFile(ctx context.Context, p string) ([]byte, error) {
	if h.become != "" {
		return transport.ShellReadFile(ctx, h, p)
	}
	c, err := h.sftpClient()
	if err != nil {
		return nil, err
	}
	f, err := c.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read %s on %s: %w", p, h.cfg.Name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(transport.ContextReader(ctx, f))
	if err != nil {
		return nil, fmt.Errorf("read %s on %s: %w", p, h.cfg.Name, err)
	}
	return b, nil
}

// Sha256 implements transport.Host.
func (h *Host) Sha256(ctx context.Context, p string) (string, error) {
	return transport.ShellSha256(ctx, h, p)
}
