//go:build tools

// Package tools pins the pulumi CLI and pulumi-language-yaml in this
// module's go.mod.
package tools

import (
	_ "github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml"
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
)
