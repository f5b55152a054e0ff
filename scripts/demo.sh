#!/usr/bin/env bash
# Builds phonefarm and runs it against the demo farm: simulated phones on
# this machine (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mkdir -p bin
go build -o bin/phonefarm ./cmd/phonefarm
exec bin/phonefarm demo up "$@"
