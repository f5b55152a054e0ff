package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"golang.org/x/mod/module"

	"github.com/phonefarm/phonefarm/pulumi/provider"
)

// PluginName is the name the Pulumi engine starts phonefarm's provider
// under: phonefarm started by that name serves the provider.
const PluginName = "pulumi-resource-" + provider.Name

// PluginVersion is the provider's version as Pulumi knows it: the
// module's when it is a release, else 0.1.0 for a build from source (a
// checkout's pseudo-version, dirty or not, names no release).
func PluginVersion() string {
	return pluginVersion(buildVersion().Version)
}

func pluginVersion(v string) string {
	if v == "" || v == "(devel)" || strings.Contains(v, "+") || module.IsPseudoVersion(v) {
		return "0.1.0"
	}
	return strings.TrimPrefix(v, "v")
}

// RunProvider serves phonefarm's Pulumi provider to the engine that
// started it and returns the exit status.
func RunProvider(ctx context.Context, stderr io.Writer) int {
	if err := provider.Run(ctx, PluginVersion()); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", PluginName, err)
		return 1
	}
	return 0
}
