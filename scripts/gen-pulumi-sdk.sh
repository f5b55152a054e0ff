#!/usr/bin/env bash
# Regenerates what is generated from phonefarm's Pulumi provider:
# pulumi/schema.json (the provider's schema) and the Go SDK under
# pulumi/sdk/go/phonefarm, with Pulumi's own Go code generator
# (tools/pulumi/gensdk). With --check it changes nothing and fails when
# the checked-in files differ from what would be generated.
set -euo pipefail
cd "$(dirname "$0")/.."
check=${1:-}
out=$PWD/pulumi/sdk/go
# Only the schema test runs here: vetting its dependencies again (go vet
# in scripts/test.sh vets every package) cost more than the check itself.
if [ "$check" = --check ]; then
	go test -vet=off -count=1 -run '^TestSchemaIsCheckedIn$' ./pulumi/provider >/dev/null
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
else
	go test -vet=off -count=1 -run '^TestSchemaIsCheckedIn$' ./pulumi/provider -args -update >/dev/null
	rm -rf pulumi/sdk/go/phonefarm
fi
schema=$PWD/pulumi/schema.json
(cd tools/pulumi && GOFLAGS=-mod=mod go run ./gensdk "$schema" "$out") >&2
if [ "$check" = --check ]; then
	if ! diff -r "$out/phonefarm" pulumi/sdk/go/phonefarm >&2; then
		echo "pulumi/sdk/go/phonefarm is not what the schema generates; run scripts/gen-pulumi-sdk.sh" >&2
		exit 1
	fi
fi
