// Command build compiles phonefarm's example apps and writes them, per
// architecture, as a docker-archive tarball that k3s imports: put it in
// the inventory's k3s.airgapImages, or push it to your registry.
//
//	go run ./examples/apps/build -arch arm64,amd64 -o images/
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/phonefarm/phonefarm/examples/apps"
	"github.com/phonefarm/phonefarm/internal/oci"
)

func main() {
	archs := flag.String("arch", "arm64", "comma-separated architectures: arm64, arm, amd64")
	out := flag.String("o", ".", "directory for apps-ARCH.tar")
	flag.Parse()
	if err := run(context.Background(), strings.Split(*archs, ","), *out); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, archs []string, out string) error {
	work, err := os.MkdirTemp("", "phonefarm-apps-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, arch := range archs {
		switch arch {
		case "arm64", "arm", "amd64":
		default:
			return fmt.Errorf("unknown architecture %q; want arm64, arm or amd64", arch)
		}
		imgs, err := apps.Images(ctx, arch, work)
		if err != nil {
			return err
		}
		file := filepath.Join(out, "apps-"+arch+".tar")
		if err := oci.WriteArchive(file, imgs); err != nil {
			return err
		}
		fmt.Println(file)
	}
	return nil
}
