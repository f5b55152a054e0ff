package flash

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
)

// vbmetaDisabled returns an Android Verified Boot vbmeta image with no
// descriptors and the "verification disabled" flag, padded to 4 KiB: what
// pmbootstrap flashes with `avbtool make_vbmeta_image --flags 2
// --padding_size 4096` so that the bootloader boots an unsigned kernel.
func vbmetaDisabled() []byte {
	img := make([]byte, 4096)
	h := img[:256] // AvbVBMetaImageHeader, big endian
	copy(h[0:], "AVB0")
	binary.BigEndian.PutUint32(h[4:], 1)   // required libavb major version
	binary.BigEndian.PutUint32(h[8:], 0)   // minor
	binary.BigEndian.PutUint32(h[28:], 0)  // algorithm NONE
	binary.BigEndian.PutUint32(h[120:], 2) // AVB_VBMETA_IMAGE_FLAGS_VERIFICATION_DISABLED
	copy(h[128:176], "avbtool 1.2.0")
	return img
}

func (im *Images) addVbmeta() error {
	b := vbmetaDisabled()
	p := filepath.Join(im.tmp, "vbmeta-disabled.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	im.List = append(im.List, Image{Role: RoleVbmeta, Path: p, Origin: "generated (verification disabled)", Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
	return nil
}
