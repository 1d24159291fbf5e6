#!/usr/bin/env bash
# Writes the launchers OUT_DIR/librdkafka and OUT_DIR/kafka-python. Both clients come
# from the compat suite's venv (tests/compat/requirements.txt, made by scripts/test.sh);
# DLOG_PYTHON_VENV overrides its location.
set -euo pipefail
OUT="${1:?usage: build.sh OUT_DIR}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${DLOG_PYTHON_VENV:-${DLOG_CACHE_DIR:-$HOME/.cache/dlog}/venv}"
[[ -x "$VENV/bin/python" ]] || { echo "python/build.sh: no venv at $VENV (scripts/test.sh makes it)" >&2; exit 1; }
mkdir -p "$OUT"
for pair in librdkafka:librdkafka_driver.py kafka-python:kafka_python_driver.py; do
  name="${pair%%:*}" script="${pair#*:}"
  printf '#!/bin/sh\nexec "%s" -u "%s" "$@"\n' "$VENV/bin/python" "$HERE/$script" >"$OUT/$name"
  chmod +x "$OUT/$name"
done
