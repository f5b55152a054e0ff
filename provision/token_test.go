package provision

import (
	"strings"
	"testing"
)

// CheckToken accepts what k3s accepts as a join token and refuses what it
// refuses, without repeating the token.
func TestCheckToken(t *testing.T) {
	hash := strings.Repeat("0123456789abcdef", 4)
	for _, tok := range []string{
		"plain-password",
		"abcdef.0123456789abcdef",
		"K10" + hash + "::server:secret",
		"K10" + hash + "::abcdef.0123456789abcdef",
		"K10::server:secret",
		"K10server:secret",
	} {
		if err := CheckToken(tok); err != nil {
			t.Errorf("CheckToken(%q) = %v, want nil", tok, err)
		}
	}
	for _, tok := range []string{
		"",
		"K10-looks-like-a-password",
		"K10" + hash + "::nopassword",
		"K10" + hash + "::user:",
		"K10abc::server:secret",
		"K10" + strings.ToUpper(hash) + "::server:secret",
	} {
		err := CheckToken(tok)
		if err == nil {
			t.Errorf("CheckToken(%q) = nil, want an error", tok)
			continue
		}
		if tok != "" && strings.Contains(err.Error(), tok[3:]) {
			t.Errorf("CheckToken(%q): the error repeats the token: %v", tok, err)
		}
	}
}
