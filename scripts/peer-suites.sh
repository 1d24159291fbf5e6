#!/usr/bin/env bash
# Run two peer projects' own test suites against a broker: librdkafka's regression
# suite (its tests/ test-runner, a curated list) and kafka-python's integration tests.
#
#   scripts/peer-suites.sh [librdkafka|kafka-python|all] [--target dlog|kafka] [options]
#
#   --target dlog|kafka   the broker to start: DLog ($DLOG_BIN) or Apache Kafka via
#                         scripts/kafka.sh (default dlog)
#   --out DIR             results directory (default $DLOG_CACHE_DIR/peer/runs/TARGET-TIME)
#   --record FILE         also write the run's results.json to FILE (how
#                         tests/peer/kafka-results.json is made: --target kafka --record ...)
#   --compare FILE        compare with recorded results (tests/peer/kafka-results.json): a
#                         test that passed there and does not pass here fails the script,
#                         unless tests/peer/known-gaps.txt lists it with a reason
#   --tests N,N           librdkafka: run only these numbers of the curated list
#   -k EXPR               kafka-python: pytest -k expression
#
# Results: DIR/results.jsonl (one {"suite","test","status","seconds","detail"} per test,
# status pass/fail/skip), DIR/results.json (the same as one document, the format of
# --record/--compare), DIR/summary.txt, DIR/<suite>/ logs (one per librdkafka test
# list line, kafka-python's pytest output, the brokers' logs). Exit 0 when the suites ran
# (failures are in the summary); with --compare 1 when a regression was found; 2 when
# something could not be set up (build, download, broker start).
#
# Each suite gets a fresh broker configured like the project's own test fixture
# configures its brokers (see broker_start); the reference Kafka comes from
# scripts/kafka.sh (KRaft, one node), DLog from $DLOG_BIN with a --config file.
#
# One-time work, cached under $DLOG_CACHE_DIR/peer (default ~/.cache/dlog/peer):
# librdkafka is copied from the rdkafka-sys crate the workspace locks (Cargo.lock, found
# in $CARGO_HOME/registry/src) and built with its tests (nice, make -j$PEER_MAKE_JOBS);
# the kafka-python sdist is fetched with pip into downloads/ and unpacked. Apache Kafka's
# jars (scripts/kafka.sh install) provide kafka-topics and kafka-acls for the librdkafka
# tests that call them (KAFKA_PATH), against either target.
#
# Environment: DLOG_CACHE_DIR, DLOG_BIN (default $CARGO_TARGET_DIR/debug/dlog or
# target/debug/dlog), CARGO_HOME (default ~/.cargo), PEER_MAKE_JOBS (default 2),
# PEER_TIMEOUT_MULTIPLIER (librdkafka's test.timeout.multiplier, default 2),
# PEER_RDK_TIMEOUT (hard limit per librdkafka test number, seconds, default 120),
# PEER_RDK_JOBS (librdkafka list entries run at once, default 3),
# PEER_KP_TEST_TIMEOUT (per kafka-python test, default 30), PEER_KP_TIMEOUT (whole
# kafka-python run, default 420), PEER_KAFKA_PYTHON_VERSION (default 3.0.12),
# PEER_DEFAULT_PARTITIONS (the broker's default partition count, default 4),
# PEER_LIBRDKAFKA_LIST (another curated list, default tests/peer/librdkafka-tests.txt).
set -uo pipefail
# (the whole script is one compound command: bash reads it completely before running it)
{

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${DLOG_CACHE_DIR:-$HOME/.cache/dlog}"
PEER_DIR="$CACHE_DIR/peer"
VENV="$CACHE_DIR/venv"
PEER_TESTS="$REPO/tests/peer"
RDK_LIST="${PEER_LIBRDKAFKA_LIST:-$PEER_TESTS/librdkafka-tests.txt}"
GAPS_FILE="$PEER_TESTS/known-gaps.txt"
KAFKA_SH="$REPO/scripts/kafka.sh"
KP_VERSION="${PEER_KAFKA_PYTHON_VERSION:-3.0.12}"
MAKE_JOBS="${PEER_MAKE_JOBS:-2}"
TIMEOUT_MULT="${PEER_TIMEOUT_MULTIPLIER:-2}"
RDK_TIMEOUT="${PEER_RDK_TIMEOUT:-120}"
RDK_JOBS="${PEER_RDK_JOBS:-3}"
KP_TEST_TIMEOUT="${PEER_KP_TEST_TIMEOUT:-30}"
KP_TIMEOUT="${PEER_KP_TIMEOUT:-420}"
DEFAULT_PARTITIONS="${PEER_DEFAULT_PARTITIONS:-4}"
# librdkafka configure: no network-fetched dependencies (--install-deps stays off);
# system libraries where present, the bundled LZ4, no Kerberos or libcurl.
RDK_CONFIGURE_FLAGS=(--disable-gssapi --disable-curl --disable-lz4-ext)

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; }
log() { printf '[peer %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 2; }

SUITE=all TARGET=dlog OUT="" RECORD="" COMPARE="" ONLY_TESTS="" KP_K=""
while (($#)); do
  case "$1" in
    librdkafka|kafka-python|all) SUITE="$1" ;;
    --target) TARGET="${2:?--target needs dlog or kafka}"; shift ;;
    --target=*) TARGET="${1#*=}" ;;
    --out) OUT="${2:?}"; shift ;;
    --record) RECORD="${2:?}"; shift ;;
    --compare) COMPARE="${2:?}"; shift ;;
    --tests) ONLY_TESTS="${2:?}"; shift ;;
    -k) KP_K="${2:?}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
  shift
done
[[ "$TARGET" == dlog || "$TARGET" == kafka ]] || die "--target must be dlog or kafka"
[[ -z "$COMPARE" || -f "$COMPARE" ]] || die "--compare: no file $COMPARE"
SUITES=()
case "$SUITE" in
  all) SUITES=(librdkafka kafka-python) ;;
  *) SUITES=("$SUITE") ;;
esac

PY="$VENV/bin/python"
if [[ ! -x "$PY" ]]; then
  [[ " ${SUITES[*]} " == *" kafka-python "* ]] \
    && die "no Python environment at $VENV (scripts/test.sh creates it)"
  PY="$(command -v python3)" || die "python3 not found"
fi

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$REPO/$TARGET_DIR"
DLOG_BIN="${DLOG_BIN:-$TARGET_DIR/debug/dlog}"
KAFKA_VERSION="$("$KAFKA_SH" version)"

T_START=$SECONDS
[[ -n "$OUT" ]] || OUT="$PEER_DIR/runs/$TARGET-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT" || die "cannot create $OUT"
OUT="$(cd "$OUT" && pwd)"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
SUITE_META="$OUT/suites.jsonl"   # one {"suite","seconds","note"} per suite
: >"$SUITE_META"
log "target $TARGET, suites: ${SUITES[*]}, results in $OUT"

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pid_alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# --- the broker ---------------------------------------------------------------------------
BROKER_PID="" BROKER_PORT="" BROKER_DIR=""

# Each suite's broker is configured like that project's own test fixture configures
# its brokers (librdkafka: trivup's "default" scenario; kafka-python:
# servers/resources/*/kafka.properties): $DEFAULT_PARTITIONS partitions for an auto-created
# topic, an ACL authorizer that allows everything no ACL denies, and for kafka-python
# broker id 0, group.min.session.timeout.ms=1000 and group.initial.rebalance.delay.ms=0.
# For librdkafka the initial rebalance delay is 300 ms: trivup leaves Kafka's 3000, which
# costs 3 s per new group (minutes over the suite); with 0 the first member of a new group
# can complete a generation alone before a member that subscribed a millisecond later
# joins, which 0102 does not expect. DLog gets the same settings where it has them (it
# has no authorizer).
BROKER_NODE_ID="" BROKER_MIN_SESSION_MS="" BROKER_INITIAL_DELAY_MS=0

broker_start() { # dir
  BROKER_DIR="$1"
  mkdir -p "$BROKER_DIR"
  [[ -n "$BROKER_PORT" ]] || BROKER_PORT="$(free_port)"
  if [[ "$TARGET" == dlog ]]; then
    [[ -x "$DLOG_BIN" ]] || { log "no dlog binary at $DLOG_BIN (set DLOG_BIN)"; return 1; }
    {
      [[ -z "$BROKER_NODE_ID" ]] || echo "node_id = $BROKER_NODE_ID"
      echo "num_partitions = $DEFAULT_PARTITIONS"
      printf '[groups]\n"group.initial.rebalance.delay.ms" = %s\n' "$BROKER_INITIAL_DELAY_MS"
      [[ -z "$BROKER_MIN_SESSION_MS" ]] \
        || printf '"group.min.session.timeout.ms" = %s\n' "$BROKER_MIN_SESSION_MS"
    } >"$BROKER_DIR/dlog.toml"
    NO_COLOR=1 RUST_BACKTRACE=1 "$DLOG_BIN" broker --config "$BROKER_DIR/dlog.toml" \
      --data-dir "$BROKER_DIR/data" --listen "127.0.0.1:$BROKER_PORT" \
      >>"$BROKER_DIR/broker.log" 2>&1 </dev/null &
    BROKER_PID=$!
    local deadline=$((SECONDS + 60))
    until port_open "$BROKER_PORT"; do
      if ! pid_alive "$BROKER_PID" || ((SECONDS > deadline)); then
        tail -n 30 "$BROKER_DIR/broker.log" >&2
        kill -KILL "$BROKER_PID" 2>/dev/null
        return 1
      fi
      sleep 0.1
    done
  else
    local props
    props="num.partitions=$DEFAULT_PARTITIONS
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=true
group.initial.rebalance.delay.ms=$BROKER_INITIAL_DELAY_MS"
    [[ -z "$BROKER_MIN_SESSION_MS" ]] || props+="
group.min.session.timeout.ms=$BROKER_MIN_SESSION_MS"
    KAFKA_EXTRA_PROPS="$props" KAFKA_NODE_ID="${BROKER_NODE_ID:-1}" \
      "$KAFKA_SH" start "$BROKER_DIR/kafka" "$BROKER_PORT" >>"$BROKER_DIR/broker.log" 2>&1 \
      || { tail -n 30 "$BROKER_DIR/broker.log" >&2; return 1; }
    BROKER_PID="$(cat "$BROKER_DIR/kafka/kafka.pid")"
  fi
  log "$TARGET broker up on 127.0.0.1:$BROKER_PORT (pid $BROKER_PID)"
}

BROKER_NOTE=""   # set by broker_stop/broker_check: how the broker ended, when it matters

broker_stop() {
  [[ -n "$BROKER_PID" ]] || return 0
  if [[ "$TARGET" == dlog ]]; then
    if pid_alive "$BROKER_PID"; then
      kill -TERM "$BROKER_PID" 2>/dev/null
      local deadline=$((SECONDS + 30))
      while pid_alive "$BROKER_PID" && ((SECONDS < deadline)); do sleep 0.1; done
      if pid_alive "$BROKER_PID"; then
        kill -KILL "$BROKER_PID" 2>/dev/null
        BROKER_NOTE="dlog broker ignored SIGTERM for 30s"
      fi
    fi
    wait "$BROKER_PID" 2>/dev/null
    local rc=$?
    if [[ -z "$BROKER_NOTE" ]] && ((rc != 0)); then BROKER_NOTE="dlog broker exited with $rc after SIGTERM"; fi
  else
    "$KAFKA_SH" stop "$BROKER_DIR/kafka" >>"$BROKER_DIR/broker.log" 2>&1
  fi
  BROKER_PID=""
}

broker_alive() { [[ -n "$BROKER_PID" ]] && pid_alive "$BROKER_PID"; }

# After a test: when the broker died on its own, BROKER_NOTE says so (and it is
# restarted before the next test).
broker_check() {
  BROKER_NOTE=""
  broker_alive && return 0
  if [[ "$TARGET" == dlog ]]; then
    wait "$BROKER_PID" 2>/dev/null
    BROKER_NOTE="the dlog broker exited with $? during the test (see broker/broker.log)"
  else
    BROKER_NOTE="the Kafka broker process exited during the test"
  fi
  BROKER_PID=""
}

meta_line() { # suite version seconds note [missing-from-sdist]
  "$PY" -c 'import json, sys
d = dict(zip(("suite", "version", "seconds", "note", "missing_from_sdist"), sys.argv[1:]))
d["seconds"] = int(d["seconds"])
print(json.dumps({k: v for k, v in d.items() if v != ""}))' "$@" >>"$SUITE_META"
}

# --- kafka-topics/kafka-acls for librdkafka's tests (KAFKA_PATH/bin/*.sh) ---------------------
kafka_bin_dir() { # prints KAFKA_PATH, or nothing when Kafka's jars cannot be installed
  local lib
  lib="$("$KAFKA_SH" install 2>>"$OUT/kafka-install.log" | tail -n1)" || return 0
  [[ -d "$lib" ]] || return 0
  local kp="$PEER_DIR/kafka-tools-$KAFKA_VERSION"
  mkdir -p "$kp/bin"
  cat >"$kp/log4j2.properties" <<'L4J'
status = warn
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
L4J
  local tool cls
  for tool in kafka-topics:TopicCommand kafka-acls:AclCommand; do
    cls="${tool#*:}" tool="${tool%%:*}"
    cat >"$kp/bin/$tool.sh" <<SH
#!/usr/bin/env bash
# Kafka's $tool ($cls) from the jars scripts/kafka.sh installed.
exec java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \\
  -Dlog4j2.configurationFile="$kp/log4j2.properties" -cp "$lib/*" \\
  org.apache.kafka.tools.$cls "\$@"
SH
    chmod +x "$kp/bin/$tool.sh"
  done
  echo "$kp"
}

# --- librdkafka --------------------------------------------------------------------------------
RDK_VERSION="" RDK_DIR=""

rdk_locate() {
  local crate_ver
  crate_ver="$(awk '$0 == "name = \"rdkafka-sys\"" {f=1; next}
                    f && /^version = / {gsub(/"/, "", $3); print $3; exit}' "$REPO/Cargo.lock")"
  [[ -n "$crate_ver" ]] || { log "rdkafka-sys not found in Cargo.lock"; return 1; }
  RDK_VERSION="${crate_ver#*+}"
  local src
  src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"rdkafka-sys-$crate_ver"/librdkafka 2>/dev/null | head -n1)"
  RDK_DIR="$PEER_DIR/librdkafka-$RDK_VERSION"
  local want="src=rdkafka-sys-$crate_ver flags=${RDK_CONFIGURE_FLAGS[*]}"
  if [[ -x "$RDK_DIR/tests/test-runner" && "$(cat "$RDK_DIR/.peer-built" 2>/dev/null)" == "$want" ]]; then
    return 0
  fi
  [[ -n "$src" && -d "$src/tests" ]] \
    || { log "librdkafka source of rdkafka-sys $crate_ver not found under ${CARGO_HOME:-$HOME/.cargo}/registry/src (fetch the workspace's crates first)"; return 1; }
  log "building librdkafka $RDK_VERSION and its test-runner in $RDK_DIR (once; make -j$MAKE_JOBS)"
  rm -rf "$RDK_DIR"
  mkdir -p "$PEER_DIR"
  cp -a "$src" "$RDK_DIR" || return 1
  local t0=$SECONDS
  if ! (cd "$RDK_DIR" \
        && nice -n 10 ./configure "${RDK_CONFIGURE_FLAGS[@]}" \
        && nice -n 10 make -j"$MAKE_JOBS" libs \
        && nice -n 10 make -j"$MAKE_JOBS" -C tests test-runner) >"$PEER_DIR/librdkafka-$RDK_VERSION.build.log" 2>&1; then
    tail -n 40 "$PEER_DIR/librdkafka-$RDK_VERSION.build.log" >&2
    log "librdkafka build failed (log: $PEER_DIR/librdkafka-$RDK_VERSION.build.log)"
    return 1
  fi
  echo "$want" >"$RDK_DIR/.peer-built"
  log "librdkafka built in $((SECONDS - t0))s"
}

rdk_parse() { # number log rc hard-timeout broker-note subtests -> JSON lines on stdout
  "$PY" - "$@" <<'PY'
import json, re, sys
num, path, rc, hard, note, sub = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", open(path, errors="replace").read())
lines = text.splitlines()
row = re.compile(r"^\|\s*(\S+)\s*\|\s*([A-Z]+)\s*\|\s*([0-9.]+)s\s*\|\s?(.*)$")
tables, cur = [], None
for ln in lines:
    if re.match(r"^TEST \S+ \(.*\) SUMMARY", ln):
        cur = []
        tables.append(cur)
    elif cur is not None:
        m = row.match(ln)
        if m:
            cur.append(m.groups())
first_fail = {}  # test -> "file:line:function(): the message on the next line"
for i, ln in enumerate(lines):
    m = re.search(r'### Test "([^" ]+)[^"]*" failed at (\S+?)(?: at [A-Z][a-z]{2} .*)?: ###', ln)
    if m and m.group(1) not in first_fail:
        nxt = next((l.strip() for l in lines[i + 1:i + 4] if l.strip()), "")
        first_fail[m.group(1)] = f"{m.group(2)}: {nxt}"
out = []
killed = rc in (124, 137)
if tables:
    for name, state, secs, extra in tables[-1]:
        if name == "<MAIN>" or state == "DNS":
            continue
        extra = extra.strip()
        if state == "SKIPPED" and ("negative test flags" in extra or "requires test scenario" in extra):
            continue  # outside the curated set: local/mock/sockem variants, other scenarios
        status = {"PASSED": "pass", "FAILED": "fail", "SKIPPED": "skip"}.get(state, "fail")
        if state == "RUNNING":
            extra = "still running when the runner stopped"
        if status == "fail":
            extra = first_fail.get(name, extra)
        out.append([name, status, float(secs), extra])
else:
    started = re.findall(r"=+ Running test (\S+) =+", text)
    passed = set(re.findall(r"=+ Test (\S+) PASSED =+", text))
    why = (f"killed by the {hard}s hard timeout" if killed else f"test-runner exited with {rc} and no summary")
    for name in dict.fromkeys(started):
        if name in passed:
            out.append([name, "pass", 0.0, ""])
        else:
            out.append([name, "fail", 0.0, first_fail.get(name, why)])
    if not started:
        out.append([num, "fail", 0.0, why])
for name, status, secs, detail in out:
    if note and status != "skip":
        status, detail = "fail", f"{note}; {detail}" if detail else note
    if sub and name != num:
        name += f"[{sub}]"  # one entry per subtests= line of the same test
    print(json.dumps({"suite": "librdkafka", "test": name, "status": status,
                      "seconds": secs, "detail": detail[:400]}))
PY
}

# One line of the curated list, run in the background: test-runner under a hard
# timeout, its log parsed into DIR/logs/LF.jsonl. A broker that died meanwhile turns the
# entry's results into failures.
rdk_entry() { # dir number subtests quick-flag timeout log-name kafka-path "n/total"
  local dir="$1" num="$2" subtests="$3" quick="$4" tmo="$5" lf="$6" kpath="$7" tl=$SECONDS rc note=""
  # timeout is the child (not the runner), so a runner that aborts on a failed
  # assertion is an exit status here, not a shell job message
  # (the braces take the shell's own "Aborted" report of a runner that aborts: its
  # status is what counts)
  { (cd "$dir/work" && exec timeout -k 10 "$tmo" env -u CI TESTS="$num" \
     ${subtests:+SUBTESTS="$subtests"} RDKAFKA_TEST_CONF="$dir/test.conf" \
     TEST_KAFKA_VERSION="$KAFKA_VERSION" ${kpath:+KAFKA_PATH="$kpath"} \
     BROKERS="127.0.0.1:$BROKER_PORT" \
     LD_LIBRARY_PATH="$RDK_DIR/src:$RDK_DIR/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
     "$RDK_DIR/tests/test-runner" -p1 -L -E $quick) >"$dir/logs/$lf.log" 2>&1 </dev/null; } 2>/dev/null
  rc=$?
  pid_alive "$BROKER_PID" || note="the $TARGET broker exited during the test (see broker/broker.log)"
  rdk_parse "$num" "$dir/logs/$lf.log" "$rc" "$tmo" "$note" "$subtests" >"$dir/logs/$lf.jsonl"
  "$PY" -c 'import json,sys
for l in sys.stdin:
    r = json.loads(l); print("  %-45s %-4s %s" % (r["test"], r["status"], r["detail"][:100]))' \
    <"$dir/logs/$lf.jsonl" >&2
  log "librdkafka $num${subtests:+ [$subtests]} ($8) done in $((SECONDS - tl))s"
}

# Waits until fewer than $1 entries of `running` (pids of rdk_entry jobs) are alive.
rdk_pool_wait() {
  local p alive
  while :; do
    alive=()
    for p in "${running[@]}"; do pid_alive "$p" && alive+=("$p"); done
    running=("${alive[@]}")
    ((${#running[@]} < $1)) && return 0
    sleep 0.2
  done
}

run_librdkafka() {
  local dir="$OUT/librdkafka"
  mkdir -p "$dir/logs" "$dir/work"
  rdk_locate || return 2
  local t0=$SECONDS
  local kpath
  kpath="$(kafka_bin_dir)"
  [[ -n "$kpath" ]] || log "no Kafka jars: tests calling kafka-topics or kafka-acls (0052, 0109) will fail"
  broker_start "$dir/broker" || { log "broker did not start"; return 2; }
  cat >"$dir/test.conf" <<CONF
metadata.broker.list=127.0.0.1:$BROKER_PORT
test.timeout.multiplier=$TIMEOUT_MULT
test.topic.random=true
CONF
  local line num opts tmo subtests quick solo n=0 total lf order=() running=()
  total="$(grep -oE '^[0-9]{4}' "$RDK_LIST" | { if [[ -n "$ONLY_TESTS" ]]; then grep -xF -f <(tr ',' '\n' <<<"$ONLY_TESTS"); else cat; fi; } | wc -l)"
  while IFS= read -r line; do
    line="${line%%#*}"
    read -r num opts <<<"$line"
    [[ "$num" =~ ^[0-9]{4}$ ]] || continue
    if [[ -n "$ONLY_TESTS" && ",$ONLY_TESTS," != *",$num,"* ]]; then continue; fi
    n=$((n + 1))
    tmo="$RDK_TIMEOUT" subtests="" quick=-Q solo=0
    for o in $opts; do
      case "$o" in
        timeout=*) tmo="${o#timeout=}" ;;
        subtests=*) subtests="${o#subtests=}" ;;
        full) quick="" ;;
        solo) solo=1 ;;
      esac
    done
    if ! broker_alive; then
      rdk_pool_wait 1
      broker_check
      log "broker not running before $num${BROKER_NOTE:+ ($BROKER_NOTE)}: restarting it"
      broker_start "$dir/broker" || return 2
    fi
    lf="$num${subtests:+-$subtests}"
    order+=("$lf")
    # PEER_RDK_JOBS entries at a time, as librdkafka's own runner runs its tests
    # concurrently against one cluster (topics are random per test).
    if ((solo)); then
      rdk_pool_wait 1
      rdk_entry "$dir" "$num" "$subtests" "$quick" "$tmo" "$lf" "$kpath" "$n/$total"
    else
      rdk_pool_wait "$RDK_JOBS"
      rdk_entry "$dir" "$num" "$subtests" "$quick" "$tmo" "$lf" "$kpath" "$n/$total" &
      running+=("$!")
    fi
  done <"$RDK_LIST"
  rdk_pool_wait 1
  for lf in "${order[@]}"; do cat "$dir/logs/$lf.jsonl" 2>/dev/null; done >>"$RESULTS"
  BROKER_NOTE=""
  broker_stop
  [[ -z "$BROKER_NOTE" ]] || log "$BROKER_NOTE"
  meta_line librdkafka "$RDK_VERSION" $((SECONDS - t0)) "$BROKER_NOTE"
}

# --- kafka-python ------------------------------------------------------------------------------
KP_DIR="$PEER_DIR/kafka-python-$KP_VERSION"

kp_prepare() {
  if [[ ! -f "$KP_DIR/.peer-ready" ]]; then
    local dl="$PEER_DIR/downloads" tgz
    mkdir -p "$dl"
    tgz="$(ls "$dl"/kafka[_-]python-"$KP_VERSION".tar.gz 2>/dev/null | head -n1)"
    if [[ -z "$tgz" ]]; then
      log "downloading the kafka-python $KP_VERSION sdist"
      "$PY" -m pip download -q --disable-pip-version-check --no-binary :all: --no-deps \
        "kafka-python==$KP_VERSION" -d "$dl" >"$dl/pip.log" 2>&1 \
        || { cat "$dl/pip.log" >&2; log "pip download failed"; return 1; }
      tgz="$(ls "$dl"/kafka[_-]python-"$KP_VERSION".tar.gz 2>/dev/null | head -n1)"
      [[ -n "$tgz" ]] || { log "no sdist in $dl after pip download"; return 1; }
    fi
    rm -rf "$KP_DIR" "$KP_DIR.tmp"
    mkdir -p "$KP_DIR.tmp"
    tar xzf "$tgz" -C "$KP_DIR.tmp" --strip-components=1 || return 1
    [[ -d "$KP_DIR.tmp/test/integration" ]] || { log "the sdist has no test/integration"; return 1; }
    # The sdist ships test/integration but not the test/ package around it; record what
    # is missing and supply it: an empty test/__init__.py and a small test/service.py
    # (tests/peer/kafka-python/service.py, only the external-broker half is needed).
    : >"$KP_DIR.tmp/.peer-missing"
    local f
    for f in test/__init__.py test/service.py; do
      [[ -f "$KP_DIR.tmp/$f" ]] || echo "$f" >>"$KP_DIR.tmp/.peer-missing"
    done
    [[ -f "$KP_DIR.tmp/test/__init__.py" ]] || : >"$KP_DIR.tmp/test/__init__.py"
    mv "$KP_DIR.tmp" "$KP_DIR"
    touch "$KP_DIR/.peer-ready"
  fi
  if grep -qx test/service.py "$KP_DIR/.peer-missing"; then
    cp "$PEER_TESTS/kafka-python/service.py" "$KP_DIR/test/service.py"
  fi
}

run_kafka_python() {
  local dir="$OUT/kafka-python"
  mkdir -p "$dir"
  kp_prepare || return 2
  local t0=$SECONDS
  broker_start "$dir/broker" || { log "broker did not start"; return 2; }
  local raw="$dir/tests.jsonl" rc
  : >"$raw"
  log "kafka-python $KP_VERSION integration tests (sdist test/integration; missing from the sdist: $(paste -sd' ' "$KP_DIR/.peer-missing"))"
  # test_ssl_integration starts its own SSL broker from a Kafka distribution's bin/
  # scripts: outside a plaintext single-broker run. test_sasl_integration skips itself
  # when KAFKA_URI names an external broker.
  (cd "$KP_DIR" && exec env -u CI KAFKA_VERSION="$KAFKA_VERSION" \
     KAFKA_URI="kafka://127.0.0.1:$BROKER_PORT" KAFKA_ROOT="$KP_DIR" \
     PEER_RESULTS_FILE="$raw" PYTHONPATH="$PEER_TESTS/kafka-python" \
     timeout -k 15 "$KP_TIMEOUT" "$PY" -m pytest test/integration \
       --ignore=test/integration/test_ssl_integration.py \
       -p peer_results -p no:cacheprovider -q -rfEs \
       --timeout="$KP_TEST_TIMEOUT" --timeout-method=signal \
       --junitxml="$dir/junit.xml" ${KP_K:+-k "$KP_K"}) >"$dir/pytest.log" 2>&1 </dev/null
  rc=$?
  local note=""
  broker_check
  note="$BROKER_NOTE"
  ((rc == 124 || rc == 137)) && note="${note:+$note; }the run was killed by the ${KP_TIMEOUT}s limit"
  ((rc == 5)) && note="${note:+$note; }pytest collected no tests"
  tail -n 5 "$dir/pytest.log" >&2
  "$PY" - "$raw" <<'PY' >>"$RESULTS"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    test = r["test"].removeprefix("test/integration/")
    print(json.dumps({"suite": "kafka-python", "test": test, "status": r["status"],
                      "seconds": r["seconds"], "detail": r["detail"]}))
PY
  BROKER_NOTE=""
  broker_stop
  [[ -z "$BROKER_NOTE" ]] || note="${note:+$note; }$BROKER_NOTE"
  [[ -z "$note" ]] || log "$note"
  meta_line kafka-python "$KP_VERSION" $((SECONDS - t0)) "$note" "$(paste -sd' ' "$KP_DIR/.peer-missing")"
}

cleanup() {
  if [[ -n "$BROKER_PID" ]]; then broker_stop; fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

SETUP_FAILED=0
for s in "${SUITES[@]}"; do
  log "=== $s ==="
  BROKER_PORT=""
  case "$s" in
    librdkafka) BROKER_NODE_ID="" BROKER_MIN_SESSION_MS="" BROKER_INITIAL_DELAY_MS=300
      run_librdkafka ;;
    kafka-python) BROKER_NODE_ID=0 BROKER_MIN_SESSION_MS=1000 BROKER_INITIAL_DELAY_MS=0
      run_kafka_python ;;
  esac
  rc=$?
  if ((rc != 0)); then
    SETUP_FAILED=1
    meta_line "$s" "" 0 "setup failed"
    cleanup
  fi
done

if [[ "$TARGET" == dlog ]]; then
  BROKER_DESC="DLog ($("$DLOG_BIN" --version 2>/dev/null || echo "dlog ?"))"
else
  BROKER_DESC="Apache Kafka $KAFKA_VERSION"
fi

# --- results.json, summary, comparison ---------------------------------------------------------
FILTERED=""   # suites run on a subset (--tests, -k): their tests not run are not missing
[[ -z "$ONLY_TESTS" ]] || FILTERED+=" librdkafka"
[[ -z "$KP_K" ]] || FILTERED+=" kafka-python"
"$PY" - "$OUT" "$TARGET" "$BROKER_DESC" "$((SECONDS - T_START))" "$GAPS_FILE" "$COMPARE" "$FILTERED" <<'PY'
import datetime, json, os, sys
out, target, broker, total, gaps_file, compare, filtered = sys.argv[1:8]
filtered = set(filtered.split())
home = os.path.expanduser("~")
rows = [json.loads(l) for l in open(f"{out}/results.jsonl") if l.strip()]
meta = [json.loads(l) for l in open(f"{out}/suites.jsonl") if l.strip()]
tests, notes, suites = {}, {}, {}
for m in meta:
    suites[m["suite"]] = {k: v for k, v in m.items() if k != "suite" and v != ""}
for r in rows:
    tid = f'{r["suite"]}/{r["test"]}'
    tests[tid] = r["status"]
    if r["status"] != "pass" and r.get("detail"):
        notes[tid] = r["detail"].splitlines()[0].replace(out, "<results>").replace(home, "~")[:300]
    s = suites.setdefault(r["suite"], {})
    s[r["status"]] = s.get(r["status"], 0) + 1
doc = {"target": target, "broker": broker, "date": datetime.date.today().isoformat(),
       "seconds": int(total), "suites": suites, "tests": dict(sorted(tests.items())),
       "notes": dict(sorted(notes.items()))}
with open(f"{out}/results.json", "w") as f:
    json.dump(doc, f, indent=1, sort_keys=True)
    f.write("\n")

lines = [f"peer suites against {broker}: {int(total)}s, results in {out}"]
for name, s in suites.items():
    lines.append(f"  {name:<13} {s.get('pass', 0):>4} pass {s.get('fail', 0):>4} fail "
                 f"{s.get('skip', 0):>4} skip  {s.get('seconds', 0)}s"
                 + (f"  ({s['note']})" if s.get("note") else ""))
fails = [t for t, st in sorted(tests.items()) if st == "fail"]
if fails:
    lines.append("failed:")
    lines += [f"  {t}: {notes.get(t, '')[:160]}" for t in fails]

regressions = []
if compare:
    gaps = []
    for ln in open(gaps_file) if gaps_file else []:
        ln = ln.strip()
        if not ln or ln.startswith("#"):
            continue
        pat, _, reason = ln.partition(" ")
        if not reason.strip():
            sys.exit(f"{gaps_file}: '{pat}' has no reason")
        gaps.append((pat, reason.strip()))
    def gap(tid):
        for pat, reason in gaps:
            if tid == pat or (pat.endswith("*") and tid.startswith(pat[:-1])):
                return reason
        return None
    ref = json.load(open(compare))
    ran = set(suites)
    known, fixed, better = [], [], []
    for tid, st in sorted(ref["tests"].items()):
        if tid.split("/", 1)[0] not in ran:
            continue
        if tid not in tests and tid.split("/", 1)[0] in filtered:
            continue
        now = tests.get(tid, "missing")
        if st == "pass" and now != "pass":
            why = gap(tid)
            entry = f"  {tid}: {now} here, pass on {ref.get('broker', 'the reference')}: {notes.get(tid, '')[:140]}"
            (known if why else regressions).append(entry + (f" [known gap: {why}]" if why else ""))
        elif st != "pass" and now == "pass":
            better.append(f"  {tid}: pass here, {st} on {ref.get('broker', 'the reference')}")
        if now == "pass" and gap(tid):
            fixed.append(f"  {tid}: passes now; drop it from known-gaps.txt")
    lines.append(f"compared with {compare} ({ref.get('broker')}, {ref.get('date')}):")
    lines.append(f"  {len(regressions)} regressions, {len(known)} known gaps, {len(better)} better than the reference")
    for title, items in (("REGRESSIONS (pass on the reference, not here):", regressions),
                         ("known gaps:", known), ("better than the reference:", better),
                         ("known gaps that pass:", fixed)):
        if items:
            lines.append(title)
            lines += items
text = "\n".join(lines) + "\n"
open(f"{out}/summary.txt", "w").write(text)
print(text, end="")
sys.exit(3 if regressions else 0)
PY
prc=$?

if [[ -n "$RECORD" ]]; then
  cp "$OUT/results.json" "$RECORD" && log "recorded $RECORD"
fi
if ((prc == 3)); then exit 1; fi
((prc == 0)) || exit 2
((SETUP_FAILED == 0)) || exit 2
exit 0
}
