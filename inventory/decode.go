package inventory

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// pos is a position in the inventory file.
type pos struct{ line, col int }

// decoder fills Go values from a YAML node tree, strictly: unknown fields,
// wrong types, values outside an enum and missing required fields all
// become Problems with the node's position. It records the position of
// every field path it sees so that validation can point at them too.
type decoder struct {
	file     string
	problems []Problem
	pos      map[string]pos
	// values counts the values decoded, aliases expanded: a file of
	// aliases to aliases stops at MaxValues instead of exhausting memory.
	values  int
	tooMany bool
}

// MaxValues bounds how many values an inventory may hold once its YAML
// aliases are expanded; a farm of a thousand phones holds a few tens of
// thousands.
const MaxValues = 200_000

func (d *decoder) addf(n *yaml.Node, path, format string, args ...any) {
	d.problems = append(d.problems, Problem{
		File: d.file, Line: n.Line, Column: n.Column, Path: path,
		Severity: SeverityError, Message: fmt.Sprintf(format, args...),
	})
}

// field describes one struct field as the file format sees it.
type field struct {
	name     string
	index    int
	required bool
	enum     []string
}

func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		f := field{name: name, index: i}
		for _, part := range strings.Split(sf.Tag.Get("jsonschema"), ",") {
			switch {
			case part == "required":
				f.required = true
			case strings.HasPrefix(part, "enum="):
				f.enum = append(f.enum, strings.TrimPrefix(part, "enum="))
			}
		}
		fs = append(fs, f)
	}
	return fs
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.Tag, "!!"), n.Value)
	}
	return "an unsupported value"
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if d.tooMany {
		return
	}
	if d.values++; d.values > MaxValues {
		d.tooMany = true
		d.addf(n, path, "the inventory expands to more than %d values through its YAML aliases; phonefarm stops reading here", MaxValues)
		return
	}
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.pos[path] = pos{n.Line, n.Column}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // absent value: the zero value stands
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.addf(n, path, "got %s, want a list", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.addf(n, path, "got %s, want a mapping of names to values", kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		first := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if d.duplicate(first, k, fmt.Sprintf("%s[%s]", path, k.Value)) {
				continue
			}
			key := reflect.New(v.Type().Key()).Elem()
			d.decode(k, key, path)
			kp := fmt.Sprintf("%s[%s]", path, k.Value)
			elem := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, elem, kp)
			d.pos[kp] = pos{k.Line, k.Column}
			m.SetMapIndex(key, elem)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.addf(n, path, "got %s, want a string", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		i, err := strconv.Atoi(n.Value)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			d.addf(n, path, "got %s, want a whole number", kindName(n))
			return
		}
		v.SetInt(int64(i))
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.addf(n, path, "got %s, want true or false", kindName(n))
			return
		}
		v.SetBool(n.Value == "true" || n.Value == "True" || n.Value == "TRUE")
	default:
		d.addf(n, path, "phonefarm cannot decode a %s here", v.Kind())
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.addf(n, path, "got %s, want a mapping", kindName(n))
		return
	}
	fields := fieldsOf(v.Type())
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	seen := map[string]bool{}
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if d.duplicate(first, k, join(path, k.Value)) {
			continue
		}
		var f *field
		for j := range fields {
			if fields[j].name == k.Value {
				f = &fields[j]
			}
		}
		if f == nil {
			msg := fmt.Sprintf("unknown field %q", k.Value)
			if s := suggest(k.Value, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.addf(k, join(path, k.Value), "%s; valid fields: %s", msg, strings.Join(names, ", "))
			continue
		}
		seen[f.name] = true
		fp := join(path, f.name)
		d.decode(val, v.Field(f.index), fp)
		// Problems about a whole mapping or list point at its key; problems
		// about a scalar point at the value.
		if val.Kind == yaml.MappingNode || val.Kind == yaml.SequenceNode {
			d.pos[fp] = pos{k.Line, k.Column}
		} else {
			d.pos[fp] = pos{val.Line, val.Column}
		}
		if len(f.enum) > 0 && val.Kind == yaml.ScalarNode && val.Tag != "!!null" && !contains(f.enum, val.Value) {
			msg := fmt.Sprintf("%q is not valid; want one of: %s", val.Value, strings.Join(f.enum, ", "))
			if s := suggest(val.Value, f.enum); s != "" {
				msg = fmt.Sprintf("%q is not valid (did you mean %q?); want one of: %s", val.Value, s, strings.Join(f.enum, ", "))
			}
			d.addf(val, fp, "%s", msg)
		}
	}
	for _, f := range fields {
		if f.required && !seen[f.name] {
			d.addf(n, join(path, f.name), "required field %q is missing", f.name)
		}
	}
}

// duplicate reports (and records a problem for) a mapping key seen
// before in the same mapping: YAML allows the second to replace the first
// silently, which hides a typo or a bad merge (a second phones: list).
func (d *decoder) duplicate(first map[string]*yaml.Node, k *yaml.Node, path string) bool {
	key := k.Value
	if f, ok := first[key]; ok {
		d.addf(k, path, "duplicate key %q (first at line %d); each key may appear once in a mapping", key, f.Line)
		return true
	}
	first[key] = k
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
