package adbemu

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Commands of the adb transport protocol, as the little-endian value of their
// four ASCII letters.
const (
	cmdCNXN = 0x4e584e43
	cmdAUTH = 0x48545541
	cmdOPEN = 0x4e45504f
	cmdOKAY = 0x59414b4f
	cmdCLSE = 0x45534c43
	cmdWRTE = 0x45545257
	cmdSTLS = 0x534c5453
)

// AUTH message types (arg0).
const (
	authToken        = 1
	authSignature    = 2
	authRSAPublicKey = 3
)

const (
	// protocolVersion is A_VERSION with checksums skipped: the peer may
	// send a zero data checksum and we never verify one.
	protocolVersion = 0x01000001
	// maxPayload is the largest WRTE payload the emulator accepts.
	maxPayload = 256 * 1024
	headerSize = 24
)

// message is one adb transport message: a 24-byte header and its payload.
type message struct {
	cmd, arg0, arg1 uint32
	data            []byte
}

func cmdName(cmd uint32) string {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], cmd)
	for _, c := range b {
		if c < 'A' || c > 'Z' {
			return fmt.Sprintf("0x%08x", cmd)
		}
	}
	return string(b[:])
}

func checksum(data []byte) uint32 {
	var sum uint32
	for _, b := range data {
		sum += uint32(b)
	}
	return sum
}

// encode returns the header and payload of m as one buffer, so a message is
// always written with a single Write.
func (m message) encode() []byte {
	buf := make([]byte, headerSize+len(m.data))
	binary.LittleEndian.PutUint32(buf[0:], m.cmd)
	binary.LittleEndian.PutUint32(buf[4:], m.arg0)
	binary.LittleEndian.PutUint32(buf[8:], m.arg1)
	binary.LittleEndian.PutUint32(buf[12:], uint32(len(m.data)))
	binary.LittleEndian.PutUint32(buf[16:], checksum(m.data))
	binary.LittleEndian.PutUint32(buf[20:], m.cmd^0xffffffff)
	copy(buf[headerSize:], m.data)
	return buf
}

// readMessage reads one message, checking the magic and the payload size.
func readMessage(r io.Reader) (message, error) {
	var hdr [headerSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return message{}, err
	}
	m := message{
		cmd:  binary.LittleEndian.Uint32(hdr[0:]),
		arg0: binary.LittleEndian.Uint32(hdr[4:]),
		arg1: binary.LittleEndian.Uint32(hdr[8:]),
	}
	n := binary.LittleEndian.Uint32(hdr[12:])
	if magic := binary.LittleEndian.Uint32(hdr[20:]); magic != m.cmd^0xffffffff {
		return message{}, fmt.Errorf("bad magic 0x%08x for command %s", magic, cmdName(m.cmd))
	}
	// The host's CNXN arrives before it knows our limit; its own maximum
	// is 1 MiB.
	if n > 1024*1024 {
		return message{}, fmt.Errorf("%s payload of %d bytes is over the 1 MiB limit", cmdName(m.cmd), n)
	}
	m.data = make([]byte, n)
	if _, err := io.ReadFull(r, m.data); err != nil {
		return message{}, fmt.Errorf("read %s payload: %w", cmdName(m.cmd), err)
	}
	return m, nil
}
