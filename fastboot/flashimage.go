package fastboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/phonefarm/phonefarm/fastboot/sparse"
)

// FlashOptions tune FlashImage.
type FlashOptions struct {
	// MaxDownloadSize overrides getvar max-download-size when positive
	// (deviceinfo_flash_fastboot_max_size, for bootloaders that misreport it).
	MaxDownloadSize int64
	// Sparse sends the image as a sparse image even when it fits one
	// download (deviceinfo_flash_sparse).
	Sparse bool
	// Progress receives transfer progress.
	Progress func(Progress)
}

// FlashImage flashes size bytes of src to partition the way the reference
// fastboot tool does: an image that fits the device's download buffer goes
// in one download; a larger one (or any with opts.Sparse) is sent as
// sparse pieces, each within max-download-size, each followed by
// flash:partition. An image that is already sparse is resplit when needed.
// partition is used as given; see ResolvePartition for A/B slots.
func (c *Client) FlashImage(ctx context.Context, partition string, src io.ReaderAt, size int64, opts FlashOptions) error {
	if size <= 0 {
		return fmt.Errorf("flash %s: empty image", partition)
	}
	max := opts.MaxDownloadSize
	if max <= 0 {
		m, err := c.MaxDownloadSize(ctx)
		var fail *FailError
		switch {
		case errors.As(err, &fail):
			m = 0 // not reported: send as is, as the reference tool does
		case err != nil:
			return fmt.Errorf("flash %s: %w", partition, err)
		}
		max = m
	}
	head := make([]byte, sparse.HeaderSize)
	n, _ := src.ReadAt(head, 0)
	isSparse := sparse.IsSparse(head[:n])
	progress := func(p Progress) {
		if opts.Progress != nil {
			p.Partition = partition
			opts.Progress(p)
		}
	}
	if (max == 0 || size <= max) && (isSparse || !opts.Sparse) {
		c.log.Debug("flashing raw", "partition", partition, "size", size, "max_download_size", max)
		if err := c.download(ctx, io.NewSectionReader(src, 0, size), size, Progress{Piece: 1, Pieces: 1}, progress); err != nil {
			return fmt.Errorf("flash %s: %w", partition, err)
		}
		if err := c.Flash(ctx, partition); err != nil {
			return fmt.Errorf("flash %s: %w", partition, err)
		}
		return nil
	}
	var im *sparse.Image
	var err error
	if isSparse {
		im, err = sparse.FromSparse(src, size)
	} else {
		im, err = sparse.FromRaw(src, size)
	}
	if err != nil {
		return fmt.Errorf("flash %s: %w", partition, err)
	}
	if max == 0 {
		max = 0xffffffff
	}
	pieces, err := im.Split(max)
	if err != nil {
		return fmt.Errorf("flash %s: %w", partition, err)
	}
	c.log.Debug("flashing sparse", "partition", partition, "size", size, "pieces", len(pieces), "max_download_size", max)
	for i, piece := range pieces {
		if err := c.sendPiece(ctx, piece, Progress{Piece: i + 1, Pieces: len(pieces)}, progress); err != nil {
			return fmt.Errorf("flash %s: sparse piece %d of %d: %w", partition, i+1, len(pieces), err)
		}
		if err := c.Flash(ctx, partition); err != nil {
			return fmt.Errorf("flash %s: sparse piece %d of %d: %w", partition, i+1, len(pieces), err)
		}
	}
	return nil
}

func (c *Client) sendPiece(ctx context.Context, piece sparse.Piece, p Progress, progress func(Progress)) error {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := piece.WriteTo(pw)
		pw.CloseWithError(err)
	}()
	err := c.download(ctx, pr, piece.Size(), p, progress)
	pr.CloseWithError(errors.New("download ended"))
	<-done
	return err
}

// ResolvePartition returns the partition a flash of name goes to: on an
// A/B device (getvar has-slot:NAME is yes) the current slot's copy,
// NAME_a or NAME_b; otherwise name itself.
func (c *Client) ResolvePartition(ctx context.Context, name string) (string, error) {
	has, err := c.GetVar(ctx, "has-slot:"+name)
	var fail *FailError
	if errors.As(err, &fail) || (err == nil && has != "yes") {
		return name, nil
	}
	if err != nil {
		return "", err
	}
	slot, err := c.GetVar(ctx, "current-slot")
	if err != nil {
		return "", fmt.Errorf("partition %s has slots: %w", name, err)
	}
	slot = strings.TrimPrefix(strings.TrimSpace(slot), "_")
	if slot == "" {
		return "", fmt.Errorf("partition %s has slots but the device reports no current slot", name)
	}
	return name + "_" + slot, nil
}
