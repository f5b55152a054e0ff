// Package deviceinfo parses postmarketOS deviceinfo files: shell-style
// `deviceinfo_key="value"` assignments, comments and blank lines. It is shared
// by the device database generator and the tests that check the generated
// table against the source files.
package deviceinfo

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// KV is one assignment, in file order. Key keeps its "deviceinfo_" prefix
// and its spelling (a few keys such as deviceinfo_usb_idVendor are mixed
// case).
type KV struct {
	Key   string `json:"k"`
	Value string `json:"v"`
}

var assign = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"\s*$`)

// Parse reads a deviceinfo file. name is used in errors only. A key assigned
// twice keeps its last value (as the shell would) at its first position.
func Parse(name string, data []byte) ([]KV, error) {
	var out []KV
	index := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		m := assign.FindStringSubmatch(text)
		if m == nil {
			return nil, fmt.Errorf("%s:%d: want deviceinfo_key=\"value\", got %q", name, line, text)
		}
		if !strings.HasPrefix(m[1], "deviceinfo_") {
			return nil, fmt.Errorf("%s:%d: key %q does not start with deviceinfo_", name, line, m[1])
		}
		value, err := unquote(m[2])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", name, line, m[1], err)
		}
		if i, ok := index[m[1]]; ok {
			out[i].Value = value
			continue
		}
		index[m[1]] = len(out)
		out = append(out, KV{Key: m[1], Value: value})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return out, nil
}

// unquote undoes the backslash escapes a POSIX shell honours inside double
// quotes; command substitution and parameter expansion are refused because
// a device database cannot evaluate them.
func unquote(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			if i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
				b.WriteByte(s[i+1])
				i++
				continue
			}
			b.WriteByte(c)
		case '$', '`':
			return "", fmt.Errorf("shell expansion %q is not supported", s)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}
