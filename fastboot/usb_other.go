//go:build !linux

package fastboot

import (
	"context"
	"errors"
)

// USBDevice is a device in fastboot mode on a USB port.
type USBDevice struct {
	Serial  string `json:"serial"`
	Path    string `json:"path"`
	Product string `json:"product,omitempty"`
}

var errNoUSB = errors.New("fastboot over USB is only implemented on Linux; use tcp:HOST")

// ListUSB is not implemented outside Linux.
func ListUSB(ctx context.Context) ([]USBDevice, error) { return nil, errNoUSB }

func openUSB(ctx context.Context, serial string) (Transport, string, error) {
	return nil, "", errNoUSB
}
