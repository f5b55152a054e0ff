package sparse

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/phonefarm/phonefarm/internal/testenv"
)

// testImage builds an image with raw data, zero and 0xAB fill blocks and a
// trailing partial block.
func testImage(t *testing.T, blocks int, partial int) []byte {
	t.Helper()
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	img := make([]byte, blocks*BlockSize+partial)
	for b := 0; b < blocks; b++ {
		blk := img[b*BlockSize : (b+1)*BlockSize]
		switch b % 7 {
		case 0, 1, 2:
			for i := range blk {
				blk[i] = byte(rng.Uint32())
			}
		case 3:
			for i := range blk {
				blk[i] = 0xAB
			}
		default: // zeros
		}
	}
	for i := blocks * BlockSize; i < len(img); i++ {
		img[i] = byte(i)
	}
	return img
}

// memAt is a growable io.WriterAt standing in for a partition.
type memAt struct{ b []byte }

func (m *memAt) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	return copy(m.b[off:], p), nil
}

func TestSplitExpand(t *testing.T) {
	tests := []struct {
		name       string
		blocks     int
		partial    int
		maxSize    int64
		wantPieces int
	}{
		{name: "fits one piece", blocks: 70, partial: 0, maxSize: 1 << 20, wantPieces: 1},
		{name: "split in blocks", blocks: 70, partial: 100, maxSize: 15 * BlockSize, wantPieces: 3},
		{name: "smallest pieces", blocks: 30, partial: 0, maxSize: HeaderSize + 3*ChunkHeaderLen + BlockSize, wantPieces: 13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := testImage(t, tt.blocks, tt.partial)
			im, err := FromRaw(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			pieces, err := im.Split(tt.maxSize)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(pieces); got < tt.wantPieces {
				t.Errorf("got %d pieces, want at least %d", got, tt.wantPieces)
			}
			part := &memAt{}
			for i, p := range pieces {
				var buf bytes.Buffer
				n, err := p.WriteTo(&buf)
				if err != nil {
					t.Fatal(err)
				}
				if n != p.Size() || int64(buf.Len()) != n {
					t.Errorf("piece %d: got %d bytes written (%d buffered), want Size() %d", i, n, buf.Len(), p.Size())
				}
				if n > tt.maxSize {
					t.Errorf("piece %d: got %d bytes, want at most %d", i, n, tt.maxSize)
				}
				size, err := Expand(part, &buf, 0)
				if err != nil {
					t.Fatalf("piece %d: %v", i, err)
				}
				if want := im.Size(); size != want {
					t.Errorf("piece %d: got expanded size %d, want %d", i, size, want)
				}
			}
			want := append(append([]byte(nil), img...), make([]byte, int(im.Size())-len(img))...)
			if !bytes.Equal(part.b, want) {
				t.Errorf("expanded pieces differ from the image (got %d bytes, want %d)", len(part.b), len(want))
			}
		})
	}
}

func TestFromSparseRoundTrip(t *testing.T) {
	img := testImage(t, 50, 0)
	im, err := FromRaw(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	pieces, err := im.Split(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	var sp bytes.Buffer
	if _, err := pieces[0].WriteTo(&sp); err != nil {
		t.Fatal(err)
	}
	if !IsSparse(sp.Bytes()) {
		t.Fatal("got no sparse magic, want it")
	}
	back, err := FromSparse(bytes.NewReader(sp.Bytes()), int64(sp.Len()))
	if err != nil {
		t.Fatal(err)
	}
	typesOf := func(cs []Chunk) []uint16 {
		var out []uint16
		for _, c := range cs {
			out = append(out, c.Type)
		}
		return out
	}
	if diff := cmp.Diff(typesOf(im.Chunks()), typesOf(back.Chunks())); diff != "" {
		t.Errorf("chunk types after a round trip (-want +got):\n%s", diff)
	}
	// Resplitting the sparse input gives the same partition bytes.
	small, err := back.Split(20 * BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	part := &memAt{}
	for _, p := range small {
		var buf bytes.Buffer
		if _, err := p.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		if _, err := Expand(part, &buf, 0); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(part.b, img) {
		t.Error("resplit sparse image differs from the raw image")
	}
}

func TestExpandRejects(t *testing.T) {
	hdr := func(blocks, chunks uint32) []byte {
		b := make([]byte, HeaderSize)
		binary.LittleEndian.PutUint32(b[0:], Magic)
		binary.LittleEndian.PutUint16(b[4:], 1)
		binary.LittleEndian.PutUint16(b[8:], HeaderSize)
		binary.LittleEndian.PutUint16(b[10:], ChunkHeaderLen)
		binary.LittleEndian.PutUint32(b[12:], BlockSize)
		binary.LittleEndian.PutUint32(b[16:], blocks)
		binary.LittleEndian.PutUint32(b[20:], chunks)
		return b
	}
	chunk := func(typ uint16, blocks, total uint32) []byte {
		b := make([]byte, ChunkHeaderLen)
		binary.LittleEndian.PutUint16(b[0:], typ)
		binary.LittleEndian.PutUint32(b[4:], blocks)
		binary.LittleEndian.PutUint32(b[8:], total)
		return b
	}
	tests := []struct {
		name  string
		in    []byte
		limit int64
	}{
		{name: "bad magic", in: make([]byte, HeaderSize)},
		{name: "short chunks", in: append(hdr(4, 1), chunk(ChunkDontCare, 2, ChunkHeaderLen)...)},
		{name: "past end", in: append(hdr(1, 1), chunk(ChunkDontCare, 2, ChunkHeaderLen)...)},
		{name: "too big for partition", in: append(hdr(4, 1), chunk(ChunkDontCare, 4, ChunkHeaderLen)...), limit: BlockSize},
		{name: "unknown chunk", in: append(hdr(1, 1), chunk(0x1234, 1, ChunkHeaderLen)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Expand(&memAt{}, bytes.NewReader(tt.in), tt.limit); err == nil {
				t.Error("got no error, want one")
			}
		})
	}
}

// TestSimg2img checks the pieces against libsparse's own simg2img, when
// Debian android-sdk-libsparse-utils.
func TestSimg2img(t *testing.T) {
	tool := testenv.RequireTool(t, "simg2img")
	img := testImage(t, 40, 0)
	im, err := FromRaw(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	pieces, err := im.Split(16 * BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var args []string
	for i, p := range pieces {
		var buf bytes.Buffer
		if _, err := p.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, "piece"+string(rune('a'+i)))
		if err := os.WriteFile(f, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, f)
	}
	// simg2img writes all pieces into one output in turn, like a bootloader.
	out := filepath.Join(dir, "out.img")
	cmd := exec.Command(tool, append(args, out)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("simg2img: %v: %s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Errorf("simg2img output differs from the image (got %d bytes, want %d)", len(got), len(img))
	}
}
