package pods

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
)

// A container's output is kept as the CRI keeps it, one line per record:
// "TIME STREAM F|P TEXT", F closing a line and P a part of a longer one.

// logWriter appends a run's output to its log file.
type logWriter struct {
	mu   sync.Mutex
	f    *os.File
	now  func() time.Time
	part map[string][]byte // an unfinished line per stream
}

func newLogWriter(file string, now func() time.Time) (*logWriter, error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &logWriter{f: f, now: now, part: map[string][]byte{}}, nil
}

func (w *logWriter) stream(name string) io.Writer {
	return writerFunc(func(p []byte) (int, error) { return w.write(name, p) })
}

func (w *logWriter) write(stream string, p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	buf := append(w.part[stream], p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		w.record(stream, "F", buf[:i])
		buf = buf[i+1:]
	}
	// A line longer than 16 kB is written in parts, as the CRI does.
	for len(buf) > 16<<10 {
		w.record(stream, "P", buf[:16<<10])
		buf = buf[16<<10:]
	}
	w.part[stream] = append([]byte(nil), buf...)
	return len(p), nil
}

func (w *logWriter) record(stream, tag string, line []byte) {
	fmt.Fprintf(w.f, "%s %s %s %s\n", w.now().UTC().Format(time.RFC3339Nano), stream, tag, line)
}

// Close writes what is left of unfinished lines.
func (w *logWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for s, b := range w.part {
		if len(b) > 0 {
			w.record(s, "P", b)
		}
	}
	return w.f.Close()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// logRecord is one parsed log line.
type logRecord struct {
	t      time.Time
	stream string
	full   bool
	text   []byte
}

func parseRecord(line []byte) (logRecord, bool) {
	f := bytes.SplitN(line, []byte(" "), 4)
	if len(f) < 3 {
		return logRecord{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(f[0]))
	if err != nil {
		return logRecord{}, false
	}
	r := logRecord{t: t, stream: string(f[1]), full: string(f[2]) == "F"}
	if len(f) == 4 {
		r.text = f[3]
	}
	return r, true
}

// logFiles lists a container's log files, oldest run first.
func logFiles(cdir string) []string {
	files, _ := filepath.Glob(filepath.Join(cdir, "logs", "*.log"))
	sort.Slice(files, func(i, j int) bool { return runOf(files[i]) < runOf(files[j]) })
	return files
}

func runOf(file string) int {
	n, _ := strconv.Atoi(strings.TrimSuffix(filepath.Base(file), ".log"))
	return n
}

// lastLogLines is the end of a container's latest log, for a
// FallbackToLogsOnError termination message.
func lastLogLines(cdir string, lines, limit int) []byte {
	files := logFiles(cdir)
	if len(files) == 0 {
		return nil
	}
	recs := readRecords(files[len(files)-1])
	if len(recs) > lines {
		recs = recs[len(recs)-lines:]
	}
	var b bytes.Buffer
	for _, r := range recs {
		b.Write(r.text)
		if r.full {
			b.WriteByte('\n')
		}
	}
	out := b.Bytes()
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

func readRecords(file string) []logRecord {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []logRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if r, ok := parseRecord(sc.Bytes()); ok {
			out = append(out, r)
		}
	}
	return out
}

// GetContainerLogs serves a container's log with the kubelet's options:
// tail, since, timestamps, a byte limit, the previous run, and follow
// until the run ends.
func (m *Manager) GetContainerLogs(ctx context.Context, namespace, podName, containerName string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	p := m.get(namespace, podName)
	if p == nil {
		return nil, errdefs.NotFoundf("pod %s/%s is not on this node", namespace, podName)
	}
	c := p.container(containerName)
	if c == nil {
		return nil, errdefs.NotFoundf("container %s is not in pod %s/%s", containerName, namespace, podName)
	}
	files := logFiles(c.dir)
	if opts.Previous {
		if len(files) < 2 {
			return nil, errdefs.NotFoundf("container %s in pod %s/%s has no previous run", containerName, namespace, podName)
		}
		files = files[len(files)-2 : len(files)-1]
	} else if len(files) > 0 {
		files = files[len(files)-1:]
	}
	if len(files) == 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	file := files[0]
	var since time.Time
	switch {
	case !opts.SinceTime.IsZero():
		since = opts.SinceTime
	case opts.SinceSeconds > 0:
		since = m.now().Add(-time.Duration(opts.SinceSeconds) * time.Second)
	}
	format := func(r logRecord) []byte {
		var b []byte
		if opts.Timestamps {
			b = append(b, r.t.UTC().Format(time.RFC3339Nano)+" "...)
		}
		b = append(b, r.text...)
		if r.full {
			b = append(b, '\n')
		}
		return b
	}
	recs := readRecords(file)
	var head []logRecord
	for _, r := range recs {
		if !since.IsZero() && r.t.Before(since) {
			continue
		}
		head = append(head, r)
	}
	if opts.Tail > 0 && len(head) > opts.Tail {
		head = head[len(head)-opts.Tail:]
	}
	var buf bytes.Buffer
	for _, r := range head {
		buf.Write(format(r))
	}
	pr, pw := io.Pipe()
	limit := int64(opts.LimitBytes)
	go func() {
		w := io.Writer(pw)
		if limit > 0 {
			w = &limitWriter{w: pw, left: limit}
		}
		if _, err := w.Write(buf.Bytes()); err != nil || !opts.Follow || opts.Previous {
			pw.CloseWithError(nilIfLimit(err))
			return
		}
		pw.CloseWithError(nilIfLimit(c.follow(ctx, file, int64(len(recs)), w, format)))
	}()
	return pr, nil
}

// follow streams records appended to a run's log after the first skip
// records, until the run ends or ctx does.
func (c *container) follow(ctx context.Context, file string, skip int64, w io.Writer, format func(logRecord) []byte) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var n int64
	var part []byte
	for {
		line, err := r.ReadBytes('\n')
		if err == nil {
			line = append(part, line[:len(line)-1]...)
			part = nil
			if n++; n > skip {
				if rec, ok := parseRecord(line); ok {
					if _, err := w.Write(format(rec)); err != nil {
						return err
					}
				}
			}
			continue
		}
		part = append(part, line...)
		if !c.runningFile(file) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// runningFile reports whether file is the log of the container's current,
// running run.
func (c *container) runningFile(file string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proc != nil && runOf(file) == int(c.restarts)
}

type limitWriter struct {
	w    io.Writer
	left int64
}

var errLimit = fmt.Errorf("limit reached")

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errLimit
	}
	if int64(len(p)) > l.left {
		n, _ := l.w.Write(p[:l.left])
		l.left = 0
		return n, errLimit
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
}

func nilIfLimit(err error) error {
	if err == errLimit {
		return nil
	}
	return err
}

// fanout copies a running container's output to attached clients.
type fanout struct {
	mu   sync.Mutex
	subs map[int]func(stream string, p []byte)
	next int
}

func newFanout() *fanout { return &fanout{subs: map[int]func(string, []byte){}} }

func (f *fanout) stream(name string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		f.mu.Lock()
		subs := make([]func(string, []byte), 0, len(f.subs))
		for _, s := range f.subs {
			subs = append(subs, s)
		}
		f.mu.Unlock()
		b := append([]byte(nil), p...)
		for _, s := range subs {
			s(name, b)
		}
		return len(p), nil
	})
}

func (f *fanout) subscribe(fn func(stream string, p []byte)) func() {
	f.mu.Lock()
	id := f.next
	f.next++
	f.subs[id] = fn
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		delete(f.subs, id)
		f.mu.Unlock()
	}
}
