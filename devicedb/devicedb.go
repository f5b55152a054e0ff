// Package devicedb is phonefarm's database of the devices postmarketOS
// supports, generated from the deviceinfo files of pmaports and embedded in
// the binary, so that neither building nor running phonefarm needs pmaports.
//
// It is a leaf package: it imports nothing of phonefarm.
package devicedb

//go:generate go run ./internal/gen -src testdata/pmaports/devices -out devices.json.gz

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/phonefarm/phonefarm/devicedb/internal/deviceinfo"
)

// Category is the pmaports support category of a device.
type Category string

// The pmaports categories, best supported first.
const (
	Main       Category = "main"
	Community  Category = "community"
	Testing    Category = "testing"
	Downstream Category = "downstream"
	Archived   Category = "archived"
)

// Flash methods named by deviceinfo_flash_method. Devices without one (SD
// card and PC-style installs) have MethodNone.
const (
	MethodFastboot         = "fastboot"
	MethodFastbootBootpart = "fastboot-bootpart"
	MethodHeimdallBootimg  = "heimdall-bootimg"
	MethodHeimdallIsorec   = "heimdall-isorec"
	MethodNone             = "none"
)

// Partitions names where the images go on the device. Empty means the image
// is not flashed by this method.
type Partitions struct {
	Kernel string `json:"kernel,omitempty"`
	Rootfs string `json:"rootfs,omitempty"`
	Vbmeta string `json:"vbmeta,omitempty"`
	Dtbo   string `json:"dtbo,omitempty"`
}

// Device is one postmarketOS device.
type Device struct {
	// Codename is the pmaports device name (device-<codename>), the file name
	// of its deviceinfo; it is unique. deviceinfo_codename usually equals it.
	Codename     string   `json:"codename"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"manufacturer"`
	Year         int      `json:"year,omitempty"`
	Arch         string   `json:"arch"`
	Chassis      string   `json:"chassis,omitempty"`
	Category     Category `json:"category"`
	// FlashMethod is deviceinfo_flash_method, or MethodNone when absent.
	FlashMethod string     `json:"flash_method"`
	Partitions  Partitions `json:"partitions"`
	// Sparse says the rootfs image should be converted to an Android sparse
	// image before flashing (deviceinfo_flash_sparse).
	Sparse bool `json:"sparse,omitempty"`
	// VbmetaDisableVerification says a vbmeta image with verification
	// disabled must be flashed to Partitions.Vbmeta, or the bootloader
	// refuses to boot the postmarketOS kernel.
	VbmetaDisableVerification bool `json:"vbmeta_disable_verification,omitempty"`
	// MaxFlashSize is deviceinfo_flash_fastboot_max_size (given there in
	// MiB, as pmbootstrap passes it to `fastboot -S`) in bytes, for
	// bootloaders that misreport max-download-size; 0 when unset.
	MaxFlashSize int64 `json:"max_flash_size,omitempty"`

	info []deviceinfo.KV
}

// Value returns the deviceinfo value for key, with or without its
// "deviceinfo_" prefix.
func (d Device) Value(key string) (string, bool) {
	if !strings.HasPrefix(key, "deviceinfo_") {
		key = "deviceinfo_" + key
	}
	for _, kv := range d.info {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

// Deviceinfo returns every key of the device's deviceinfo file (with the
// "deviceinfo_" prefix) and its value. The map is the caller's.
func (d Device) Deviceinfo() map[string]string {
	m := make(map[string]string, len(d.info))
	for _, kv := range d.info {
		m[kv.Key] = kv.Value
	}
	return m
}

// Fastboot reports whether the device is flashed with fastboot.
func (d Device) Fastboot() bool {
	return d.FlashMethod == MethodFastboot || d.FlashMethod == MethodFastbootBootpart
}

// Heimdall reports whether the device is a Samsung flashed with heimdall.
func (d Device) Heimdall() bool {
	return d.FlashMethod == MethodHeimdallBootimg || d.FlashMethod == MethodHeimdallIsorec
}

// Products returns the names a fastboot bootloader of this device is
// expected to report for `getvar product`: the codename without its vendor
// prefix and "-downstream" suffix (google-sargo reports "sargo").
func (d Device) Products() []string {
	base := strings.TrimSuffix(d.Codename, "-downstream")
	if _, rest, ok := strings.Cut(base, "-"); ok {
		base = rest
	}
	return []string{base}
}

// Lookup returns the device with the given codename.
func Lookup(codename string) (Device, bool) {
	t, err := table()
	if err != nil {
		return Device{}, false
	}
	i, ok := slices.BinarySearchFunc(t, codename, func(d Device, c string) int { return strings.Compare(d.Codename, c) })
	if !ok {
		return Device{}, false
	}
	return t[i], true
}

// All returns every device, sorted by codename. The slice is the caller's.
func All() []Device {
	t, _ := table()
	return slices.Clone(t)
}

// Search returns the devices matching every word of query, sorted by
// codename. A word matches when the codename contains it or when a word of
// the name, manufacturer or arch starts with it, case-insensitively
// ("oneplus 6" finds the OnePlus 6 and 6T, not the aarch64 OnePlus 5). An
// empty query returns every device.
func Search(query string) []Device {
	words := strings.Fields(strings.ToLower(query))
	var out []Device
	for _, d := range All() {
		codename := strings.ToLower(d.Codename)
		tokens := strings.FieldsFunc(strings.ToLower(d.Name+" "+d.Manufacturer+" "+d.Arch+" "+d.Codename), func(r rune) bool {
			return !unicode.IsLetter(r) && !unicode.IsDigit(r)
		})
		match := true
		for _, w := range words {
			if strings.Contains(codename, w) || slices.ContainsFunc(tokens, func(tok string) bool { return strings.HasPrefix(tok, w) }) {
				continue
			}
			match = false
			break
		}
		if match {
			out = append(out, d)
		}
	}
	return out
}

//go:embed devices.json.gz
var tableGz []byte

// table decodes the embedded table once; the result is never modified.
var table = sync.OnceValues(func() ([]Device, error) {
	return decode(tableGz)
})

// record is the generator's output shape.
type record struct {
	Category string          `json:"c"`
	Codename string          `json:"n"`
	Info     []deviceinfo.KV `json:"i"`
}

func decode(gz []byte) ([]Device, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("open device table: %w", err)
	}
	dec := json.NewDecoder(bufio.NewReader(zr))
	var out []Device
	for dec.More() {
		var r record
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("decode device table: %w", err)
		}
		out = append(out, fromDeviceinfo(Category(r.Category), r.Codename, r.Info))
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.Codename, b.Codename) })
	return out, nil
}

// fromDeviceinfo derives a Device from the assignments of its deviceinfo
// file; defaults follow pmbootstrap's flasher.
func fromDeviceinfo(cat Category, codename string, info []deviceinfo.KV) Device {
	d := Device{Codename: codename, Category: cat, info: slices.Clone(info)}
	get := func(k string) string { v, _ := d.Value(k); return v }
	or := func(k, def string) string {
		if v := get(k); v != "" {
			return v
		}
		return def
	}
	d.Name = get("name")
	d.Manufacturer = get("manufacturer")
	d.Year, _ = strconv.Atoi(get("year"))
	d.Arch = get("arch")
	d.Chassis = get("chassis")
	d.FlashMethod = or("flash_method", MethodNone)
	d.Sparse = get("flash_sparse") == "true"
	if n, err := strconv.ParseInt(get("flash_fastboot_max_size"), 10, 64); err == nil && n > 0 {
		d.MaxFlashSize = n << 20
	}
	switch d.FlashMethod {
	case MethodFastboot, MethodFastbootBootpart:
		d.Partitions = Partitions{
			Kernel: or("flash_fastboot_partition_kernel", "boot"),
			Rootfs: or("flash_fastboot_partition_rootfs", "userdata"),
			Vbmeta: get("flash_fastboot_partition_vbmeta"),
			Dtbo:   get("flash_fastboot_partition_dtbo"),
		}
	case MethodHeimdallBootimg, MethodHeimdallIsorec:
		d.Partitions = Partitions{
			Kernel: or("flash_heimdall_partition_kernel", "KERNEL"),
			Rootfs: or("flash_heimdall_partition_rootfs", "SYSTEM"),
			Vbmeta: get("flash_heimdall_partition_vbmeta"),
		}
	case "mtkclient":
		d.Partitions = Partitions{
			Kernel: or("flash_mtkclient_partition_kernel", "boot"),
			Rootfs: or("flash_mtkclient_partition_rootfs", "userdata"),
			Dtbo:   get("flash_mtkclient_partition_dtbo"),
		}
	case "rkdeveloptool":
		d.Partitions = Partitions{
			Kernel: get("flash_rk_partition_kernel"),
			Rootfs: get("flash_rk_partition_rootfs"),
		}
	}
	d.VbmetaDisableVerification = d.Partitions.Vbmeta != ""
	return d
}

// ByProduct returns the devices whose bootloader or Android reports
// product (fastboot getvar product, Android's ro.product.device), e.g.
// "sargo" for google-sargo; downstream variants come after mainline ones.
func ByProduct(product string) []Device {
	product = strings.ToLower(strings.TrimSpace(product))
	if product == "" {
		return nil
	}
	var out []Device
	for _, d := range All() {
		if slices.Contains(d.Products(), product) {
			out = append(out, d)
		}
	}
	slices.SortStableFunc(out, func(a, b Device) int {
		ad, bd := strings.HasSuffix(a.Codename, "-downstream"), strings.HasSuffix(b.Codename, "-downstream")
		switch {
		case ad == bd:
			return 0
		case ad:
			return 1
		}
		return -1
	})
	return out
}
