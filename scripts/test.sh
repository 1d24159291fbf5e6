#!/usr/bin/env bash
# Run the whole DLog test suite: build, Rust tests, Kafka-compatibility suite.
#
#   ./scripts/test.sh                 everything
#   ./scripts/test.sh -- -k admin     extra arguments after "--" go to pytest
#
# Environment:
#   DLOG_CACHE_DIR        cache root (default ~/.cache/dlog): Python venv, Apache Kafka
#   CARGO_TARGET_DIR      honoured when locating the dlog binary
#   DLOG_TEST_TARGET      dlog (default) or kafka: which broker the compat suite targets
#   DLOG_TEST_KAFKA_REFERENCE  =1 also runs the whole compat suite against Apache Kafka
#                         (the reference; needs java + mvn, see scripts/kafka.sh)
#   DLOG_SKIP_KAFKA_MATRIX =1 skips the client matrix against Apache Kafka (run by
#                         default: it checks the matrix itself against the reference;
#                         only when the suite or the Kafka version changed since the
#                         passing run tests/compat/kafka-reference.sha256 records, unless
#                         DLOG_KAFKA_MATRIX=always)
#   DLOG_SKIP_PEER        =1 skips the peer suites (scripts/peer-suites.sh against DLog,
#                         compared with tests/peer/kafka-results.json)
#   DLOG_SKIP_CARGO_TEST  =1 skips `cargo test --workspace`
#   DLOG_SKIP_COMPAT      =1 skips the pytest compatibility suite
#   DLOG_PYTHON           interpreter used to create the venv (default python3)
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

PYTEST_ARGS=()
while (($#)); do
  case "$1" in
    --) shift; PYTEST_ARGS+=("$@"); break ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument '$1' (pytest arguments go after --)" >&2; exit 2 ;;
  esac
done

CACHE_DIR="${DLOG_CACHE_DIR:-$HOME/.cache/dlog}"
VENV="$CACHE_DIR/venv"
REQ="$REPO/tests/compat/requirements.txt"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$REPO/$TARGET_DIR"
DLOG_BIN_PATH="$TARGET_DIR/debug/dlog"
LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/dlog-test.XXXXXX")"

STAGES=()      # "name|status|seconds|detail"
FAILED=0
T_START=$SECONDS

banner() { printf '\n==== %s ====\n' "$*"; }
record() { # name status seconds detail
  STAGES+=("$1|$2|$3|${4:-}")
  [[ "$2" == ok || "$2" == skipped ]] || FAILED=1
}

summary() {
  local total=$((SECONDS - T_START))
  banner "summary (${total}s, logs in $LOG_DIR)"
  local s name status secs detail
  for s in "${STAGES[@]}"; do
    IFS='|' read -r name status secs detail <<<"$s"
    printf '  %-22s %-8s %5ss  %s\n' "$name" "$status" "$secs" "$detail"
  done
  # one closing line with the test counts of every runner
  local passed=0 failed=0 skipped=0 p f i
  if [[ -f "$LOG_DIR/cargo-test.log" ]]; then
    while read -r p f i; do
      passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + i))
    done < <(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed; \([0-9]*\) ignored.*/\1 \2 \3/p' \
               "$LOG_DIR/cargo-test.log")
  fi
  local xml
  for xml in "$LOG_DIR/pytest.xml" "$LOG_DIR/pytest-kafka.xml"; do
    [[ -f "$xml" ]] || continue
    read -r p f i < <("$VENV/bin/python" - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
sk = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - sk, f, sk)
PY
    ) || true
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${i:-0}))
  done
  if ((FAILED)); then echo "RESULT: FAILED"; else echo "RESULT: OK"; fi
  echo "total: ${passed} passed, ${failed} failed, ${skipped} skipped"
}

# --- 1. Python environment (cached, reinstalled when requirements change) --------------------
setup_venv() {
  local py="${DLOG_PYTHON:-python3}"
  command -v "$py" >/dev/null || { echo "test.sh: $py not found" >&2; return 1; }
  local stamp want
  want="$( { cat "$REQ"; "$py" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
  stamp="$VENV/.requirements.sha256"
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "venv up to date: $VENV"
    return 0
  fi
  echo "creating venv $VENV"
  rm -rf "$VENV"
  mkdir -p "$CACHE_DIR"
  if ! "$py" -m venv "$VENV"; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      echo "python venv module missing; installing python3-venv"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv \
        && rm -rf "$VENV" && "$py" -m venv "$VENV" || return 1
    else
      return 1
    fi
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip || return 1
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" || return 1
  echo "$want" >"$stamp"
}

run_stage() { # name logfile cmd...
  local name="$1" log="$2"; shift 2
  banner "$name"
  local t0=$SECONDS rc
  if [[ -n "$log" ]]; then
    "$@" 2>&1 | tee "$log"; rc=${PIPESTATUS[0]}
  else
    "$@"; rc=$?
  fi
  local secs=$((SECONDS - t0))
  if ((rc == 0)); then record "$name" ok "$secs"; else record "$name" FAILED "$secs" "exit $rc"; fi
  return $rc
}

run_stage "python env" "" setup_venv
VENV_OK=$?

BUILD_OK=1
run_stage "cargo build" "$LOG_DIR/cargo-build.log" cargo build --bin dlog || BUILD_OK=0

if [[ "${DLOG_SKIP_CARGO_TEST:-0}" == 1 ]]; then
  record "cargo test" skipped 0 "DLOG_SKIP_CARGO_TEST=1"
else
  run_stage "cargo test" "$LOG_DIR/cargo-test.log" cargo test --workspace
fi

run_compat() { # target junit-file [test paths...]
  export DLOG_BIN="$DLOG_BIN_PATH"
  export DLOG_CACHE_DIR="$CACHE_DIR"
  export DLOG_TEST_TARGET="$1"
  local junit="$2"; shift 2
  (($#)) || set -- tests/compat
  echo "target: $DLOG_TEST_TARGET, DLOG_BIN=$DLOG_BIN"
  "$VENV/bin/python" -m pytest "$@" -p no:cacheprovider \
    --junitxml="$junit" ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"}
  local rc=$?
  case $rc in
    0) return 0 ;;
    5) echo "test.sh: pytest collected no tests: that is a failure" >&2; return 5 ;;
    *) return $rc ;;
  esac
}

MAIN_TARGET="${DLOG_TEST_TARGET:-dlog}"
if [[ "${DLOG_SKIP_COMPAT:-0}" == 1 ]]; then
  record "compat (pytest)" skipped 0 "DLOG_SKIP_COMPAT=1"
elif ((VENV_OK != 0)); then
  record "compat (pytest)" FAILED 0 "no Python environment"
elif ((BUILD_OK == 0)) && [[ "$MAIN_TARGET" == dlog ]]; then
  record "compat (pytest)" FAILED 0 "dlog binary did not build"
else
  run_stage "compat ($MAIN_TARGET)" "" run_compat "$MAIN_TARGET" "$LOG_DIR/pytest.xml"
fi

# The files that make the client matrix and the connection-cut tests what they are, and
# the Kafka they run against: when none changed since the reference run recorded in
# tests/compat/kafka-reference.sha256 passed, that run still holds.
KAFKA_REF_STAMP="$REPO/tests/compat/kafka-reference.sha256"
kafka_ref_inputs_hash() {
  { printf '%s\n' tests/compat/{matrix,test_matrix,test_connection_cuts,helpers,conftest,proxy,checker}.py \
      tests/compat/requirements.txt scripts/kafka.sh
    git -C "$REPO" ls-files tests/clients 2>/dev/null || find tests/clients -type f; } \
    | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1
}
run_kafka_matrix() {
  run_compat kafka "$LOG_DIR/pytest-kafka.xml" tests/compat/test_matrix.py tests/compat/test_connection_cuts.py \
    && kafka_ref_inputs_hash >"$KAFKA_REF_STAMP"
}

if [[ "${DLOG_TEST_KAFKA_REFERENCE:-0}" == 1 && "$MAIN_TARGET" != kafka && "${DLOG_SKIP_COMPAT:-0}" != 1 ]] \
   && ((VENV_OK == 0)); then
  run_stage "compat (kafka ref)" "" run_compat kafka "$LOG_DIR/pytest-kafka.xml"
elif [[ "${DLOG_SKIP_KAFKA_MATRIX:-0}" == 1 || "$MAIN_TARGET" == kafka || "${DLOG_SKIP_COMPAT:-0}" == 1 ]] \
   || ((VENV_OK != 0)) || ((${#PYTEST_ARGS[@]} != 0)); then
  :
elif [[ "${DLOG_KAFKA_MATRIX:-changed}" != always && -f "$KAFKA_REF_STAMP" \
        && "$(cat "$KAFKA_REF_STAMP")" == "$(kafka_ref_inputs_hash)" ]]; then
  record "matrix (kafka ref)" skipped 0 "suite and Kafka unchanged since the recorded reference run"
else
  # The client matrix and the connection-cut tests against the reference broker: a
  # step that fails on Kafka too is a bug in the suite, not in DLog.
  run_stage "matrix (kafka ref)" "" run_kafka_matrix
fi

# Two client projects' own test suites (librdkafka's, kafka-python's) against DLog,
# compared with Kafka's recorded results (tests/peer): a test that passes there and not
# here fails, unless tests/peer/known-gaps.txt names the missing capability.
if [[ "${DLOG_SKIP_PEER:-0}" == 1 || "$MAIN_TARGET" == kafka || ${#PYTEST_ARGS[@]} != 0 ]]; then
  record "peer suites" skipped 0 "${DLOG_SKIP_PEER:+DLOG_SKIP_PEER=1}"
elif ((BUILD_OK == 0)) || ((VENV_OK != 0)); then
  record "peer suites" FAILED 0 "no dlog binary or Python environment"
else
  run_stage "peer suites" "$LOG_DIR/peer-suites.log" env DLOG_BIN="$DLOG_BIN_PATH" DLOG_CACHE_DIR="$CACHE_DIR" \
    "$REPO/scripts/peer-suites.sh" all --target dlog --compare "$REPO/tests/peer/kafka-results.json"
fi

summary
exit $FAILED
