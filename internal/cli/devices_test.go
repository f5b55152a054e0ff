package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// runPhonefarm runs the CLI with args and stdin.
func runPhonefarm(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestDevicesCmd(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string // in stdout
		wantErr  string   // in stderr
	}{
		{name: "oneplus", args: []string{"devices", "oneplus"}, want: []string{"CODENAME", "oneplus-enchilada", "OnePlus 6", "oneplus-dumpling", "OnePlus 5T", "oneplus-fajita", "fastboot"}},
		{name: "two words", args: []string{"devices", "pixel", "3a"}, want: []string{"google-sargo", "Google Pixel 3a", "2019", "aarch64", "community"}},
		{name: "nothing", args: []string{"devices", "nokia-3310-nonexistent"}, wantCode: 1, wantErr: "no device matches"},
		{name: "bad format", args: []string{"devices", "-o", "yaml"}, wantCode: 2, wantErr: "unknown output format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runPhonefarm(t, "", tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit status: got %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout: got\n%s\nwant %q in it", out, w)
				}
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr: got %q, want %q in it", errOut, tt.wantErr)
			}
		})
	}
}

// TestDevicesOnePlus: every row of `phonefarm devices oneplus` is a OnePlus
// phone, and every OnePlus phone of the database is there.
func TestDevicesOnePlus(t *testing.T) {
	code, out, errOut := runPhonefarm(t, "", "devices", "oneplus", "-o", "json")
	if code != 0 {
		t.Fatalf("exit status %d: %s", code, errOut)
	}
	var got []struct {
		Codename     string `json:"codename"`
		Manufacturer string `json:"manufacturer"`
		FlashMethod  string `json:"flash_method"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if len(got) < 20 {
		t.Errorf("got %d OnePlus devices, want the 22 of pmaports", len(got))
	}
	for _, d := range got {
		if d.Manufacturer != "OnePlus" {
			t.Errorf("got %s by %s, want only OnePlus phones", d.Codename, d.Manufacturer)
		}
	}
}
