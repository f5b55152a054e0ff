package kernelcfg

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a kernel release such as 4.4.153 or 7.1.0-rc3. Only the numeric
// parts and a release-candidate number take part in comparisons; other
// suffixes (-perf, -danctnix1, +) are kept in Text for display.
type Version struct {
	Major, Minor, Patch int
	// RC is the release-candidate number of a -rcN kernel, 0 for a release.
	RC int
	// Text is the version as written.
	Text string
}

// ParseVersion parses a kernel version: at least major.minor, optionally
// .patch, optionally followed by a suffix (-rc2, -perf, +).
func ParseVersion(s string) (Version, error) {
	s = strings.TrimSpace(s)
	v := Version{Text: s}
	rest := s
	var nums [3]int
	n := 0
	for n < 3 {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i > 9 {
			break
		}
		nums[n], _ = strconv.Atoi(rest[:i])
		n++
		rest = rest[i:]
		if n < 3 && strings.HasPrefix(rest, ".") && len(rest) > 1 && rest[1] >= '0' && rest[1] <= '9' {
			rest = rest[1:]
			continue
		}
		break
	}
	if n < 2 {
		return Version{}, fmt.Errorf("invalid kernel version %q: want major.minor[.patch][-suffix], e.g. 4.4.153", s)
	}
	if rest != "" && rest[0] != '-' && rest[0] != '+' && rest[0] != '_' && rest[0] != '.' && rest[0] != '~' {
		return Version{}, fmt.Errorf("invalid kernel version %q: unexpected %q after the version number", s, rest)
	}
	v.Major, v.Minor, v.Patch = nums[0], nums[1], nums[2]
	if suffix := strings.TrimLeft(rest, "-_~"); strings.HasPrefix(suffix, "rc") {
		digits := suffix[2:]
		i := 0
		for i < len(digits) && digits[i] >= '0' && digits[i] <= '9' {
			i++
		}
		if i > 0 && i < 10 {
			v.RC, _ = strconv.Atoi(digits[:i])
		}
	}
	return v, nil
}

// mustVersion parses a version written into a profile table.
func mustVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic("kernelcfg: bad version in profile table: " + err.Error())
	}
	return v
}

// Known reports whether v holds a version (the zero Version means unknown).
func (v Version) Known() bool { return v.Text != "" || v.Major != 0 || v.Minor != 0 || v.Patch != 0 }

// String returns the version as written, or major.minor.patch.
func (v Version) String() string {
	if v.Text != "" {
		return v.Text
	}
	if !v.Known() {
		return ""
	}
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.RC > 0 {
		s += fmt.Sprintf("-rc%d", v.RC)
	}
	return s
}

// Compare returns -1, 0 or +1 as v is older than, the same as, or newer than
// w. A release candidate is older than the release it leads to.
func (v Version) Compare(w Version) int {
	for _, d := range [...]int{v.Major - w.Major, v.Minor - w.Minor, v.Patch - w.Patch} {
		if d < 0 {
			return -1
		}
		if d > 0 {
			return 1
		}
	}
	switch {
	case v.RC == w.RC:
		return 0
	case v.RC == 0:
		return 1
	case w.RC == 0:
		return -1
	case v.RC < w.RC:
		return -1
	default:
		return 1
	}
}

// Range is a half-open range of kernel versions [From, Below). A zero bound
// is open. When a bound is a release (no -rc), a release candidate of the
// checked kernel counts as that release: 4.8.0-rc1 is not below 4.8.
type Range struct {
	From  Version `json:"from,omitzero"`
	Below Version `json:"below,omitzero"`
}

// Unbounded reports whether r holds every version.
func (r Range) Unbounded() bool { return !r.From.Known() && !r.Below.Known() }

// Contains reports whether v lies in r.
func (r Range) Contains(v Version) bool {
	if r.From.Known() && cmpBound(v, r.From) < 0 {
		return false
	}
	if r.Below.Known() && cmpBound(v, r.Below) >= 0 {
		return false
	}
	return true
}

func cmpBound(v, bound Version) int {
	if bound.RC == 0 {
		v.RC = 0
	}
	return v.Compare(bound)
}

// String renders r for people: ">= 3.14", "< 4.8", ">= 3.7, < 5.0" or "any".
func (r Range) String() string {
	var parts []string
	if r.From.Known() {
		parts = append(parts, ">= "+r.From.String())
	}
	if r.Below.Known() {
		parts = append(parts, "< "+r.Below.String())
	}
	if len(parts) == 0 {
		return "any"
	}
	return strings.Join(parts, ", ")
}

// NormalizeArch maps the architecture names in use (kernel ARCH values,
// Alpine and Debian names, uname -m) onto the kernel's names that profiles
// use: arm, arm64, x86, x86_64, riscv, ... It returns "" for an empty name.
func NormalizeArch(a string) string {
	a = strings.ToLower(strings.TrimSpace(a))
	switch a {
	case "aarch64", "arm64", "armv8", "armv8l":
		return "arm64"
	case "arm", "armv7", "armv7l", "armv7a", "armhf", "armel", "armv6", "armv6l", "armv5", "armv5tel":
		return "arm"
	case "x86_64", "amd64", "x64":
		return "x86_64"
	case "x86", "i386", "i486", "i586", "i686", "386":
		return "x86"
	case "riscv64", "riscv":
		return "riscv"
	case "ppc64le", "ppc64", "ppc", "powerpc":
		return "powerpc"
	case "loongarch64", "loongarch":
		return "loongarch"
	}
	return a
}

// Arches are the architectures NormalizeArch knows, by the kernel's names.
var Arches = []string{"arm", "arm64", "x86", "x86_64", "riscv", "powerpc", "loongarch", "mips"}

// KnownArch reports whether a names an architecture NormalizeArch knows
// (any of its spellings).
func KnownArch(a string) bool {
	n := NormalizeArch(a)
	for _, k := range Arches {
		if n == k {
			return true
		}
	}
	return false
}

// validArch reports whether a (already normalized) looks like an
// architecture name.
func validArch(a string) bool {
	if a == "" || len(a) > 32 {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
