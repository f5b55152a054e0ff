//go:build tools

// Package workloads pins the programs of k3s's packaged components that
// phonefarm's test bed builds from the Go module proxy
// (scripts/build-workloads.sh): CoreDNS (./coredns, with the plugins k3s's
// Corefile uses) and local-path-provisioner. Built in one module, they
// share one compile of client-go.
package workloads

import _ "github.com/rancher/local-path-provisioner"
