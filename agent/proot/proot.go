// Package proot is the agent's wrapper around proot: it runs a container's
// processes in a root filesystem without root, with the pod's volumes
// bound in, and stops them (their whole process group) when asked.
package proot

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Proot is a proot program and what every run of it shares.
type Proot struct {
	// Path of the proot binary.
	Path string
	// TmpDir is proot's own scratch directory (PROOT_TMP_DIR): Android has
	// no writable /tmp for the shell user.
	TmpDir string
	// Link2Symlink emulates hard links with symbolic links, for
	// filesystems (Android's /data) that refuse link(2) to the shell user;
	// KillOnExit kills what a container's first process leaves behind when
	// it exits. Both need a proot that has them (Termux's); Debian's 5.1
	// has neither.
	Link2Symlink, KillOnExit bool
	// Env is added to proot's own environment (PROOT_NO_SECCOMP=1 for
	// kernels whose seccomp filtering proot mishandles).
	Env []string
}

// Bind makes Host visible at Guest inside the root.
type Bind struct {
	Host, Guest string
}

// Spec is one process to run.
type Spec struct {
	RootFS  string
	WorkDir string // inside the root; default /
	Argv    []string
	Env     []string
	Binds   []Bind
	// UID and GID the process sees (proot fakes them); 0 runs as root.
	UID, GID int
}

// HostBinds are the phone's directories every container sees: /proc,
// /dev and /sys, as a runtime gives them.
var HostBinds = []Bind{{"/proc", "/proc"}, {"/dev", "/dev"}, {"/sys", "/sys"}}

// Args returns proot's command line for s.
func (p *Proot) Args(s Spec) ([]string, error) {
	if len(s.Argv) == 0 {
		return nil, fmt.Errorf("nothing to run in %s: the container has no command and its image no entrypoint", s.RootFS)
	}
	wd := s.WorkDir
	if wd == "" {
		wd = "/"
	}
	// -v -1: proot's own notices would land in the container's output.
	args := []string{p.Path, "-v", "-1", "-r", s.RootFS, "-w", wd}
	if p.KillOnExit {
		args = append(args, "--kill-on-exit")
	}
	if s.UID == 0 && s.GID == 0 {
		args = append(args, "-0")
	} else {
		args = append(args, "-i", fmt.Sprintf("%d:%d", s.UID, s.GID))
	}
	if p.Link2Symlink {
		args = append(args, "--link2symlink")
	}
	binds := append(append([]Bind{}, HostBinds...), s.Binds...)
	// Longer guest paths after their parents, so a file bind inside a
	// bound directory wins.
	sort.SliceStable(binds, func(i, j int) bool { return len(binds[i].Guest) < len(binds[j].Guest) })
	for _, b := range binds {
		if _, err := os.Stat(b.Host); err != nil {
			continue // a phone without /sys access, say
		}
		args = append(args, "-b", b.Host+":"+b.Guest)
	}
	return append(args, s.Argv...), nil
}

// Command returns the process for s, in a process group of its own, with
// the container's environment (proot's own settings added).
func (p *Proot) Command(s Spec) (*exec.Cmd, error) {
	args, err := p.Args(s)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	env := append([]string{}, s.Env...)
	if p.TmpDir != "" {
		env = append(env, "PROOT_TMP_DIR="+p.TmpDir)
	}
	cmd.Env = append(env, p.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// Signal sends sig to a process group started by Command.
func Signal(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}

// SignalFirst sends sig to the container's first process, proot's first
// child (as a runtime signals a container's PID 1), or to the whole group
// when it is gone.
func SignalFirst(pid int, sig syscall.Signal) error {
	if c := firstChild(pid); c > 0 {
		return syscall.Kill(c, sig)
	}
	return Signal(pid, sig)
}

// ExitCode is a container's exit status from proot's: proot exits 255
// when its first process dies of a signal, which is then the last signal
// sent (128+signal, as runtimes report it).
func ExitCode(prootExit int, sent syscall.Signal) int {
	if prootExit == 255 && sent != 0 {
		return 128 + int(sent)
	}
	return prootExit
}

func firstChild(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// Alive reports whether any process of the group pgid still runs; the
// group outlives its leader when the leader's children survive it.
func Alive(pgid int) bool {
	return len(Group(pgid)) > 0
}

// Group lists the processes of process group pgid, from /proc.
func Group(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses and may
		// hold spaces: state ppid pgrp ...
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			out = append(out, pid)
		}
	}
	return out
}
