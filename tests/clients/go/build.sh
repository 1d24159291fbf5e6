#!/usr/bin/env bash
# Build the Go client drivers (tests/clients/README.md):
#   build.sh OUT_DIR  ->  OUT_DIR/franz-go, OUT_DIR/sarama
# Modules come through Go's configured module proxy into the module cache;
# Go's build cache makes a rebuild with nothing changed take seconds.
set -euo pipefail
if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
command -v go >/dev/null 2>&1 || { echo "build.sh: 'go' is required but not found on PATH" >&2; exit 1; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
cd "$here"
# -mod=readonly: go.mod/go.sum are complete; never edit them during a build.
export GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false"
for d in franz-go sarama; do
  go build -trimpath -o "$out/$d" "./cmd/$d"
done
