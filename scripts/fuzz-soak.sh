#!/usr/bin/env bash
# Soak DLog's fuzz targets (dlog-fuzz): the property tests of tests/fuzz.rs in release
# mode, with debug assertions and overflow checks on (they are what catch most decoder
# bugs), round after round with a fresh seed each, for hours.
#
#   ./scripts/fuzz-soak.sh                  every target, for DLOG_FUZZ_HOURS hours
#   ./scripts/fuzz-soak.sh request_decode   one target (a name from dlog_fuzz::TARGETS)
#
# Environment:
#   DLOG_FUZZ_CASES    cases per target per round (default 1000000; the targets that
#                      write files run a quarter as many)
#   DLOG_FUZZ_HOURS    keep starting rounds until this many hours have passed (default 4)
#   DLOG_FUZZ_ROUNDS   stop after this many rounds instead (default: no limit)
#   DLOG_FUZZ_SEED     the first round's seed (default: random); round n uses seed + n
#   DLOG_FUZZ_CHECKS   0: plain release build, without debug assertions and overflow checks
#   DLOG_FUZZ_ROUND_TIMEOUT  seconds a round may take before it counts as a hang
#                      (default 21600)
#   DLOG_FUZZ_CRASH_DIR  where the inputs of crashes that kill the process go (default
#                      $HOME/.cache/dlog/fuzz-crashes)
#
# A failing case is shrunk and printed by proptest and recorded in
# dlog-fuzz/proptest-regressions/fuzz.txt, which every later `cargo test -p dlog-fuzz`
# replays: commit that file's new lines, and spell the case out in
# dlog-fuzz/tests/regressions.rs with the fix. A round replays with the
#   PROPTEST_RNG_SEED=<seed> PROPTEST_CASES=<cases> cargo test --release -p dlog-fuzz --test fuzz <target>
# line printed for it. A crash that takes the process down (an abort, a stack overflow,
# a hang) is run again alone with the same seed, saving each case's input first; the
# last input is kept and the command replaying it printed.
#
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) needs a nightly toolchain; its
# targets would call the same functions (dlog_fuzz::TARGETS) on its inputs.
# Exits non-zero if any round failed.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dlog/target}"

TARGET="${1:-}"
CASES="${DLOG_FUZZ_CASES:-1000000}"
HOURS="${DLOG_FUZZ_HOURS:-4}"
ROUNDS="${DLOG_FUZZ_ROUNDS:-0}"
SEED="${DLOG_FUZZ_SEED:-$(( (RANDOM << 30) | (RANDOM << 15) | RANDOM ))}"
ROUND_TIMEOUT="${DLOG_FUZZ_ROUND_TIMEOUT:-21600}"
CRASH_DIR="${DLOG_FUZZ_CRASH_DIR:-$HOME/.cache/dlog/fuzz-crashes}"
case "$CASES$HOURS$ROUNDS$SEED$ROUND_TIMEOUT" in
  *[!0-9]*) echo "fuzz-soak.sh: cases, hours, rounds, seed and timeout must be numbers" >&2; exit 2 ;;
esac
if [[ "${DLOG_FUZZ_CHECKS:-1}" != 0 ]]; then
  # A profile of their own in the artifacts: plain release builds are not disturbed.
  export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
fi

TEST=(cargo test --release -p dlog-fuzz --test fuzz)
echo "building the fuzz targets (release)..."
"${TEST[@]}" --no-run || exit 1
FILTER=()
if [[ -n "$TARGET" ]]; then
  # The test of a target is named after it.
  "${TEST[@]}" -- --list 2>/dev/null | grep -qx "$TARGET: test" || {
    echo "fuzz-soak.sh: no target $TARGET; the targets are:" >&2
    "${TEST[@]}" -- --list 2>/dev/null | sed -n 's/: test$//p' | grep -v '^every_\|^replay$' >&2
    exit 2
  }
  FILTER=("$TARGET" --exact)
fi

LOG="$(mktemp)"
LAST="$(mktemp -d)"
trap 'rm -rf "$LOG" "$LAST"' EXIT
FAILED=0
STARTED=$SECONDS
for ((round = 0; ; round++)); do
  ((ROUNDS > 0 && round >= ROUNDS)) && break
  ((ROUNDS == 0 && SECONDS - STARTED >= HOURS * 3600)) && break
  seed=$((SEED + round))
  began=$SECONDS
  PROPTEST_RNG_SEED=$seed PROPTEST_CASES=$CASES timeout "$ROUND_TIMEOUT" \
    "${TEST[@]}" -- "${FILTER[@]}" --test-threads "$(nproc)" >"$LOG" 2>&1
  status=$?
  passed="$(sed -n 's/^test \([a-z_]*\) \.\.\. ok$/\1/p' "$LOG" | sort)"
  failed="$(sed -n 's/^test \([a-z_]*\) \.\.\. FAILED$/\1/p' "$LOG" | sort)"
  echo "round $round, seed $seed, $CASES cases: $((SECONDS - began)) s, status $status; failed: ${failed:-none}"
  if [[ -n "$failed" ]]; then
    FAILED=$((FAILED + 1))
    grep -E -A12 '^Test failed|^minimal failing input' "$LOG" | head -n 200
    for t in $failed; do
      echo "  replay: PROPTEST_RNG_SEED=$seed PROPTEST_CASES=$CASES ${TEST[*]} $t -- --exact"
    done
  fi
  if ((status != 0)) && ! grep -q '^test result:' "$LOG"; then
    # The process died (or hung): find which target, by running each unfinished one
    # alone with the same seed, saving every input before it runs.
    FAILED=$((FAILED + 1))
    echo "the test process died (status $status); its last lines:"
    tail -n 20 "$LOG"
    mkdir -p "$CRASH_DIR"
    all="$("${TEST[@]}" -- --list 2>/dev/null | sed -n 's/: test$//p' | grep -v '^every_\|^replay$')"
    for t in ${TARGET:-$all}; do
      grep -qx "$t" <<<"$passed" && continue
      rm -f "$LAST"/*.last
      DLOG_FUZZ_LAST_INPUT="$LAST" PROPTEST_RNG_SEED=$seed PROPTEST_CASES=$CASES timeout "$ROUND_TIMEOUT" \
        "${TEST[@]}" -- "$t" --exact >/dev/null 2>&1
      rerun=$?
      if ((rerun != 0)) && [[ -f "$LAST/$t.last" ]]; then
        kept="$CRASH_DIR/$t-$seed.bin"
        cp "$LAST/$t.last" "$kept"
        echo "  $t crashed (status $rerun) on the input kept in $kept"
        echo "  replay: DLOG_FUZZ_REPLAY=$t:$kept cargo test -p dlog-fuzz --test fuzz replay -- --nocapture"
      fi
    done
  fi
done

echo "$round rounds in $((SECONDS - STARTED)) s; $FAILED failed"
((FAILED == 0))
