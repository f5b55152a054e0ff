package devicedb

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/phonefarm/phonefarm/devicedb/internal/deviceinfo"
)

// devicesDir is the pmaports tree the embedded table is generated from
// (testdata/pmaports/README.md says where it comes from).
const devicesDir = "testdata/pmaports/devices"

// TestEveryDeviceinfo parses every deviceinfo file of the source tree and
// checks that the embedded table holds each device with every key and value,
// so no field is lost and the table is not stale.
func TestEveryDeviceinfo(t *testing.T) {
	dir := devicesDir
	files, err := filepath.Glob(filepath.Join(dir, "*", "*.deviceinfo"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(files), len(All()); got != want {
		t.Errorf("got %d deviceinfo files in %s, want %d (the embedded table); run go generate ./devicedb", got, dir, want)
	}
	for _, f := range files {
		codename := strings.TrimSuffix(filepath.Base(f), ".deviceinfo")
		category := Category(filepath.Base(filepath.Dir(f)))
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		kv, err := deviceinfo.Parse(f, data)
		if err != nil {
			t.Errorf("parse: %v", err)
			continue
		}
		// Every assignment line of the file is in the parse.
		assignments := 0
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "deviceinfo_") {
				assignments++
			}
		}
		if got, want := len(kv), assignments; got != want {
			t.Errorf("%s: got %d keys, want %d assignment lines", f, got, want)
		}
		d, ok := Lookup(codename)
		if !ok {
			t.Errorf("Lookup(%q): got not found, want the device from %s", codename, f)
			continue
		}
		if diff := cmp.Diff(kv, d.info); diff != "" {
			t.Errorf("%s: embedded deviceinfo differs from the file (-file +table):\n%s", f, diff)
		}
		if d.Category != category {
			t.Errorf("%s: got category %q, want %q", codename, d.Category, category)
		}
		for field, v := range map[string]string{"name": d.Name, "manufacturer": d.Manufacturer, "arch": d.Arch, "flash method": d.FlashMethod} {
			if v == "" {
				t.Errorf("%s: got empty %s, want it derived from the deviceinfo", codename, field)
			}
		}
		if d.Year == 0 {
			t.Errorf("%s: got year 0, want deviceinfo_year", codename)
		}
	}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		codename string
		want     Device
		wantOK   bool
	}{
		{
			codename: "oneplus-enchilada",
			wantOK:   true,
			want: Device{
				Codename: "oneplus-enchilada", Name: "OnePlus 6", Manufacturer: "OnePlus", Year: 2018,
				Arch: "aarch64", Chassis: "handset", Category: Community, FlashMethod: MethodFastboot,
				Partitions: Partitions{Kernel: "boot", Rootfs: "userdata"}, Sparse: true,
			},
		},
		{
			codename: "google-sargo",
			wantOK:   true,
			want: Device{
				Codename: "google-sargo", Name: "Google Pixel 3a", Manufacturer: "Google", Year: 2019,
				Arch: "aarch64", Chassis: "handset", Category: Community, FlashMethod: MethodFastboot,
				Partitions: Partitions{Kernel: "boot", Rootfs: "userdata", Vbmeta: "vbmeta"}, Sparse: true,
				VbmetaDisableVerification: true,
			},
		},
		{
			codename: "samsung-i9100-downstream",
			wantOK:   true,
			want: Device{
				Codename: "samsung-i9100-downstream", Name: "Samsung Galaxy SII", Manufacturer: "Samsung", Year: 2011,
				Arch: "armv7", Chassis: "handset", Category: Archived, FlashMethod: MethodHeimdallIsorec,
				Partitions: Partitions{Kernel: "KERNEL", Rootfs: "DATAFS"}, Sparse: true,
			},
		},
		{
			// The file name is the codename even where deviceinfo_codename differs.
			codename: "sony-tulip-downstream",
			wantOK:   true,
			want: Device{
				Codename: "sony-tulip-downstream", Name: "Sony Xperia M4 Aqua", Manufacturer: "Sony", Year: 2015,
				Arch: "aarch64", Chassis: "handset", Category: Archived, FlashMethod: MethodFastboot,
				Partitions: Partitions{Kernel: "boot", Rootfs: "userdata"},
			},
		},
		{codename: "nokia-3310", wantOK: false},
		{codename: "", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.codename, func(t *testing.T) {
			got, ok := Lookup(tt.codename)
			if ok != tt.wantOK {
				t.Fatalf("Lookup(%q): got ok=%v, want %v", tt.codename, ok, tt.wantOK)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreUnexported(Device{})); diff != "" {
				t.Errorf("Lookup(%q) (-want +got):\n%s", tt.codename, diff)
			}
		})
	}
}

func TestDeviceValue(t *testing.T) {
	d, ok := Lookup("oneplus-enchilada")
	if !ok {
		t.Fatal("oneplus-enchilada not found")
	}
	for _, key := range []string{"dtb", "deviceinfo_dtb"} {
		if got, ok := d.Value(key); !ok || got != "qcom/sdm845-oneplus-enchilada" {
			t.Errorf("Value(%q): got %q, %v, want qcom/sdm845-oneplus-enchilada, true", key, got, ok)
		}
	}
	m := d.Deviceinfo()
	m["deviceinfo_name"] = "changed"
	if d2, _ := Lookup("oneplus-enchilada"); d2.Name != "OnePlus 6" {
		t.Errorf("after changing the returned map: got name %q, want OnePlus 6", d2.Name)
	}
	if got, want := d.Products(), []string{"enchilada"}; !cmp.Equal(got, want) {
		t.Errorf("Products: got %v, want %v", got, want)
	}
}

func TestMaxFlashSize(t *testing.T) {
	d, ok := Lookup("amazon-thor")
	if !ok {
		t.Fatal("amazon-thor not found")
	}
	if got, want := d.MaxFlashSize, int64(510<<20); got != want {
		t.Errorf("got MaxFlashSize %d, want %d", got, want)
	}
}

func TestSearch(t *testing.T) {
	tests := []struct {
		query    string
		contains []string
		absent   []string
	}{
		{query: "oneplus", contains: []string{"oneplus-enchilada", "oneplus-fajita", "oneplus-dumpling", "oneplus-cheeseburger"}, absent: []string{"google-sargo"}},
		{query: "OnePlus 6", contains: []string{"oneplus-enchilada"}, absent: []string{"oneplus-dumpling"}},
		{query: "pixel 3a", contains: []string{"google-sargo"}},
		{query: "no-such-phone", absent: []string{"oneplus-enchilada"}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got := map[string]bool{}
			for _, d := range Search(tt.query) {
				got[d.Codename] = true
			}
			for _, c := range tt.contains {
				if !got[c] {
					t.Errorf("Search(%q): got no %s, want it", tt.query, c)
				}
			}
			for _, c := range tt.absent {
				if got[c] {
					t.Errorf("Search(%q): got %s, want it absent", tt.query, c)
				}
			}
		})
	}
	if got, want := len(Search("")), len(All()); got != want {
		t.Errorf("Search(\"\"): got %d devices, want all %d", got, want)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []deviceinfo.KV
		wantErr string
	}{
		{
			name: "comments blanks and escapes",
			in:   "# comment\n\ndeviceinfo_name=\"Chromebook 13.3\\\"\"\ndeviceinfo_usb_idVendor=\"0x04e8\"  \n",
			want: []deviceinfo.KV{{Key: "deviceinfo_name", Value: `Chromebook 13.3"`}, {Key: "deviceinfo_usb_idVendor", Value: "0x04e8"}},
		},
		{
			name: "last assignment wins",
			in:   "deviceinfo_a=\"1\"\ndeviceinfo_b=\"2\"\ndeviceinfo_a=\"3\"\n",
			want: []deviceinfo.KV{{Key: "deviceinfo_a", Value: "3"}, {Key: "deviceinfo_b", Value: "2"}},
		},
		{name: "single quotes", in: "deviceinfo_a='1'\n", wantErr: `x:1: want deviceinfo_key="value"`},
		{name: "foreign key", in: "foo=\"1\"\n", wantErr: `x:1: key "foo" does not start with deviceinfo_`},
		{name: "expansion", in: "\ndeviceinfo_a=\"$HOME\"\n", wantErr: "x:2: deviceinfo_a: shell expansion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := deviceinfo.Parse("x", []byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLeaf guards that devicedb imports nothing else of phonefarm.
func TestLeaf(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/phonefarm/phonefarm/") && !strings.HasPrefix(p, "github.com/phonefarm/phonefarm/devicedb") {
			t.Errorf("got dependency %s, want devicedb to stay a leaf", p)
		}
	}
}

func TestByProduct(t *testing.T) {
	for _, tt := range []struct{ product, want string }{
		{"sargo", "google-sargo"},
		{"enchilada", "oneplus-enchilada"},
		{"SARGO ", "google-sargo"},
	} {
		got := ByProduct(tt.product)
		if len(got) == 0 || got[0].Codename != tt.want {
			t.Errorf("ByProduct(%q): got %v, want %s first", tt.product, got, tt.want)
		}
	}
	if got := ByProduct("no-such-phone"); len(got) != 0 {
		t.Errorf("ByProduct(no-such-phone): got %v, want none", got)
	}
}
