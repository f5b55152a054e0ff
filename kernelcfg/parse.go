package kernelcfg

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxConfigSize bounds how much (decompressed) input Parse and Read accept.
// Real configurations are well under 1 MiB.
const MaxConfigSize = 32 << 20

// Kind is what a configuration line says about an option.
type Kind int

const (
	// KindNotSet is "# CONFIG_X is not set".
	KindNotSet Kind = iota
	// KindYes is CONFIG_X=y (built in).
	KindYes
	// KindModule is CONFIG_X=m (built as a module).
	KindModule
	// KindNo is an explicit CONFIG_X=n.
	KindNo
	// KindString is a string value, quoted or not (CONFIG_X="abc").
	KindString
	// KindNumber is a decimal or hexadecimal value (CONFIG_X=64, CONFIG_X=0x10).
	KindNumber
)

func (k Kind) String() string {
	switch k {
	case KindNotSet:
		return "not set"
	case KindYes:
		return "y"
	case KindModule:
		return "m"
	case KindNo:
		return "n"
	case KindString:
		return "string"
	case KindNumber:
		return "number"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Option is one option as the configuration states it.
type Option struct {
	// Name is the option without its CONFIG_ prefix.
	Name string
	Kind Kind
	// Value is the value as written, strings unquoted and unescaped; empty
	// for KindNotSet.
	Value string
	// Line is the 1-based line the option was (last) set on.
	Line int
}

// Enabled reports whether the option is built in or a module.
func (o Option) Enabled() bool { return o.Kind == KindYes || o.Kind == KindModule }

// Config is a parsed kernel configuration.
type Config struct {
	// Name identifies the configuration in reports, usually its path.
	Name string
	// Version is the kernel version from the header comment or the
	// override; the zero Version when neither is available.
	Version Version
	// Arch is the kernel architecture (see NormalizeArch), from the header
	// comment, the override, or the options (CONFIG_ARM64=y ...); "" when
	// unknown.
	Arch string
	// Options holds every option the configuration mentions, keyed by name
	// without the CONFIG_ prefix.
	Options map[string]Option
	// Warnings lists lines that are neither options nor comments. The
	// kernel's own tools ignore such lines with a warning; so does Parse,
	// as long as the input is otherwise a configuration.
	Warnings []LineWarning
	// Lines is the number of lines read.
	Lines int
}

// LineWarning is a line Parse ignored.
type LineWarning struct {
	Line int    `json:"line"`
	Text string `json:"text"`
}

// Get returns the option name, with or without the CONFIG_ prefix.
func (c *Config) Get(name string) (Option, bool) {
	o, ok := c.Options[strings.TrimPrefix(name, "CONFIG_")]
	return o, ok
}

// Enabled reports whether option name is =y or =m.
func (c *Config) Enabled(name string) bool {
	o, ok := c.Get(name)
	return ok && o.Enabled()
}

// ParseOptions adjusts Parse.
type ParseOptions struct {
	// Name identifies the input in errors and reports.
	Name string
	// Version, when set, overrides the kernel version in the header.
	Version string
	// Arch, when set, overrides the architecture in the header.
	Arch string
}

// ParseError is input Parse cannot read as a kernel configuration. Line is
// 1-based; 0 means the input as a whole.
type ParseError struct {
	Name string
	Line int
	Msg  string
	Err  error
}

func (e *ParseError) Error() string {
	var b strings.Builder
	if e.Name != "" {
		b.WriteString(e.Name)
		b.WriteString(": ")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	b.WriteString(e.Msg)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// Read reads a configuration from r (plain or gzip'd) and parses it.
func Read(r io.Reader, opts ParseOptions) (*Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxConfigSize+1))
	if err != nil {
		return nil, &ParseError{Name: opts.Name, Msg: "read kernel config", Err: err}
	}
	return Parse(data, opts)
}

// Parse parses a kernel configuration: a .config, a gzip'd .config, or the
// bytes of /proc/config.gz. Input that is truncated, binary or not a
// configuration yields a *ParseError naming the line.
func Parse(data []byte, opts ParseOptions) (*Config, error) {
	var override Version
	if opts.Version != "" {
		v, err := ParseVersion(opts.Version)
		if err != nil {
			return nil, fmt.Errorf("kernel version override: %w", err)
		}
		override = v
	}
	arch := NormalizeArch(opts.Arch)
	if opts.Arch != "" && !validArch(arch) {
		return nil, fmt.Errorf("architecture override %q: want a name such as arm64, arm, x86_64", opts.Arch)
	}

	if len(data) > MaxConfigSize {
		return nil, &ParseError{Name: opts.Name, Msg: fmt.Sprintf("input larger than %d MiB; not a kernel config", MaxConfigSize>>20)}
	}
	if err := checkCompression(data, opts.Name); err != nil {
		return nil, err
	}
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		plain, err := gunzip(data)
		if err != nil {
			// Name the line the data broke off at, like for plain text.
			return nil, &ParseError{Name: opts.Name, Line: countLines(plain) + 1, Msg: "gzip data ends or breaks here", Err: err}
		}
		data = plain
	}
	cfg, err := parseText(data, opts.Name)
	if err != nil {
		return nil, err
	}
	if override.Known() {
		cfg.Version = override
	}
	if arch != "" {
		cfg.Arch = arch
	}
	cfg.Arch = refineArch(cfg)
	return cfg, nil
}

func checkCompression(data []byte, name string) error {
	for _, m := range []struct {
		magic string
		what  string
	}{
		{"\xfd7zXZ\x00", "xz"},
		{"\x28\xb5\x2f\xfd", "zstd"},
		{"BZh", "bzip2"},
		{"\x04\x22\x4d\x18", "lz4"},
	} {
		if bytes.HasPrefix(data, []byte(m.magic)) && !bytes.HasPrefix(data, []byte("BZh=")) {
			if m.what == "bzip2" && (len(data) < 4 || data[3] < '1' || data[3] > '9') {
				continue
			}
			return &ParseError{Name: name, Line: 1, Msg: m.what + "-compressed input; decompress it first (only plain and gzip'd configs are read)"}
		}
	}
	return nil
}

func gunzip(data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	n, err := io.Copy(&out, io.LimitReader(zr, MaxConfigSize+1))
	if err != nil {
		return out.Bytes(), err
	}
	if n > MaxConfigSize {
		return out.Bytes()[:0], fmt.Errorf("decompresses to more than %d MiB", MaxConfigSize>>20)
	}
	return out.Bytes(), nil
}

func countLines(b []byte) int { return bytes.Count(b, []byte{'\n'}) }

const (
	configPrefix = "CONFIG_"
	notSetSuffix = " is not set"
)

func parseText(data []byte, name string) (*Config, error) {
	cfg := &Config{Name: name, Options: make(map[string]Option, len(data)/32)}
	lineNo := 0
	seenOption := false
	firstOdd := 0
	for len(data) > 0 {
		lineNo++
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if err := checkText(line); err != "" {
			return nil, &ParseError{Name: name, Line: lineNo, Msg: err}
		}
		trimmed := trimBlankLeft(line)
		switch {
		case len(trimBlankRight(trimmed)) == 0:
			continue
		case trimmed[0] == '#':
			if n, ok := notSetName(trimmed); ok {
				cfg.Options[n] = Option{Name: n, Kind: KindNotSet, Line: lineNo}
				seenOption = true
				continue
			}
			if !seenOption && !cfg.Version.Known() {
				readHeader(cfg, trimmed)
			}
		case bytes.HasPrefix(trimmed, []byte(configPrefix)):
			o, msg := parseAssignment(trimmed)
			if msg != "" {
				return nil, &ParseError{Name: name, Line: lineNo, Msg: msg}
			}
			o.Line = lineNo
			cfg.Options[o.Name] = o
			seenOption = true
		default:
			if firstOdd == 0 {
				firstOdd = lineNo
			}
			cfg.Warnings = append(cfg.Warnings, LineWarning{Line: lineNo, Text: truncate(string(line), 80)})
		}
	}
	cfg.Lines = lineNo
	if len(cfg.Options) == 0 {
		if firstOdd > 0 {
			return nil, &ParseError{Name: name, Line: firstOdd, Msg: fmt.Sprintf("not a kernel config: unexpected %q", cfg.Warnings[0].Text)}
		}
		return nil, &ParseError{Name: name, Msg: "not a kernel config: no CONFIG_ options (empty or only comments)"}
	}
	if len(cfg.Warnings) > len(cfg.Options) {
		return nil, &ParseError{Name: name, Line: firstOdd, Msg: fmt.Sprintf("not a kernel config: %d of %d lines are neither options nor comments, starting with %q", len(cfg.Warnings), lineNo, cfg.Warnings[0].Text)}
	}
	return cfg, nil
}

// checkText rejects binary data: NUL and other control bytes, invalid UTF-8.
func checkText(line []byte) string {
	high := false
	for _, c := range line {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return fmt.Sprintf("binary data (byte 0x%02x); not a kernel config", c)
		}
		if c >= 0x80 {
			high = true
		}
	}
	if high && !utf8.Valid(line) {
		return "binary data (invalid UTF-8); not a kernel config"
	}
	return ""
}

// notSetName recognises "# CONFIG_X is not set".
func notSetName(line []byte) (string, bool) {
	rest := line[1:]
	for len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	if !bytes.HasPrefix(rest, []byte(configPrefix)) {
		return "", false
	}
	rest = trimBlankRight(rest[len(configPrefix):])
	if !bytes.HasSuffix(rest, []byte(notSetSuffix)) {
		return "", false
	}
	n := rest[:len(rest)-len(notSetSuffix)]
	if !validName(n) {
		return "", false
	}
	return string(n), true
}

func validName(n []byte) bool {
	if len(n) == 0 || len(n) > 256 {
		return false
	}
	for _, c := range n {
		if !nameByte[c] {
			return false
		}
	}
	return true
}

// nameByte marks the bytes of an option name: letters, digits and _.
var nameByte = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_'
	}
	return t
}()

// parseAssignment parses CONFIG_NAME=value; msg explains a malformed line.
func parseAssignment(line []byte) (Option, string) {
	rest := line[len(configPrefix):]
	eq := bytes.IndexByte(rest, '=')
	if eq < 0 {
		if validName(bytes.TrimRight(rest, " \t")) {
			return Option{}, fmt.Sprintf("CONFIG_%s has no value (truncated line?)", truncate(string(bytes.TrimRight(rest, " \t")), 60))
		}
		return Option{}, fmt.Sprintf("malformed option %q: want CONFIG_NAME=value", truncate(string(line), 60))
	}
	nameB := rest[:eq]
	if !validName(nameB) {
		return Option{}, fmt.Sprintf("malformed option name %q: want letters, digits and _", truncate(string(nameB), 60))
	}
	o := Option{Name: string(nameB)}
	val := trimBlankRight(rest[eq+1:])
	switch {
	case len(val) == 1 && val[0] == 'y':
		o.Kind, o.Value = KindYes, "y"
	case len(val) == 1 && val[0] == 'm':
		o.Kind, o.Value = KindModule, "m"
	case len(val) == 1 && val[0] == 'n':
		o.Kind, o.Value = KindNo, "n"
	case len(val) > 0 && val[0] == '"':
		s, msg := unquote(val)
		if msg != "" {
			return Option{}, fmt.Sprintf("CONFIG_%s: %s", o.Name, msg)
		}
		o.Kind, o.Value = KindString, s
	case isNumber(val):
		o.Kind, o.Value = KindNumber, string(val)
	default:
		o.Kind, o.Value = KindString, string(val)
	}
	return o, ""
}

// unquote reads a Kconfig string: "..." with \" and \\ escapes.
func unquote(val []byte) (string, string) {
	var b strings.Builder
	for i := 1; i < len(val); i++ {
		c := val[i]
		switch c {
		case '\\':
			if i+1 >= len(val) {
				return "", "unterminated string (truncated line?)"
			}
			i++
			b.WriteByte(val[i])
		case '"':
			if rest := bytes.TrimSpace(val[i+1:]); len(rest) > 0 {
				return "", fmt.Sprintf("unexpected %q after the closing quote", truncate(string(rest), 40))
			}
			return b.String(), ""
		default:
			b.WriteByte(c)
		}
	}
	return "", "unterminated string (truncated line?)"
}

func isNumber(v []byte) bool {
	if len(v) > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X') {
		for _, c := range v[2:] {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
		return true
	}
	if len(v) > 1 && v[0] == '-' {
		v = v[1:]
	}
	if len(v) == 0 {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// readHeader takes version and arch from "# Linux/arm64 4.4.153 Kernel
// Configuration" or "# Linux kernel version: 2.6.32".
func readHeader(cfg *Config, line []byte) {
	s := strings.TrimSpace(strings.TrimLeft(string(line), "# "))
	if rest, ok := strings.CutPrefix(s, "Linux kernel version:"); ok {
		if v, err := ParseVersion(strings.TrimSpace(rest)); err == nil {
			cfg.Version = v
		}
		return
	}
	rest, ok := strings.CutPrefix(s, "Linux/")
	if !ok || !strings.HasSuffix(s, " Kernel Configuration") {
		return
	}
	// Vendors put words after the version ("3.10.108 EOL"): the version
	// is the second field whatever follows it.
	fields := strings.Fields(strings.TrimSuffix(rest, " Kernel Configuration"))
	if len(fields) < 2 {
		return
	}
	v, err := ParseVersion(fields[1])
	if err != nil {
		return
	}
	cfg.Version = v
	if a := NormalizeArch(fields[0]); validArch(a) {
		cfg.Arch = a
	}
}

// refineArch settles the architecture: "x86" with CONFIG_64BIT is x86_64,
// and without a header the options name the architecture.
func refineArch(cfg *Config) string {
	switch cfg.Arch {
	case "x86":
		if cfg.Enabled("X86_64") || cfg.Enabled("64BIT") {
			return "x86_64"
		}
		return "x86"
	case "":
		for _, c := range []struct{ opt, arch string }{
			{"ARM64", "arm64"}, {"ARM", "arm"}, {"X86_64", "x86_64"}, {"X86_32", "x86"},
			{"RISCV", "riscv"}, {"PPC", "powerpc"}, {"MIPS", "mips"}, {"LOONGARCH", "loongarch"},
		} {
			if o, ok := cfg.Options[c.opt]; ok && o.Kind == KindYes {
				return c.arch
			}
		}
	}
	return cfg.Arch
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// trimBlankLeft and trimBlankRight drop spaces and tabs: bytes.Trim with a
// cutset builds its set on every call, a cost on every line of a config.
func trimBlankLeft(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

func trimBlankRight(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
