#!/usr/bin/env bash
# Build the client drivers of the compatibility matrix (tests/clients/README.md).
#
#   scripts/clients.sh build [OUT_DIR] [FAMILY...]
#       run tests/clients/<family>/build.sh OUT_DIR for each family (default: all of
#       java go js python), writing one launcher per driver into OUT_DIR
#       (default $DLOG_CACHE_DIR/clients/bin). Exit status: the number of failed builds.
#   scripts/clients.sh list     the driver families
#
# Each build is cached (Maven's local repository, Go's module and build caches,
# npm's cache, the test venv), so a rebuild with nothing changed takes seconds.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${DLOG_CACHE_DIR:-$HOME/.cache/dlog}"
FAMILIES=(java go js python)

case "${1:-}" in
  list) printf '%s\n' "${FAMILIES[@]}"; exit 0 ;;
  build) shift ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
OUT="${1:-$CACHE_DIR/clients/bin}"; shift || true
(($#)) && FAMILIES=("$@")
mkdir -p "$OUT"
failed=0
for fam in "${FAMILIES[@]}"; do
  script="$REPO/tests/clients/$fam/build.sh"
  if [[ ! -x "$script" ]]; then
    echo "clients.sh: no build script for '$fam' ($script)" >&2; failed=$((failed + 1)); continue
  fi
  t0=$SECONDS
  if "$script" "$OUT"; then
    echo "clients.sh: built $fam in $((SECONDS - t0))s"
  else
    echo "clients.sh: building $fam FAILED" >&2; failed=$((failed + 1))
  fi
done
exit "$failed"
