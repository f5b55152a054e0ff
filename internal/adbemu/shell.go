package adbemu

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
)

// Shell protocol v2 packet ids: [id byte][uint32 LE length][data].
const (
	shellStdin      = 0
	shellStdout     = 1
	shellStderr     = 2
	shellExit       = 3
	shellCloseStdin = 4
	shellWindowSize = 5
)

// shellChunk keeps one shell v2 packet within a 64 KiB WRTE.
const shellChunk = 64*1024 - 5

func (s *stream) writePacket(id byte, data []byte) error {
	pkt := make([]byte, 5+len(data))
	pkt[0] = id
	binary.LittleEndian.PutUint32(pkt[1:], uint32(len(data)))
	copy(pkt[5:], data)
	_, err := s.Write(pkt)
	return err
}

func (s *stream) command(cmdline string) *exec.Cmd {
	var cmd *exec.Cmd
	if cmdline == "" {
		cmd = exec.Command(s.c.d.opts.Shell)
	} else {
		cmd = exec.Command(s.c.d.opts.Shell, "-c", cmdline)
	}
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "PATH="+s.c.d.binDir+":"+os.Getenv("PATH"))
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if o := s.c.d.opts; o.UID != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(o.UID), Gid: uint32(o.GID)}
	}
	return cmd
}

// runShell runs one shell service. With v2 the stream carries shell protocol
// packets (stdin, stdout, stderr and the exit status); without it, the raw
// stream is stdin one way and stdout plus stderr the other, and the exit
// status is lost, as on phones before Android 7.
func (s *stream) runShell(cmdline string, v2 bool) {
	log := s.c.d.log.With("cmd", cmdline)
	cmd := s.command(cmdline)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return
	}
	errR, errW := outR, outW
	if v2 {
		if errR, errW, err = os.Pipe(); err != nil {
			return
		}
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	if err := cmd.Start(); err != nil {
		outW.Close()
		errW.Close()
		if v2 {
			s.writePacket(shellStderr, []byte(err.Error()+"\n"))
			s.writePacket(shellExit, []byte{127})
		} else {
			s.Write([]byte(err.Error() + "\n"))
		}
		return
	}
	outW.Close()
	if v2 {
		errW.Close()
	}
	pid := cmd.Process.Pid
	log.Debug("shell started", "pid", pid, "v2", v2)

	// The server closing the stream (the client hung up or the
	// connection died) kills the whole process group.
	exited := make(chan struct{})
	go func() {
		select {
		case <-s.closed:
			syscall.Kill(-pid, syscall.SIGKILL)
		case <-exited:
		}
	}()

	go func() {
		defer stdin.Close()
		if !v2 {
			io.Copy(stdin, s)
			return
		}
		r := bufio.NewReader(s)
		var hdr [5]byte
		for {
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return
			}
			n := int64(binary.LittleEndian.Uint32(hdr[1:]))
			switch hdr[0] {
			case shellStdin:
				if _, err := io.CopyN(stdin, r, n); err != nil {
					// The command stopped reading; drop the rest.
					io.CopyN(io.Discard, r, n)
				}
			case shellCloseStdin:
				io.CopyN(io.Discard, r, n)
				stdin.Close()
			case shellWindowSize: // raw commands have no terminal
				io.CopyN(io.Discard, r, n)
			default:
				io.CopyN(io.Discard, r, n)
			}
		}
	}()

	var wg sync.WaitGroup
	pump := func(f *os.File, id byte) {
		defer f.Close()
		buf := make([]byte, shellChunk)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				var werr error
				if v2 {
					werr = s.writePacket(id, buf[:n])
				} else {
					_, werr = s.Write(buf[:n])
				}
				if werr != nil {
					io.Copy(io.Discard, f)
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	wg.Go(func() { pump(outR, shellStdout) })
	if v2 {
		wg.Go(func() { pump(errR, shellStderr) })
	}
	wg.Wait()
	err = cmd.Wait()
	close(exited)
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	log.Debug("shell exited", "pid", pid, "status", code)
	if v2 {
		s.writePacket(shellExit, []byte{byte(code)})
	}
}
