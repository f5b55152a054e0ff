// Package sparse reads and writes Android sparse images, the format fastboot
// uses to flash images larger than a bootloader's download buffer.
//
// An image is described as a list of chunks over blocks of BlockSize bytes:
// raw data (read from the source on demand, never held in memory), a fill of
// one repeated 32-bit value, or "don't care" (leave the partition as it is).
// Split packs those chunks into pieces of at most a given size, each a
// complete sparse file covering the whole image, the way the reference
// fastboot tool resparses an image: a piece starts with a don't-care chunk
// over the blocks earlier pieces carry and ends with one over the rest.
package sparse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Format constants of sparse_format.h.
const (
	Magic          = 0xed26ff3a
	HeaderSize     = 28
	ChunkHeaderLen = 12
	BlockSize      = 4096

	ChunkRaw      = 0xCAC1
	ChunkFill     = 0xCAC2
	ChunkDontCare = 0xCAC3
	ChunkCRC32    = 0xCAC4
)

// ErrFormat marks input that is not a valid sparse image.
var ErrFormat = errors.New("invalid sparse image")

// IsSparse reports whether b starts with the sparse magic.
func IsSparse(b []byte) bool {
	return len(b) >= 4 && binary.LittleEndian.Uint32(b) == Magic
}

// Header is a sparse file header.
type Header struct {
	BlockSize   uint32
	TotalBlocks uint32
	TotalChunks uint32
}

// Chunk is a run of blocks.
type Chunk struct {
	Type   uint16 // ChunkRaw, ChunkFill or ChunkDontCare
	Blocks uint32
	// Offset is where a raw chunk's data starts in the source.
	Offset int64
	// Fill is the repeated value of a fill chunk.
	Fill uint32
}

func (c Chunk) size(blockSize uint32) int64 {
	switch c.Type {
	case ChunkRaw:
		return ChunkHeaderLen + int64(c.Blocks)*int64(blockSize)
	case ChunkFill:
		return ChunkHeaderLen + 4
	default:
		return ChunkHeaderLen
	}
}

// Image is a source image described as chunks.
type Image struct {
	src       io.ReaderAt
	srcSize   int64
	blockSize uint32
	blocks    uint32
	chunks    []Chunk
}

// Blocks returns the image size in blocks.
func (im *Image) Blocks() uint32 { return im.blocks }

// Size returns the size of the image once expanded, in bytes.
func (im *Image) Size() int64 { return int64(im.blocks) * int64(im.blockSize) }

// Chunks returns the image's chunks.
func (im *Image) Chunks() []Chunk { return append([]Chunk(nil), im.chunks...) }

// FromRaw scans a raw image of size bytes: blocks that repeat one 32-bit
// value become fill chunks, the rest raw chunks. A trailing partial block is
// raw and padded with zeros when written.
func FromRaw(src io.ReaderAt, size int64) (*Image, error) {
	im := &Image{src: src, srcSize: size, blockSize: BlockSize}
	nblocks := (size + BlockSize - 1) / BlockSize
	if nblocks > 1<<32-1 {
		return nil, fmt.Errorf("image of %d bytes is too large for a sparse image", size)
	}
	im.blocks = uint32(nblocks)
	const batch = 256 // blocks read at once
	buf := make([]byte, batch*BlockSize)
	for first := int64(0); first < nblocks; first += batch {
		n := min(batch, nblocks-first)
		want := min(n*BlockSize, size-first*BlockSize)
		if _, err := src.ReadAt(buf[:want], first*BlockSize); err != nil && !(errors.Is(err, io.EOF)) {
			return nil, fmt.Errorf("read image at %d: %w", first*BlockSize, err)
		}
		for i := int64(0); i < n; i++ {
			blk := buf[i*BlockSize : min((i+1)*BlockSize, want)]
			if v, ok := fillValue(blk); ok {
				im.add(Chunk{Type: ChunkFill, Blocks: 1, Fill: v})
			} else {
				im.add(Chunk{Type: ChunkRaw, Blocks: 1, Offset: (first + i) * BlockSize})
			}
		}
	}
	return im, nil
}

func fillValue(blk []byte) (uint32, bool) {
	if len(blk) != BlockSize {
		return 0, false
	}
	v := binary.LittleEndian.Uint32(blk)
	first := blk[:4]
	for i := 4; i < len(blk); i += 4 {
		if !bytes.Equal(blk[i:i+4], first) {
			return 0, false
		}
	}
	return v, true
}

// add appends c, merging it into the previous chunk when they continue one
// another.
func (im *Image) add(c Chunk) {
	if n := len(im.chunks); n > 0 {
		p := &im.chunks[n-1]
		switch {
		case p.Type != c.Type:
		case c.Type == ChunkRaw && p.Offset+int64(p.Blocks)*int64(im.blockSize) == c.Offset,
			c.Type == ChunkFill && p.Fill == c.Fill,
			c.Type == ChunkDontCare:
			p.Blocks += c.Blocks
			return
		}
	}
	im.chunks = append(im.chunks, c)
}

// FromSparse reads the chunk list of a sparse image; raw data stays in src.
// CRC32 chunks are checked for placement only and dropped.
func FromSparse(src io.ReaderAt, size int64) (*Image, error) {
	var hb [HeaderSize]byte
	if _, err := src.ReadAt(hb[:], 0); err != nil {
		return nil, fmt.Errorf("%w: read header: %v", ErrFormat, err)
	}
	h, hdrLen, chunkHdrLen, err := parseHeader(hb[:])
	if err != nil {
		return nil, err
	}
	im := &Image{src: src, srcSize: size, blockSize: h.BlockSize, blocks: h.TotalBlocks}
	off := int64(hdrLen)
	var blocks uint64
	for i := uint32(0); i < h.TotalChunks; i++ {
		var cb [ChunkHeaderLen]byte
		if _, err := src.ReadAt(cb[:], off); err != nil {
			return nil, fmt.Errorf("%w: chunk %d header: %v", ErrFormat, i, err)
		}
		typ := binary.LittleEndian.Uint16(cb[0:])
		nblk := binary.LittleEndian.Uint32(cb[4:])
		total := int64(binary.LittleEndian.Uint32(cb[8:]))
		data := off + int64(chunkHdrLen)
		switch typ {
		case ChunkRaw:
			if total != int64(chunkHdrLen)+int64(nblk)*int64(h.BlockSize) {
				return nil, fmt.Errorf("%w: raw chunk %d: size %d for %d blocks", ErrFormat, i, total, nblk)
			}
			im.add(Chunk{Type: ChunkRaw, Blocks: nblk, Offset: data})
		case ChunkFill:
			var fb [4]byte
			if _, err := src.ReadAt(fb[:], data); err != nil {
				return nil, fmt.Errorf("%w: fill chunk %d: %v", ErrFormat, i, err)
			}
			im.add(Chunk{Type: ChunkFill, Blocks: nblk, Fill: binary.LittleEndian.Uint32(fb[:])})
		case ChunkDontCare:
			im.add(Chunk{Type: ChunkDontCare, Blocks: nblk})
		case ChunkCRC32:
			nblk = 0
		default:
			return nil, fmt.Errorf("%w: chunk %d has unknown type %#x", ErrFormat, i, typ)
		}
		blocks += uint64(nblk)
		off += total
	}
	if blocks != uint64(h.TotalBlocks) {
		return nil, fmt.Errorf("%w: chunks cover %d blocks, header says %d", ErrFormat, blocks, h.TotalBlocks)
	}
	return im, nil
}

func parseHeader(b []byte) (h Header, hdrLen, chunkHdrLen uint16, err error) {
	if binary.LittleEndian.Uint32(b[0:]) != Magic {
		return h, 0, 0, fmt.Errorf("%w: bad magic", ErrFormat)
	}
	if major := binary.LittleEndian.Uint16(b[4:]); major != 1 {
		return h, 0, 0, fmt.Errorf("%w: version %d", ErrFormat, major)
	}
	hdrLen = binary.LittleEndian.Uint16(b[8:])
	chunkHdrLen = binary.LittleEndian.Uint16(b[10:])
	h.BlockSize = binary.LittleEndian.Uint32(b[12:])
	h.TotalBlocks = binary.LittleEndian.Uint32(b[16:])
	h.TotalChunks = binary.LittleEndian.Uint32(b[20:])
	if hdrLen < HeaderSize || chunkHdrLen < ChunkHeaderLen || h.BlockSize == 0 || h.BlockSize%4 != 0 {
		return h, 0, 0, fmt.Errorf("%w: header sizes %d/%d, block size %d", ErrFormat, hdrLen, chunkHdrLen, h.BlockSize)
	}
	return h, hdrLen, chunkHdrLen, nil
}

// Piece is one sparse file of a split image.
type Piece struct {
	im     *Image
	chunks []Chunk
}

// Size returns the piece's size in bytes, the length of its download.
func (p Piece) Size() int64 {
	n := int64(HeaderSize)
	for _, c := range p.chunks {
		n += c.size(p.im.blockSize)
	}
	return n
}

// Chunks returns the piece's chunks, don't-care padding included.
func (p Piece) Chunks() []Chunk { return append([]Chunk(nil), p.chunks...) }

// WriteTo writes the piece as a sparse file, reading raw data from the
// source image as it goes.
func (p Piece) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	var hb [HeaderSize]byte
	binary.LittleEndian.PutUint32(hb[0:], Magic)
	binary.LittleEndian.PutUint16(hb[4:], 1)
	binary.LittleEndian.PutUint16(hb[6:], 0)
	binary.LittleEndian.PutUint16(hb[8:], HeaderSize)
	binary.LittleEndian.PutUint16(hb[10:], ChunkHeaderLen)
	binary.LittleEndian.PutUint32(hb[12:], p.im.blockSize)
	binary.LittleEndian.PutUint32(hb[16:], p.im.blocks)
	binary.LittleEndian.PutUint32(hb[20:], uint32(len(p.chunks)))
	if _, err := cw.Write(hb[:]); err != nil {
		return cw.n, err
	}
	buf := make([]byte, 1<<20)
	for _, c := range p.chunks {
		var cb [ChunkHeaderLen]byte
		binary.LittleEndian.PutUint16(cb[0:], c.Type)
		binary.LittleEndian.PutUint32(cb[4:], c.Blocks)
		binary.LittleEndian.PutUint32(cb[8:], uint32(c.size(p.im.blockSize)))
		if _, err := cw.Write(cb[:]); err != nil {
			return cw.n, err
		}
		switch c.Type {
		case ChunkFill:
			var fb [4]byte
			binary.LittleEndian.PutUint32(fb[:], c.Fill)
			if _, err := cw.Write(fb[:]); err != nil {
				return cw.n, err
			}
		case ChunkRaw:
			if err := p.copyRaw(cw, c, buf); err != nil {
				return cw.n, err
			}
		}
	}
	return cw.n, nil
}

// copyRaw writes a raw chunk's data, zero-padding past the source's end.
func (p Piece) copyRaw(w io.Writer, c Chunk, buf []byte) error {
	remaining := int64(c.Blocks) * int64(p.im.blockSize)
	off := c.Offset
	for remaining > 0 {
		n := min(int64(len(buf)), remaining)
		b := buf[:n]
		avail := max(0, min(n, p.im.srcSize-off))
		if avail > 0 {
			if _, err := p.im.src.ReadAt(b[:avail], off); err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read image at %d: %w", off, err)
			}
		}
		clear(b[avail:])
		if _, err := w.Write(b); err != nil {
			return err
		}
		off += n
		remaining -= n
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Split packs the image into pieces of at most maxSize bytes each. Every
// piece covers all blocks: what it does not carry is don't-care.
func (im *Image) Split(maxSize int64) ([]Piece, error) {
	// Room for the header, a leading and a trailing don't-care chunk.
	overhead := int64(HeaderSize + 2*ChunkHeaderLen)
	if maxSize < overhead+ChunkHeaderLen+int64(im.blockSize) {
		return nil, fmt.Errorf("max download size %d is too small for a %d-byte block", maxSize, im.blockSize)
	}
	var pieces []Piece
	var cur []Chunk
	carries := false // cur holds raw or fill data
	used := overhead
	var start, pos uint32 // first block of cur, next block to place
	flush := func() {
		var chunks []Chunk
		if start > 0 {
			chunks = append(chunks, Chunk{Type: ChunkDontCare, Blocks: start})
		}
		chunks = append(chunks, cur...)
		if pos < im.blocks {
			chunks = append(chunks, Chunk{Type: ChunkDontCare, Blocks: im.blocks - pos})
		}
		pieces = append(pieces, Piece{im: im, chunks: chunks})
		cur, used, start, carries = nil, overhead, pos, false
	}
	for _, c := range im.chunks {
		for c.Blocks > 0 {
			if c.Type == ChunkDontCare {
				// Free to carry: it only moves the position.
				cur = append(cur, c)
				used += ChunkHeaderLen
				pos += c.Blocks
				break
			}
			room := maxSize - used
			if c.size(im.blockSize) <= room {
				cur = append(cur, c)
				carries = true
				used += c.size(im.blockSize)
				pos += c.Blocks
				break
			}
			if c.Type == ChunkRaw && room >= ChunkHeaderLen+int64(im.blockSize) {
				n := uint32((room - ChunkHeaderLen) / int64(im.blockSize))
				cur = append(cur, Chunk{Type: ChunkRaw, Blocks: n, Offset: c.Offset})
				carries = true
				pos += n
				c.Blocks -= n
				c.Offset += int64(n) * int64(im.blockSize)
			}
			flush()
		}
	}
	if carries || len(pieces) == 0 {
		flush()
	}
	return pieces, nil
}

// Expand reads one sparse image from r and writes its blocks into dst,
// leaving don't-care blocks untouched. It returns the image's expanded size.
// limit, when positive, is the partition size the image must fit in.
func Expand(dst io.WriterAt, r io.Reader, limit int64) (int64, error) {
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return 0, fmt.Errorf("%w: read header: %v", ErrFormat, err)
	}
	h, hdrLen, chunkHdrLen, err := parseHeader(hb[:])
	if err != nil {
		return 0, err
	}
	if _, err := io.CopyN(io.Discard, r, int64(hdrLen)-HeaderSize); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	bs := int64(h.BlockSize)
	total := int64(h.TotalBlocks) * bs
	if limit > 0 && total > limit {
		return 0, fmt.Errorf("sparse image of %d bytes does not fit a partition of %d bytes", total, limit)
	}
	var blk int64
	buf := make([]byte, 1<<20)
	for i := uint32(0); i < h.TotalChunks; i++ {
		cb := make([]byte, chunkHdrLen)
		if _, err := io.ReadFull(r, cb); err != nil {
			return 0, fmt.Errorf("%w: chunk %d header: %v", ErrFormat, i, err)
		}
		typ := binary.LittleEndian.Uint16(cb[0:])
		nblk := int64(binary.LittleEndian.Uint32(cb[4:]))
		totalSz := int64(binary.LittleEndian.Uint32(cb[8:]))
		dataLen := totalSz - int64(chunkHdrLen)
		if typ != ChunkCRC32 && (blk+nblk)*bs > total {
			return 0, fmt.Errorf("%w: chunk %d runs past the image end", ErrFormat, i)
		}
		switch typ {
		case ChunkRaw:
			if dataLen != nblk*bs {
				return 0, fmt.Errorf("%w: raw chunk %d: %d data bytes for %d blocks", ErrFormat, i, dataLen, nblk)
			}
			off := blk * bs
			for left := dataLen; left > 0; {
				n := min(left, int64(len(buf)))
				if _, err := io.ReadFull(r, buf[:n]); err != nil {
					return 0, fmt.Errorf("%w: raw chunk %d data: %v", ErrFormat, i, err)
				}
				if _, err := dst.WriteAt(buf[:n], off); err != nil {
					return 0, err
				}
				off += n
				left -= n
			}
		case ChunkFill:
			if dataLen != 4 {
				return 0, fmt.Errorf("%w: fill chunk %d: %d data bytes", ErrFormat, i, dataLen)
			}
			var fb [4]byte
			if _, err := io.ReadFull(r, fb[:]); err != nil {
				return 0, fmt.Errorf("%w: fill chunk %d: %v", ErrFormat, i, err)
			}
			for j := 0; j < len(buf); j += 4 {
				copy(buf[j:], fb[:])
			}
			off := blk * bs
			for left := nblk * bs; left > 0; {
				n := min(left, int64(len(buf)))
				if _, err := dst.WriteAt(buf[:n], off); err != nil {
					return 0, err
				}
				off += n
				left -= n
			}
		case ChunkDontCare:
			if dataLen != 0 {
				return 0, fmt.Errorf("%w: don't-care chunk %d carries %d bytes", ErrFormat, i, dataLen)
			}
		case ChunkCRC32:
			if _, err := io.CopyN(io.Discard, r, dataLen); err != nil {
				return 0, fmt.Errorf("%w: crc chunk %d: %v", ErrFormat, i, err)
			}
			nblk = 0
		default:
			return 0, fmt.Errorf("%w: chunk %d has unknown type %#x", ErrFormat, i, typ)
		}
		blk += nblk
	}
	if blk != int64(h.TotalBlocks) {
		return 0, fmt.Errorf("%w: chunks cover %d blocks, header says %d", ErrFormat, blk, h.TotalBlocks)
	}
	return total, nil
}
