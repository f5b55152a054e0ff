package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Readings are the phone's measured state at one moment.
type Readings struct {
	CPUs int
	// Memory, in bytes: MemTotal and MemAvailable of /proc/meminfo.
	MemTotal, MemAvailable uint64
	// Disk, in bytes, of the filesystem holding the agent's directory.
	DiskTotal, DiskFree uint64
	// Tasks is the number of threads on the system; TaskMax the kernel's
	// limit (pid_max).
	Tasks, TaskMax int
	// Battery is nil on a phone that reports none.
	Battery *Battery
	// TempC is the hottest thermal zone in °C; HasTemp false when no zone
	// could be read.
	TempC   float64
	HasTemp bool
}

// Battery is the phone's battery and charger.
type Battery struct {
	Level int // percent
	// Plugged is a charger (AC, USB or wireless) connected.
	Plugged bool
	// Charging is the battery taking charge (not when full or held back
	// by a charge limit).
	Charging bool
}

// Sensors read the phone's state from the kernel: /proc, the filesystem of
// Dir, and the power-supply and thermal classes of sysfs. On stock Android,
// where an app user cannot read the power-supply class, the battery comes
// from `dumpsys battery`.
type Sensors struct {
	Dir string // the agent's directory: its filesystem's space is the node's
	// Proc and Sys are where procfs and sysfs are ("/proc", "/sys" when
	// empty); tests point them at trees they change.
	Proc, Sys string
	// Dumpsys is Android's dumpsys binary; empty looks it up on PATH and
	// does without when it is absent.
	Dumpsys string
}

func (s Sensors) proc(p string) string { return filepath.Join(or(s.Proc, "/proc"), p) }
func (s Sensors) sys(p string) string  { return filepath.Join(or(s.Sys, "/sys"), p) }

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Read measures the phone. Memory and disk are required; the rest is
// left at zero when the phone does not expose it.
func (s Sensors) Read(ctx context.Context) (Readings, error) {
	r := Readings{CPUs: runtime.NumCPU()}
	if err := s.memory(&r); err != nil {
		return r, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(or(s.Dir, "/"), &st); err != nil {
		return r, fmt.Errorf("read free space of %s: %w", s.Dir, err)
	}
	r.DiskTotal = st.Blocks * uint64(st.Bsize)
	r.DiskFree = st.Bavail * uint64(st.Bsize)
	r.Tasks, r.TaskMax = s.tasks()
	r.Battery = s.sysBattery()
	if r.Battery == nil {
		r.Battery = s.dumpsysBattery(ctx)
	}
	r.TempC, r.HasTemp = s.temperature()
	return r, nil
}

func (s Sensors) memory(r *Readings) error {
	b, err := os.ReadFile(s.proc("meminfo"))
	if err != nil {
		return fmt.Errorf("read memory: %w", err)
	}
	var total, avail bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "MemTotal:":
			r.MemTotal, total = v*1024, true
		case "MemAvailable:":
			r.MemAvailable, avail = v*1024, true
		}
	}
	if !total || !avail {
		return fmt.Errorf("read memory: %s lacks MemTotal or MemAvailable", s.proc("meminfo"))
	}
	return nil
}

// tasks reads the thread count from /proc/loadavg ("0.1 0.2 0.3 2/345 678":
// 345 scheduling entities), which hidepid does not hide.
func (s Sensors) tasks() (n, max int) {
	if b, err := os.ReadFile(s.proc("loadavg")); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 4 {
			if _, after, ok := strings.Cut(f[3], "/"); ok {
				n, _ = strconv.Atoi(after)
			}
		}
	}
	if b, err := os.ReadFile(s.proc("sys/kernel/pid_max")); err == nil {
		max, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	return n, max
}

func readTrim(p string) (string, bool) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// sysBattery reads the power-supply class: the first supply of type
// Battery with a capacity, and whether any charger supply is online.
func (s Sensors) sysBattery() *Battery {
	dirs, _ := filepath.Glob(s.sys("class/power_supply/*"))
	var b *Battery
	plugged := false
	for _, d := range dirs {
		typ, _ := readTrim(filepath.Join(d, "type"))
		switch typ {
		case "Battery":
			if b != nil {
				continue
			}
			c, ok := readTrim(filepath.Join(d, "capacity"))
			if !ok {
				continue
			}
			level, err := strconv.Atoi(c)
			if err != nil {
				continue
			}
			status, _ := readTrim(filepath.Join(d, "status"))
			b = &Battery{Level: level, Charging: status == "Charging"}
			if status == "Charging" || status == "Full" {
				plugged = true
			}
		case "Mains", "USB", "Wireless", "USB_PD", "USB_C", "USB_DCP", "USB_CDP":
			if on, _ := readTrim(filepath.Join(d, "online")); on == "1" {
				plugged = true
			}
		}
	}
	if b != nil {
		b.Plugged = plugged
	}
	return b
}

// dumpsysBattery asks Android's battery service.
func (s Sensors) dumpsysBattery(ctx context.Context) *Battery {
	bin := s.Dumpsys
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("dumpsys"); err != nil {
			return nil
		}
	}
	out, err := exec.CommandContext(ctx, bin, "battery").Output()
	if err != nil {
		return nil
	}
	return ParseDumpsysBattery(out)
}

// ParseDumpsysBattery reads `dumpsys battery`: "level: 85", "AC powered:
// true", "status: 2" (2 charging, 5 full).
func ParseDumpsysBattery(out []byte) *Battery {
	var b Battery
	haveLevel := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "level":
			if n, err := strconv.Atoi(v); err == nil {
				b.Level, haveLevel = n, true
			}
		case "AC powered", "USB powered", "Wireless powered", "Dock powered":
			if v == "true" {
				b.Plugged = true
			}
		case "status":
			b.Charging = v == "2"
		case "present":
			if v == "false" {
				return nil
			}
		}
	}
	if !haveLevel {
		return nil
	}
	return &b
}

// temperature is the hottest thermal zone that reads a plausible value
// (zones report millidegrees; broken ones read negative or absurd).
func (s Sensors) temperature() (float64, bool) {
	zones, _ := filepath.Glob(s.sys("class/thermal/thermal_zone*"))
	best, ok := 0.0, false
	for _, z := range zones {
		v, found := readTrim(filepath.Join(z, "temp"))
		if !found {
			continue
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			continue
		}
		c := n / 1000
		if c <= -40 || c >= 150 {
			continue
		}
		if !ok || c > best {
			best, ok = c, true
		}
	}
	return best, ok
}
