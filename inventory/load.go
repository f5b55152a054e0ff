package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// MaxSize is the largest inventory phonefarm reads: a farm of a thousand
// phones is a few hundred kilobytes.
const MaxSize = 4 << 20

// Load reads and validates the inventory at path: a regular file (a FIFO
// or a device could block or never end) of at most MaxSize bytes.
func Load(path string) (*Farm, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read inventory: %s is %s, not a file; phonefarm reads an inventory from a regular file", path, describeMode(st.Mode()))
	}
	if st.Size() > MaxSize {
		return nil, fmt.Errorf("read inventory: %s is %d bytes, more than an inventory's limit of %d", path, st.Size(), MaxSize)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("read inventory: %s grew past an inventory's limit of %d bytes while being read", path, MaxSize)
	}
	return Parse(path, data)
}

func describeMode(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}

// badByte finds the first byte YAML refuses (invalid UTF-8, NUL and other
// control characters but tab, newline and carriage return) and says what
// and where it is; YAML's own error gives no position for them.
func badByte(file string, data []byte) *Problem {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		var what string
		switch {
		case r == utf8.RuneError && size <= 1:
			what = fmt.Sprintf("a byte 0x%02x that is not UTF-8", data[i])
		case r == 0:
			what = "a NUL byte"
		case r < 0x20 && r != '\t' && r != '\n' && r != '\r', r == 0x7f, r >= 0x80 && r < 0xa0, r == 0xfffe, r == 0xffff:
			what = fmt.Sprintf("the control character U+%04X", r)
		}
		if what != "" {
			return &Problem{File: file, Line: line, Column: col, Severity: SeverityError,
				Message: what + "; an inventory is UTF-8 text without control characters (tabs and newlines are fine)"}
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return nil
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse decodes and validates an inventory; file names it in messages. On
// failure the error is a *ValidationError listing every problem found.
func Parse(file string, data []byte) (*Farm, error) {
	if len(data) > MaxSize {
		return nil, &ValidationError{Problems: []Problem{{File: file, Severity: SeverityError,
			Message: fmt.Sprintf("the inventory is %d bytes, more than the limit of %d", len(data), MaxSize)}}}
	}
	if p := badByte(file, data); p != nil {
		return nil, &ValidationError{Problems: []Problem{*p}}
	}
	d := &decoder{file: file, pos: map[string]pos{}}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ValidationError{Problems: []Problem{{File: file, Severity: SeverityError,
				Message: "the file is empty; an inventory starts with apiVersion: " + APIVersion + " and kind: " + Kind}}}
		}
		return nil, &ValidationError{Problems: []Problem{syntaxProblem(file, data, err)}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &ValidationError{Problems: []Problem{{File: file, Line: extra.Line, Column: extra.Column, Severity: SeverityError,
			Message: "a second YAML document; an inventory file holds exactly one Farm"}}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	f := &Farm{file: file}
	d.decode(root, reflect.ValueOf(f).Elem(), "")
	if d.tooMany {
		return nil, &ValidationError{Problems: d.problems[len(d.problems)-1:]}
	}
	// Identity first: if this is not a phonefarm inventory, nothing else
	// in it is worth reporting.
	if f.APIVersion != "" && f.APIVersion != APIVersion || f.Kind != "" && f.Kind != Kind {
		return nil, &ValidationError{Problems: onlyPaths(d.problems, "apiVersion", "kind")}
	}
	(&validator{d: d}).farm(f)
	f.pos = d.pos
	var errs []Problem
	for _, p := range d.problems {
		if p.Severity == SeverityError {
			errs = append(errs, p)
		} else {
			f.warnings = append(f.warnings, p)
		}
	}
	if len(errs) > 0 {
		sortProblems(errs)
		return nil, &ValidationError{Problems: errs}
	}
	return f, nil
}

func onlyPaths(ps []Problem, paths ...string) []Problem {
	var out []Problem
	for _, p := range ps {
		if contains(paths, p.Path) {
			out = append(out, p)
		}
	}
	return out
}

func syntaxProblem(file string, data []byte, err error) Problem {
	p := Problem{File: file, Severity: SeverityError, Message: "YAML syntax: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	m := yamlLineRe.FindStringSubmatch(err.Error())
	if m == nil {
		return p
	}
	p.Line, _ = strconv.Atoi(m[1])
	p.Column = 1
	p.Message = "YAML syntax: " + m[2]
	// The YAML library reports a tab in indentation at the line before
	// the tab; point at the tab itself, the most common YAML mistake.
	if strings.Contains(m[2], "tab character") {
		lines := strings.Split(string(data), "\n")
		for i := p.Line - 1; i >= 0 && i < len(lines) && i <= p.Line+1; i++ {
			indent := lines[i][:len(lines[i])-len(strings.TrimLeft(lines[i], " \t"))]
			if j := strings.IndexByte(indent, '\t'); j >= 0 {
				p.Line, p.Column = i+1, j+1
				p.Message += "; indent with spaces"
				break
			}
		}
	}
	return p
}

// File is the path the inventory was read from.
func (f *Farm) File() string { return f.file }

// Phone returns the phone named name.
func (f *Farm) Phone(name string) (*Phone, bool) {
	for i := range f.Phones {
		if f.Phones[i].Name == name {
			return &f.Phones[i], true
		}
	}
	return nil, false
}

// OthersWithRole counts the phones other than name that have a role: the
// ones that must reach it in the cluster.
func (f *Farm) OthersWithRole(name string) int {
	n := 0
	for i := range f.Phones {
		if f.Phones[i].Name != name && f.Phones[i].Role != "" {
			n++
		}
	}
	return n
}

// Select returns the named phones in the order given, or every phone when
// names is empty. An unknown name is an error listing the valid ones.
func (f *Farm) Select(names []string) ([]*Phone, error) {
	if len(names) == 0 {
		out := make([]*Phone, len(f.Phones))
		for i := range f.Phones {
			out[i] = &f.Phones[i]
		}
		return out, nil
	}
	var out []*Phone
	for _, n := range names {
		p, ok := f.Phone(n)
		if !ok {
			valid := make([]string, len(f.Phones))
			for i := range f.Phones {
				valid[i] = f.Phones[i].Name
			}
			return nil, fmt.Errorf("no phone %q in %s; phones: %s", n, f.file, strings.Join(valid, ", "))
		}
		out = append(out, p)
	}
	return out, nil
}

// Warnf records a warning located at a field path (for example
// "phones[2].device"), for checks that live outside this package, such as
// the device database.
func (f *Farm) Warnf(path, format string, args ...any) {
	v := validator{d: &decoder{file: f.file, pos: f.pos}}
	v.problem(SeverityWarning, path, format, args...)
	f.warnings = append(f.warnings, v.d.problems...)
	sortProblems(f.warnings)
}

// Warnings are problems that do not stop phonefarm.
func (f *Farm) Warnings() []Problem { return f.warnings }
