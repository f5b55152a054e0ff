// Package apps holds phonefarm's example workloads: the pong and chat
// servers, their Kubernetes manifests, and Build, which compiles them and
// packs them into images for a phone architecture.
//
// On a farm without a registry, build the images for your phones and let
// phonefarm ship them:
//
//	go run ./examples/apps/build -arch arm64 -o apps-arm64.tar
//	# farm.yaml: k3s.airgapImages: {arm64: [apps-arm64.tar]}
//	phonefarm apply -f farm.yaml
//	kubectl apply -f examples/apps/
package apps

import (
	"context"
	"embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/phonefarm/phonefarm/internal/oci"
)

// Manifests are the example workloads, by file name.
//
//go:embed *.yaml
var Manifests embed.FS

// ManifestNames lists the manifests in the order to apply them.
func ManifestNames() []string {
	entries, _ := Manifests.ReadDir(".")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// Image references of the example apps.
const (
	PongImage = "phonefarm.dev/examples/pong:v1"
	ChatImage = "phonefarm.dev/examples/chat:v1"
)

var programs = map[string]string{PongImage: "pong", ChatImage: "chat"}

// Images compiles the apps for linux/arch (Go's names: arm64, arm, amd64)
// and returns their images by reference. It runs the go command, so it
// needs this module's source: it is for the build tool and the test bed.
func Images(ctx context.Context, arch, workDir string) (map[string]v1.Image, error) {
	out := map[string]v1.Image{}
	for ref, prog := range programs {
		bin := filepath.Join(workDir, arch, prog)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "github.com/phonefarm/phonefarm/examples/apps/"+prog)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOARM=7")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s for %s: %w\n%s", prog, arch, err, b)
		}
		layer, err := oci.Layer([]oci.File{{Path: "/" + prog, Mode: 0o755, Source: bin}})
		if err != nil {
			return nil, err
		}
		img, err := oci.Image(arch, oci.Config{Entrypoint: []string{"/" + prog}, User: "65534:65534", Ports: []int{8080}}, layer)
		if err != nil {
			return nil, err
		}
		out[ref] = img
	}
	return out, nil
}
