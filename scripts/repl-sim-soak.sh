#!/usr/bin/env bash
# Soak the deterministic simulation of one partition's replicas (dlog-replication,
# tests/it/sim.rs): many more seeds than CI's 1,000, in release mode, in chunks, and
# print every failing seed with the command that replays it.
#
#   ./scripts/repl-sim-soak.sh                 100,000 seeds from 1,000 (past CI's range)
#   ./scripts/repl-sim-soak.sh 1000000         a million seeds
#   ./scripts/repl-sim-soak.sh 50000 2000000   50,000 seeds from 2,000,000
#
# Environment:
#   DLOG_SIM_SOAK_CHUNK   seeds per test run (default 20000): failures show per chunk
#
# Exits non-zero if any seed failed. A failing seed replays, in debug or release, with
#   DLOG_SIM_SEED=<seed> DLOG_SIM_TRACE=1 cargo test -p dlog-replication --test it \
#     sim::simulated_seeds_keep_acknowledged_records -- --exact --nocapture
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

COUNT="${1:-100000}"
START="${2:-1000}"
CHUNK="${DLOG_SIM_SOAK_CHUNK:-20000}"
case "$COUNT$START$CHUNK" in
  *[!0-9]*) echo "repl-sim-soak.sh: count, start and chunk must be numbers" >&2; exit 2 ;;
esac
((CHUNK > 0)) || { echo "repl-sim-soak.sh: the chunk must be positive" >&2; exit 2; }

NAME=sim::simulated_seeds_keep_acknowledged_records
TEST=(cargo test --release -p dlog-replication --test it "$NAME" -- --exact --nocapture)
echo "building the simulation (release)..."
cargo test --release -p dlog-replication --test it --no-run || exit 1

LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
FAILED=()
STARTED=$SECONDS
END=$((START + COUNT))
for ((from = START; from < END; from += CHUNK)); do
  n=$((END - from < CHUNK ? END - from : CHUNK))
  RUST_BACKTRACE=0 DLOG_SIM_START=$from DLOG_SIM_SEEDS=$n "${TEST[@]}" >"$LOG" 2>&1
  status=$?
  mapfile -t seeds < <(sed -n 's/^seed \([0-9]*\) \(failed\|panicked\).*/\1/p' "$LOG" | sort -un)
  FAILED+=("${seeds[@]}")
  summary="$(grep -m1 ' seeds from ' "$LOG")"
  echo "seeds $from..$((from + n)): ${summary:-no summary} (failed: ${seeds[*]:-none})"
  if ((status != 0)) && ((${#seeds[@]} == 0)); then
    echo "the test run failed without naming a seed:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
done

echo "$COUNT seeds from $START in $((SECONDS - STARTED)) s; ${#FAILED[@]} failed"
for seed in "${FAILED[@]}"; do
  echo "  replay: DLOG_SIM_SEED=$seed DLOG_SIM_TRACE=1 cargo test -p dlog-replication --test it $NAME -- --exact --nocapture"
done
((${#FAILED[@]} == 0))
