#!/usr/bin/env bash
# DLog vs Apache Kafka on this machine, in one run, with the neutral librdkafka load
# generator (benches/, binary dlog-loadgen). Targets are reported, never asserted.
#
#   benches/run.sh
#
# Steps: build `dlog` and `dlog-loadgen` (release); install Kafka (scripts/kafka.sh);
# start DLog, measure exec -> port accepting and idle RSS, run the load, stop it; the same
# for Kafka (single-node KRaft, fixed heap); print a table with DLog/Kafka ratios and write
# it into docs/BENCHMARKS.md (between the results markers).
#
# Environment (defaults in brackets):
#   BENCH_RECORDS [1000000]        records per throughput run (produce, then consume all back)
#   BENCH_RECORD_BYTES [1024]      record value size
#   BENCH_PARTITIONS [8]           topic partitions (RF 1)
#   BENCH_ACKS [all]               producer acks
#   BENCH_WARMUP_RECORDS [1000000] unmeasured produce+consume before measuring (JIT, page cache),
#                                  followed by an unmeasured 5 s run at the latency run's rate
#   BENCH_LATENCY_RATE [20000]     records/s of the fixed-rate ack-latency run (0: skip it)
#   BENCH_LATENCY_SECS [10]        its duration
#   BENCH_REPEAT [3]               throughput and latency runs per broker (the report shows medians)
#   BENCH_TARGETS ["dlog kafka"]   which brokers to run
#   BENCH_WRITE_DOC [1]            0: do not touch docs/BENCHMARKS.md
#   BENCH_KEEP_DIR [0]             1: keep the run's directory (broker logs, data, JSON)
#   KAFKA_HEAP [1g]                Kafka's -Xmx/-Xms (passed to scripts/kafka.sh)
#   BENCH_TOPIC_CONFIGS [unset]    topic configs of the bench topic, KEY=VALUE,... on both brokers;
#                                  compression.type=lz4 measures broker-side recompression
#                                  (the producer sends uncompressed batches)
#   BENCH_DISTINCT_VALUES [0]      1: every record its own incompressible value (otherwise one value
#                                  for all, which a codec shrinks to almost nothing within a batch)
#   BENCH_DLOG_BIN [unset]         run this dlog binary instead of building one (to compare
#                                  two commits: build each, run each with BENCH_WRITE_DOC=0)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Where cargo puts release binaries (CARGO_TARGET_DIR when set, relative to ROOT).
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
RELEASE_DIR="$TARGET_DIR/release"
cd "$ROOT"

# The exact command, with every setting given in the environment.
REPRO="benches/run.sh"
for v in BENCH_TOPIC_CONFIGS BENCH_DISTINCT_VALUES BENCH_DLOG_BIN KAFKA_VERSION KAFKA_HEAP BENCH_TARGETS BENCH_REPEAT BENCH_LATENCY_SECS BENCH_LATENCY_RATE BENCH_WARMUP_RECORDS \
         BENCH_ACKS BENCH_PARTITIONS BENCH_RECORD_BYTES BENCH_RECORDS; do
  if [[ -n "${!v+x}" ]]; then REPRO="$v=$(printf '%q' "${!v}") $REPRO"; fi
done

RECORDS="${BENCH_RECORDS:-1000000}"
RECORD_BYTES="${BENCH_RECORD_BYTES:-1024}"
PARTITIONS="${BENCH_PARTITIONS:-8}"
ACKS="${BENCH_ACKS:-all}"
WARMUP="${BENCH_WARMUP_RECORDS:-1000000}"
LAT_RATE="${BENCH_LATENCY_RATE:-20000}"
LAT_SECS="${BENCH_LATENCY_SECS:-10}"
REPEAT="${BENCH_REPEAT:-3}"
TARGETS="${BENCH_TARGETS:-dlog kafka}"
WRITE_DOC="${BENCH_WRITE_DOC:-1}"
export KAFKA_HEAP="${KAFKA_HEAP:-1g}"
RUN_TIMEOUT=600 # seconds, per loadgen invocation
TOPIC_CONFIG_ARGS=()
IFS=',' read -r -a _topic_configs <<<"${BENCH_TOPIC_CONFIGS:-}"
for kv in ${_topic_configs[@]+"${_topic_configs[@]}"}; do if [[ -n "$kv" ]]; then TOPIC_CONFIG_ARGS+=(--topic-config "$kv"); fi; done
if [[ "${BENCH_DISTINCT_VALUES:-0}" == 1 ]]; then TOPIC_CONFIG_ARGS+=(--distinct-values); fi

log() { echo "bench: $*" >&2; }

OUT="$(mktemp -d -t dlog-bench.XXXXXX)"
DLOG_PID=""
KAFKA_DIR="$OUT/kafka"
cleanup() {
  if [[ -n "$DLOG_PID" ]] && kill -0 "$DLOG_PID" 2>/dev/null; then kill -KILL "$DLOG_PID" 2>/dev/null || true; fi
  if [[ -f "$KAFKA_DIR/kafka.pid" ]]; then bash scripts/kafka.sh stop "$KAFKA_DIR" >/dev/null 2>&1 || true; fi
  if [[ "${BENCH_KEEP_DIR:-0}" == 1 ]]; then log "logs and data kept in $OUT"; else rm -rf "$OUT"; fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo ""; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo ""; }

# key=value facts per target, read back by the report step.
fact() { echo "$2=$3" >>"$OUT/$1.facts"; }

timed_build() { # name cmd...
  local name="$1"; shift
  local t0=$SECONDS
  if "$@" >"$OUT/build-$name.log" 2>&1; then
    fact build "${name}_secs" $((SECONDS - t0)); return 0
  else
    fact build "${name}_secs" $((SECONDS - t0)); fact build "${name}_failed" 1
    tail -n 30 "$OUT/build-$name.log" >&2; return 1
  fi
}

# ---- build --------------------------------------------------------------------------
: >"$OUT/build.facts"
DLOG_BUILT=1
DLOG_BIN="${BENCH_DLOG_BIN:-$RELEASE_DIR/dlog}"
if [[ -n "${BENCH_DLOG_BIN:-}" ]]; then
  [[ -x "$DLOG_BIN" ]] || { log "BENCH_DLOG_BIN=$DLOG_BIN is not an executable"; exit 1; }
  log "using $DLOG_BIN (not building dlog)"
elif [[ " $TARGETS " == *" dlog "* ]]; then
  log "building dlog (release)"
  timed_build dlog cargo build --release --bin dlog || { DLOG_BUILT=0; log "dlog did not build (see above)"; }
fi
log "building dlog-loadgen (release)"
timed_build loadgen cargo build --release -p dlog-bench --bin dlog-loadgen || { log "dlog-loadgen did not build"; exit 1; }
LOADGEN="$RELEASE_DIR/dlog-loadgen"

# ---- load ---------------------------------------------------------------------------
loadgen() { # target name args...
  local target="$1" name="$2"; shift 2
  log "$target: $name: dlog-loadgen $*"
  if timeout --kill-after=10 "$RUN_TIMEOUT" "$LOADGEN" --json --label "$target" --partitions "$PARTITIONS" \
      --record-bytes "$RECORD_BYTES" --acks "$ACKS" --compression none ${TOPIC_CONFIG_ARGS[@]+"${TOPIC_CONFIG_ARGS[@]}"} "$@" \
      >"$OUT/$target.$name.json" 2>>"$OUT/$target.loadgen.log"; then
    return 0
  else
    local rc=$?
    fact "$target" "${name}_failed" "exit $rc$( ((rc == 124)) && echo ' (timed out)'): $(tail -n 3 "$OUT/$target.loadgen.log" | tr '\n' ' ' | cut -c1-400)"
    log "$target: $name failed (exit $rc)"; tail -n 5 "$OUT/$target.loadgen.log" >&2
    return 1
  fi
}

# The CPU time (user + system, clock ticks) a process has used: the broker's share of a run.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'; }

run_load() { # target bootstrap pid
  local target="$1" bs="$2" pid="$3"
  if ((WARMUP > 0)); then
    loadgen "$target" warmup --bootstrap "$bs" --mode both --records "$WARMUP" || return 1
    if ((LAT_RATE > 0)); then
      loadgen "$target" warmup-rate --bootstrap "$bs" --mode produce --rate "$LAT_RATE" --duration-secs 5 || return 1
    fi
  fi
  local i c0
  for ((i = 1; i <= REPEAT; i++)); do
    c0="$(cpu_ticks "$pid")"
    loadgen "$target" "throughput.$i" --bootstrap "$bs" --mode both --records "$RECORDS" || return 1
    fact "$target" "throughput_cpu_ticks.$i" "$(($(cpu_ticks "$pid") - c0))"
    if ((LAT_RATE > 0)); then
      loadgen "$target" "latency.$i" --bootstrap "$bs" --mode produce --rate "$LAT_RATE" --duration-secs "$LAT_SECS" \
        || return 1
    fi
  done
  fact "$target" peak_rss_kib "$(hwm_kib "$pid")"
}

# ---- DLog ---------------------------------------------------------------------------
bench_dlog() {
  : >"$OUT/dlog.facts"
  if ((DLOG_BUILT == 0)); then fact dlog failed "dlog did not build: $(grep -m1 '^error' "$OUT/build-dlog.log" | cut -c1-300)"; return; fi
  local port; port="$(free_port)"
  mkdir -p "$OUT/dlog-data"
  log "dlog: starting on 127.0.0.1:$port"
  # Start detached and time exec -> first accepted TCP connection (1 ms polling).
  local started
  if ! started="$(python3 - "$DLOG_BIN" "$OUT/dlog-data" "$port" "$OUT/dlog.log" <<'PY'
import socket, subprocess, sys, time
exe, data, port, logf = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(logf, "ab") as out:
    t0 = time.perf_counter()
    p = subprocess.Popen([exe, "broker", "--data-dir", data, "--listen", f"127.0.0.1:{port}"],
                         stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
while True:
    if p.poll() is not None:
        print(f"{p.pid} exited {p.returncode}"); sys.exit(1)
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        break
    except OSError:
        if time.perf_counter() - t0 > 30:
            print(f"{p.pid} timeout"); sys.exit(1)
        time.sleep(0.001)
print(f"{p.pid} {(time.perf_counter() - t0) * 1000:.1f}")
PY
  )"; then
    DLOG_PID="${started%% *}"
    fact dlog failed "dlog broker did not listen: ${started#* }; log: $(tail -n 5 "$OUT/dlog.log" | tr '\n' ' ' | cut -c1-400)"
    log "dlog: did not start: $started"; tail -n 20 "$OUT/dlog.log" >&2
    return
  fi
  DLOG_PID="${started%% *}"
  fact dlog start_ms "${started#* }"
  sleep 3
  fact dlog idle_rss_kib "$(rss_kib "$DLOG_PID")"
  run_load dlog "127.0.0.1:$port" "$DLOG_PID" || true
  if ! kill -0 "$DLOG_PID" 2>/dev/null; then
    fact dlog crashed "the broker process was gone after the load; log: $(tail -n 5 "$OUT/dlog.log" | tr '\n' ' ' | cut -c1-400)"
  fi
  local t0=$SECONDS
  kill -TERM "$DLOG_PID" 2>/dev/null || true
  while kill -0 "$DLOG_PID" 2>/dev/null; do
    if ((SECONDS - t0 > 20)); then fact dlog stop "ignored SIGTERM for 20 s, killed"; kill -KILL "$DLOG_PID"; break; fi
    sleep 0.1
  done
  DLOG_PID=""
  # Keep the broker's last warnings for the report.
  grep -E 'WARN|ERROR' "$OUT/dlog.log" >"$OUT/dlog.warnings" || true
}

# ---- Kafka --------------------------------------------------------------------------
bench_kafka() {
  : >"$OUT/kafka.facts"
  log "kafka: installing (cached after the first time)"
  if ! bash scripts/kafka.sh install >/dev/null 2>"$OUT/kafka-install.log"; then
    fact kafka failed "scripts/kafka.sh install failed: $(tail -n 3 "$OUT/kafka-install.log" | tr '\n' ' ')"; return
  fi
  fact kafka version "$(bash scripts/kafka.sh version)"
  local port; port="$(free_port)"
  local t0; t0="$(date +%s%N)"
  if ! bash scripts/kafka.sh start "$KAFKA_DIR" "$port" 2>"$OUT/kafka-start.log"; then
    fact kafka failed "scripts/kafka.sh start failed: $(tail -n 3 "$OUT/kafka-start.log" | tr '\n' ' ' | cut -c1-300)"; return
  fi
  fact kafka start_ms "$(( ($(date +%s%N) - t0) / 1000000 ))"
  local pid; pid="$(cat "$KAFKA_DIR/kafka.pid")"
  sleep 3
  fact kafka idle_rss_kib "$(rss_kib "$pid")"
  run_load kafka "127.0.0.1:$port" "$pid" || true
  bash scripts/kafka.sh stop "$KAFKA_DIR" 2>/dev/null || true
}

{
  echo "nproc=$(nproc)"
  echo "mem_gib=$(awk '/^MemTotal:/ {printf "%.1f", $2/1048576}' /proc/meminfo)"
  echo "kernel=$(uname -sr)"
  echo "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "java=$(java -version 2>&1 | head -n1)"
  echo "rustc=$(rustc --version)"
  echo "commit=$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo '+uncommitted')"
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "clk_tck=$(getconf CLK_TCK)"
} >"$OUT/machine.facts"

for t in $TARGETS; do
  case "$t" in
    dlog) bench_dlog ;;
    kafka) bench_kafka ;;
    *) log "unknown target '$t' (expected dlog, kafka)"; exit 2 ;;
  esac
done
echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.facts"

# ---- report -------------------------------------------------------------------------
DOC=""
if [[ "$WRITE_DOC" == 1 ]]; then DOC="$ROOT/docs/BENCHMARKS.md"; fi
python3 "$ROOT/benches/report.py" "$OUT" "$REPRO" "$RECORDS" "$RECORD_BYTES" "$PARTITIONS" "$ACKS" \
  "$LAT_RATE" "$LAT_SECS" "$WARMUP" "$KAFKA_HEAP" "$REPEAT" "$DOC"
