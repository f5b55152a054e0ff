package adbemu

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// syncChunk is the largest DATA payload of the sync protocol.
const syncChunk = 64 * 1024

// maxSyncPath is adb's limit on a path in a sync request.
const maxSyncPath = 1024

// runSync serves the file sync protocol: requests of [id][uint32 LE
// length][data] until QUIT or the stream ends.
func (s *stream) runSync() {
	r := bufio.NewReaderSize(s, 128*1024)
	for {
		id, arg, err := readSyncHeader(r)
		if err != nil {
			return
		}
		if arg > maxSyncPath {
			s.syncFail(fmt.Sprintf("path too long: %d bytes", arg))
			return
		}
		buf := make([]byte, arg)
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		p := string(buf)
		s.c.d.log.Debug("sync", "req", id, "path", p)
		switch id {
		case "STAT":
			err = s.syncStat(p)
		case "STA2", "LST2":
			err = s.syncStat2(id, p)
		case "LIST":
			err = s.syncList(p)
		case "RECV":
			err = s.syncRecv(p)
		case "SEND":
			err = s.syncSend(r, p)
		case "QUIT":
			return
		default:
			s.syncFail(fmt.Sprintf("unknown sync request %q", id))
			return
		}
		if err != nil {
			s.c.d.log.Debug("sync", "req", id, "path", p, "err", err)
			return
		}
	}
}

func readSyncHeader(r io.Reader) (string, uint32, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", 0, err
	}
	return string(hdr[:4]), binary.LittleEndian.Uint32(hdr[4:]), nil
}

func syncHeader(id string, n uint32) []byte {
	b := make([]byte, 8, 8+n)
	copy(b, id)
	binary.LittleEndian.PutUint32(b[4:], n)
	return b
}

func (s *stream) syncFail(msg string) error {
	_, err := s.Write(append(syncHeader("FAIL", uint32(len(msg))), msg...))
	return err
}

// strerror spells an error the way adbd does (C strerror), which is what
// adb clients match on, for example "No such file or directory".
func strerror(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		msg := errno.Error()
		return strings.ToUpper(msg[:1]) + msg[1:]
	}
	return err.Error()
}

func statOf(fi fs.FileInfo) *syscall.Stat_t {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st
	}
	return &syscall.Stat_t{}
}

func (s *stream) syncStat(p string) error {
	b := syncHeader("STAT", 0)[:4]
	var mode, size, mtime uint32
	if fi, err := os.Lstat(p); err == nil {
		st := statOf(fi)
		mode, size, mtime = st.Mode, uint32(st.Size), uint32(st.Mtim.Sec)
	}
	b = binary.LittleEndian.AppendUint32(b, mode)
	b = binary.LittleEndian.AppendUint32(b, size)
	b = binary.LittleEndian.AppendUint32(b, mtime)
	_, err := s.Write(b)
	return err
}

func (s *stream) syncStat2(id, p string) error {
	stat := os.Stat
	if id == "LST2" {
		stat = os.Lstat
	}
	var st syscall.Stat_t
	var errno uint32
	if fi, err := stat(p); err != nil {
		var e syscall.Errno
		if errors.As(err, &e) {
			errno = uint32(e)
		} else {
			errno = uint32(syscall.EIO)
		}
	} else {
		st = *statOf(fi)
	}
	b := []byte(id)
	le := binary.LittleEndian
	b = le.AppendUint32(b, errno)
	b = le.AppendUint64(b, uint64(st.Dev))
	b = le.AppendUint64(b, st.Ino)
	b = le.AppendUint32(b, st.Mode)
	b = le.AppendUint32(b, uint32(st.Nlink))
	b = le.AppendUint32(b, st.Uid)
	b = le.AppendUint32(b, st.Gid)
	b = le.AppendUint64(b, uint64(st.Size))
	b = le.AppendUint64(b, uint64(st.Atim.Sec))
	b = le.AppendUint64(b, uint64(st.Mtim.Sec))
	b = le.AppendUint64(b, uint64(st.Ctim.Sec))
	_, err := s.Write(b)
	return err
}

func (s *stream) syncList(p string) error {
	entries, _ := os.ReadDir(p)
	le := binary.LittleEndian
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		st := statOf(fi)
		b := []byte("DENT")
		b = le.AppendUint32(b, st.Mode)
		b = le.AppendUint32(b, uint32(st.Size))
		b = le.AppendUint32(b, uint32(st.Mtim.Sec))
		b = le.AppendUint32(b, uint32(len(e.Name())))
		b = append(b, e.Name()...)
		if _, err := s.Write(b); err != nil {
			return err
		}
	}
	_, err := s.Write(append([]byte("DONE"), make([]byte, 16)...))
	return err
}

func (s *stream) syncRecv(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return s.syncFail("open failed: " + strerror(err))
	}
	defer f.Close()
	buf := make([]byte, 8+syncChunk)
	for {
		n, rerr := f.Read(buf[8:])
		if n > 0 {
			copy(buf, "DATA")
			binary.LittleEndian.PutUint32(buf[4:], uint32(n))
			if _, err := s.Write(buf[:8+n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return s.syncFail("read failed: " + strerror(rerr))
		}
	}
	_, err = s.Write(syncHeader("DONE", 0))
	return err
}

// syncSend receives a file as adbd does: straight into the target path
// (creating missing parent directories), removing it again if the transfer
// fails. It is the client's business to push to a temporary name when the
// old content must survive a failure.
func (s *stream) syncSend(r io.Reader, spec string) error {
	i := strings.LastIndexByte(spec, ',')
	if i < 0 {
		return s.syncFail("missing mode in SEND " + spec)
	}
	p := spec[:i]
	mode, err := strconv.ParseUint(spec[i+1:], 10, 32)
	if err != nil {
		return s.syncFail("bad mode in SEND " + spec)
	}
	perm := fs.FileMode(mode) & fs.ModePerm

	var f *os.File
	var failure string
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		failure = "secure_mkdirs failed: " + strerror(err)
	} else if f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm); err != nil {
		failure = "couldn't create file: " + strerror(err)
	} else if err := f.Chmod(perm); err != nil {
		failure = "fchmod failed: " + strerror(err)
	} else if o := s.c.d.opts; o.UID != 0 {
		if err := f.Chown(o.UID, o.GID); err != nil {
			failure = "fchown failed: " + strerror(err)
		}
	}
	buf := make([]byte, syncChunk)
	abort := func() {
		if f != nil {
			f.Close()
			os.Remove(p)
			f = nil
		}
	}
	for {
		id, n, err := readSyncHeader(r)
		if err != nil {
			abort()
			return fmt.Errorf("SEND %s: %w", p, err)
		}
		switch id {
		case "DATA":
			if n > syncChunk {
				abort()
				return s.syncFail(fmt.Sprintf("DATA chunk of %d bytes is over %d", n, syncChunk))
			}
			if _, err := io.ReadFull(r, buf[:n]); err != nil {
				abort()
				return fmt.Errorf("SEND %s: %w", p, err)
			}
			if f == nil {
				continue // failed already: drain until DONE, then FAIL
			}
			if _, err := f.Write(buf[:n]); err != nil {
				failure = "write failed: " + strerror(err)
				abort()
			}
		case "DONE":
			if f == nil {
				return s.syncFail(failure)
			}
			if err := f.Close(); err != nil {
				f = nil
				os.Remove(p)
				return s.syncFail("close failed: " + strerror(err))
			}
			mtime := time.Unix(int64(n), 0)
			os.Chtimes(p, mtime, mtime)
			_, err := s.Write(syncHeader("OKAY", 0))
			return err
		default:
			abort()
			return s.syncFail(fmt.Sprintf("unexpected %q during SEND", id))
		}
	}
}
