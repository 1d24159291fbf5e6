#!/usr/bin/env bash
# Builds the kafkajs driver: installs the locked dependencies (npm ci, from
# npm's cache when it has them) into node_modules/ beside this script, and
# writes the launcher OUT_DIR/kafkajs. Skips npm ci while node_modules matches
# package-lock.json and the node version.
#
#   tests/clients/js/build.sh OUT_DIR
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"

command -v node >/dev/null 2>&1 || { echo "build.sh: node is required" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "build.sh: npm is required" >&2; exit 1; }

stamp_file="$here/node_modules/.dlog-build-stamp"
stamp="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1) node-$(node --version)"

if [[ ! -f "$stamp_file" || "$(cat "$stamp_file")" != "$stamp" || ! -d "$here/node_modules/kafkajs" ]]; then
  echo "build.sh: npm ci (kafkajs driver)" >&2
  (cd "$here" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error >&2)
  echo "$stamp" >"$stamp_file"
fi

launcher="$out/kafkajs"
tmp="$launcher.tmp.$$"
cat >"$tmp" <<EOF
#!/usr/bin/env bash
exec node "$here/driver.js" "\$@"
EOF
chmod +x "$tmp"
mv -f "$tmp" "$launcher"
echo "$launcher"
