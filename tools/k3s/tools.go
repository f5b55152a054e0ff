//go:build tools

// Package k3s pins k3s's server command as a build tool.
package k3s

import _ "github.com/k3s-io/k3s/cmd/server"
