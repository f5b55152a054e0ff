package cli

import (
	"strings"
	"testing"
)

// Unknown commands and help topics are usage errors (exit 2), as unknown
// flags are, at every level; known ones and bare groups still work.
func TestExitCodes(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inStderr string
	}{
		{args: []string{"bogus"}, code: 2, inStderr: `unknown command "bogus" for "phonefarm"`},
		{args: []string{"invetory"}, code: 2, inStderr: "did you mean inventory?"},
		{args: []string{"inventory", "bogus"}, code: 2, inStderr: `unknown command "bogus" for "phonefarm inventory"; phonefarm inventory has: schema, validate`},
		{args: []string{"demo", "bogus"}, code: 2, inStderr: `unknown command "bogus" for "phonefarm demo"`},
		{args: []string{"kernelcfg", "bogus"}, code: 2, inStderr: `unknown command "bogus" for "phonefarm kernelcfg"`},
		{args: []string{"help", "bogus"}, code: 2, inStderr: `no help topic "bogus"`},
		{args: []string{"plan", "--bogus"}, code: 2, inStderr: "unknown flag: --bogus"},
		{args: []string{"help", "plan"}, code: 0},
		{args: []string{"inventory"}, code: 0},
		{args: []string{"version"}, code: 0},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := run(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.inStderr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q (stdout %.200q)", code, stderr, tt.code, tt.inStderr, stdout)
			}
		})
	}
}
