#!/usr/bin/env bash
# Replicated DLog vs replicated Apache Kafka on this machine, in one run: three DLog
# nodes against three Kafka brokers (KRaft, combined broker+controller), topics with
# replication factor 3 and min.insync.replicas 2, driven by the same librdkafka load
# generator (benches/, binary dlog-loadgen). Targets are reported, never asserted.
#
#   benches/replicated.sh
#
# Per broker: start the three nodes; warm up; then, alternating, a fixed-rate acks=all
# latency run (linger.ms 0: the brokers' latency, not the client's batching delay; and
# again with linger.ms 5, librdkafka's default) and
# an unthrottled throughput run (produce, then read back) for each topic variant; then
# failover runs: produce at a fixed rate, kill -9 the leader of partition 0, and measure
# from the kill to the first acknowledgement of a record sent after it, on every
# partition the killed node led. The killed node is restarted between runs.
#
# Variants: DLog with write caching on (acks=all once 2 replicas hold the batch in
# memory) and off (every replica fsyncs before it acknowledges); Kafka with its defaults
# (no fsync) and with flush.messages=1 (fsync per batch, the like-for-like of caching off).
#
# Environment (defaults in brackets):
#   BENCH_RATE [5000]              records/s of the fixed-rate latency runs
#   BENCH_LATENCY_SECS [15]        duration of each latency run
#   BENCH_RECORDS [300000]         records per throughput run
#   BENCH_RECORD_BYTES [1024]      record value size
#   BENCH_PARTITIONS [6]           partitions per topic (RF 3)
#   BENCH_REPEAT [3]               latency + throughput rounds per variant (medians reported)
#   BENCH_FAILOVERS [3]            kill -9 runs per broker
#   BENCH_FAILOVER_RATE [1000]     records/s during a failover run
#   BENCH_TARGETS ["dlog kafka"]   which brokers to run
#   BENCH_WRITE_DOC [1]            0: do not touch docs/BENCHMARKS.md
#   BENCH_KEEP_DIR [0]             1: keep the run's directory (logs, data, JSON, ack logs)
#   KAFKA_HEAP [1g]                each Kafka broker's -Xmx/-Xms
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Where cargo puts release binaries (CARGO_TARGET_DIR when set, relative to ROOT).
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
RELEASE_DIR="$TARGET_DIR/release"
cd "$ROOT"

REPRO="benches/replicated.sh"
for v in KAFKA_VERSION KAFKA_HEAP BENCH_TARGETS BENCH_FAILOVER_RATE BENCH_FAILOVERS BENCH_REPEAT BENCH_PARTITIONS \
         BENCH_RECORD_BYTES BENCH_RECORDS BENCH_LATENCY_SECS BENCH_RATE; do
  if [[ -n "${!v+x}" ]]; then REPRO="$v=$(printf '%q' "${!v}") $REPRO"; fi
done

RATE="${BENCH_RATE:-5000}"
LAT_SECS="${BENCH_LATENCY_SECS:-15}"
RECORDS="${BENCH_RECORDS:-300000}"
RECORD_BYTES="${BENCH_RECORD_BYTES:-1024}"
PARTITIONS="${BENCH_PARTITIONS:-6}"
REPEAT="${BENCH_REPEAT:-3}"
FAILOVERS="${BENCH_FAILOVERS:-3}"
FO_RATE="${BENCH_FAILOVER_RATE:-1000}"
TARGETS="${BENCH_TARGETS:-dlog kafka}"
WRITE_DOC="${BENCH_WRITE_DOC:-1}"
export KAFKA_HEAP="${KAFKA_HEAP:-1g}"
RUN_TIMEOUT=600 # seconds, per loadgen invocation
NODES=(1 2 3)
# The producer in failover runs, for both brokers: retries and reconnects backing off at
# most 250/500 ms (librdkafka's defaults reach 1 s and 10 s), so that the figure measures
# the broker's failover rather than the client's backoff.
FAILOVER_CLIENT="--client-config retry.backoff.ms=50 --client-config retry.backoff.max.ms=250"
FAILOVER_CLIENT+=" --client-config reconnect.backoff.ms=50 --client-config reconnect.backoff.max.ms=500"

log() { echo "bench: $*" >&2; }

OUT="$(mktemp -d -t dlog-repl-bench.XXXXXX)"
declare -A DLOG_PIDS=() KPORT=() RPORT=() CPORT=()
cleanup() {
  local n
  for n in "${!DLOG_PIDS[@]}"; do kill -KILL "${DLOG_PIDS[$n]}" 2>/dev/null || true; done
  for n in "${NODES[@]}"; do
    if [[ -f "$OUT/kafka/$n/kafka.pid" ]]; then
      kill -KILL "$(cat "$OUT/kafka/$n/kafka.pid")" 2>/dev/null || true
    fi
  done
  if [[ "${BENCH_KEEP_DIR:-0}" == 1 ]]; then log "logs and data kept in $OUT"; else rm -rf "$OUT"; fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
fact() { echo "$2=$3" >>"$OUT/$1.facts"; }
now_us() { echo $(($(date +%s%N) / 1000)); }

# ---- build --------------------------------------------------------------------------
if [[ " $TARGETS " == *" dlog "* ]]; then
  log "building dlog (release)"
  cargo build --release --bin dlog >"$OUT/build-dlog.log" 2>&1 || { tail -n 30 "$OUT/build-dlog.log" >&2; exit 1; }
fi
log "building dlog-loadgen (release)"
cargo build --release -p dlog-bench --bin dlog-loadgen >"$OUT/build-loadgen.log" 2>&1 \
  || { tail -n 30 "$OUT/build-loadgen.log" >&2; exit 1; }
LOADGEN="$RELEASE_DIR/dlog-loadgen"
DLOG="$RELEASE_DIR/dlog"

# ---- cluster control ----------------------------------------------------------------
bootstrap() { local n s=""; for n in "${NODES[@]}"; do s+="${s:+,}127.0.0.1:${KPORT[$n]}"; done; echo "$s"; }

dlog_start_node() { # node
  local n="$1" members="" m
  for m in "${NODES[@]}"; do members+="${members:+,}$m=127.0.0.1:${RPORT[$m]}"; done
  mkdir -p "$OUT/dlog/$n"
  "$DLOG" broker --node-id "$n" --data-dir "$OUT/dlog/$n" --listen "127.0.0.1:${KPORT[$n]}" \
    --rpc-listen "127.0.0.1:${RPORT[$n]}" --cluster-nodes "$members" \
    </dev/null >>"$OUT/dlog/node$n.log" 2>&1 &
  DLOG_PIDS[$n]=$!
}

kafka_start_node() { # node
  local n="$1" voters="" m
  for m in "${NODES[@]}"; do voters+="${voters:+,}$m@127.0.0.1:${CPORT[$m]}"; done
  KAFKA_NODE_ID="$n" KAFKA_VOTERS="$voters" KAFKA_CLUSTER_ID="$KAFKA_CLUSTER" KAFKA_REPLICATION=3 KAFKA_WAIT=0 \
    bash scripts/kafka.sh start "$OUT/kafka/$n" "${KPORT[$n]}" "${CPORT[$n]}" 2>>"$OUT/kafka-start.log"
}

node_pid() { # target node
  if [[ "$1" == dlog ]]; then echo "${DLOG_PIDS[$2]}"; else cat "$OUT/kafka/$2/kafka.pid"; fi
}

metadata() { # [topic]
  timeout 30 "$LOADGEN" --bootstrap "$(bootstrap)" --mode metadata ${1:+--topic "$1"} 2>/dev/null
}

# Waits until every node listens and the metadata lists all three brokers.
wait_cluster() { # target timeout-secs
  local deadline=$((SECONDS + $2)) n md
  while ((SECONDS < deadline)); do
    local up=1
    for n in "${NODES[@]}"; do port_open "${KPORT[$n]}" || up=0; done
    if ((up)); then
      md="$(metadata || true)"
      if [[ -n "$md" ]] && python3 -c 'import json,sys; sys.exit(len(json.loads(sys.argv[1])["brokers"]) != 3)' "$md"; then
        return 0
      fi
    fi
    sleep 0.5
  done
  return 1
}

start_cluster() { # target
  local t="$1" n
  for n in "${NODES[@]}"; do KPORT[$n]="$(free_port)"; RPORT[$n]="$(free_port)"; CPORT[$n]="$(free_port)"; done
  local t0=$SECONDS
  if [[ "$t" == dlog ]]; then
    for n in "${NODES[@]}"; do dlog_start_node "$n"; done
  else
    KAFKA_CLUSTER="$(bash scripts/kafka.sh cluster-id)"
    for n in "${NODES[@]}"; do kafka_start_node "$n"; done
  fi
  wait_cluster "$t" 180 || { log "$t: the cluster did not come up"; return 1; }
  fact "$t" start_secs $((SECONDS - t0))
  log "$t: 3 nodes up after $((SECONDS - t0)) s, bootstrap $(bootstrap)"
}

stop_cluster() { # target
  local n
  if [[ "$1" == dlog ]]; then
    for n in "${!DLOG_PIDS[@]}"; do kill -TERM "${DLOG_PIDS[$n]}" 2>/dev/null || true; done
    for n in "${!DLOG_PIDS[@]}"; do wait "${DLOG_PIDS[$n]}" 2>/dev/null || true; unset "DLOG_PIDS[$n]"; done
    grep -hE 'WARN|ERROR' "$OUT"/dlog/node*.log >"$OUT/dlog.warnings" 2>/dev/null || true
  else
    # All at once: the last broker of a cluster stopped one by one waits for a quorum.
    for n in "${NODES[@]}"; do bash scripts/kafka.sh stop "$OUT/kafka/$n" >/dev/null 2>&1 & done
    wait
  fi
}

# ---- load ---------------------------------------------------------------------------
loadgen() { # target name args...
  local target="$1" name="$2"; shift 2
  log "$target: $name"
  if timeout --kill-after=10 "$RUN_TIMEOUT" "$LOADGEN" --json --label "$target" --bootstrap "$(bootstrap)" \
      --partitions "$PARTITIONS" --replication-factor 3 --record-bytes "$RECORD_BYTES" --acks all \
      --compression none "$@" >"$OUT/$target.$name.json" 2>>"$OUT/$target.loadgen.log"; then
    return 0
  fi
  local rc=$?
  fact "$target" "${name}_failed" "exit $rc: $(tail -n 3 "$OUT/$target.loadgen.log" | tr '\n' ' ' | cut -c1-400)"
  log "$target: $name failed (exit $rc)"
  return 1
}

variant_configs() { # variant -> --topic-config arguments
  case "$1" in
    dlog-cache) echo "--topic-config min.insync.replicas=2 --topic-config write.caching=true" ;;
    dlog-sync) echo "--topic-config min.insync.replicas=2 --topic-config write.caching=false" ;;
    kafka) echo "--topic-config min.insync.replicas=2" ;;
    kafka-fsync) echo "--topic-config min.insync.replicas=2 --topic-config flush.messages=1" ;;
  esac
}

# One failover run: kill -9 the leader of partition 0 under load, restart it afterwards.
failover() { # target run variant
  local t="$1" i="$2" variant="$3" topic="failover-$1-$2-$$"
  # Kafka fences a dead broker after its 9 s session timeout: give it time to recover.
  local secs=20
  [[ "$t" == kafka ]] && secs=30
  # shellcheck disable=SC2046
  loadgen "$t" "failover.$i" --topic "$topic" --mode produce --rate "$FO_RATE" --duration-secs "$secs" \
    --ack-log "$OUT/$t.failover.$i.acks" $(variant_configs "$variant") $FAILOVER_CLIENT &
  local lg=$!
  local deadline=$((SECONDS + 60)) md=""
  while ((SECONDS < deadline)); do
    md="$(metadata "$topic" || true)"
    if [[ -n "$md" ]] && python3 -c '
import json, sys
m = json.loads(sys.argv[1]); n = int(sys.argv[2])
sys.exit(not (len(m["partitions"]) == n and all(p["leader"] >= 0 and len(p["isr"]) == 3 for p in m["partitions"])))
' "$md" "$PARTITIONS"; then break; fi
    md=""; sleep 0.2
  done
  if [[ -z "$md" ]]; then log "$t: failover $i: topic never fully in sync"; wait "$lg" || true; return 1; fi
  sleep 4 # past the load generator's readiness probe, into steady load
  md="$(metadata "$topic")"
  echo "$md" >"$OUT/$t.failover.$i.before"
  local victim; victim="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["partitions"][0]["leader"])' "$md")"
  local pid; pid="$(node_pid "$t" "$victim")"
  fact "$t" "failover_${i}_victim" "$victim"
  fact "$t" "failover_${i}_kill_us" "$(now_us)"
  kill -KILL "$pid"
  log "$t: failover $i: killed node $victim (pid $pid)"
  # Watch when the metadata names new leaders (for the report; the ack log decides).
  local named=""
  while kill -0 "$lg" 2>/dev/null; do
    if [[ -z "$named" ]]; then
      md="$(metadata "$topic" || true)"
      if [[ -n "$md" ]] && python3 -c '
import json, sys
m = json.loads(sys.argv[1]); v = int(sys.argv[2])
sys.exit(any(p["leader"] in (v, -1) for p in m["partitions"]))
' "$md" "$victim"; then named="$(now_us)"; fact "$t" "failover_${i}_metadata_us" "$named"; fi
    fi
    sleep 0.1
  done
  wait "$lg" || true
  # Bring the node back, let it catch up (and DLog restore preferred leaders, 10 s).
  if [[ "$t" == dlog ]]; then dlog_start_node "$victim"; else kafka_start_node "$victim"; fi
  wait_cluster "$t" 180 || { log "$t: node $victim did not come back"; return 1; }
  sleep 15
}

bench() { # target
  local t="$1" i v
  : >"$OUT/$t.facts"
  local variants
  if [[ "$t" == dlog ]]; then variants="dlog-cache dlog-sync"; else variants="kafka kafka-fsync"; fi
  if [[ "$t" == kafka ]]; then
    bash scripts/kafka.sh install >/dev/null 2>"$OUT/kafka-install.log" \
      || { fact kafka failed "scripts/kafka.sh install failed"; return; }
    fact kafka version "$(bash scripts/kafka.sh version)"
  fi
  start_cluster "$t" || { fact "$t" failed "the cluster did not start"; stop_cluster "$t"; return; }
  # Warm-up (JIT, page cache, connections): unmeasured.
  loadgen "$t" warmup --mode both --records 200000 || true
  loadgen "$t" warmup-rate --mode produce --rate "$RATE" --duration-secs 5 --linger-ms 0 || true
  for ((i = 1; i <= REPEAT; i++)); do
    for v in $variants; do
      # shellcheck disable=SC2046
      loadgen "$t" "$v.latency.$i" --mode produce --rate "$RATE" --duration-secs "$LAT_SECS" --linger-ms 0 \
        $(variant_configs "$v") || true
      # shellcheck disable=SC2046
      loadgen "$t" "$v.latency5.$i" --mode produce --rate "$RATE" --duration-secs "$LAT_SECS" --linger-ms 5 \
        $(variant_configs "$v") || true
      # shellcheck disable=SC2046
      loadgen "$t" "$v.throughput.$i" --mode both --records "$RECORDS" $(variant_configs "$v") || true
    done
  done
  local first="${variants%% *}"
  for ((i = 1; i <= FAILOVERS; i++)); do
    failover "$t" "$i" "$first" || break
  done
  stop_cluster "$t"
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
} >"$OUT/machine.facts"

for t in $TARGETS; do
  case "$t" in
    dlog | kafka) bench "$t" ;;
    *) log "unknown target '$t' (expected dlog, kafka)"; exit 2 ;;
  esac
done
echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.facts"

DOC=""
if [[ "$WRITE_DOC" == 1 ]]; then DOC="$ROOT/docs/BENCHMARKS.md"; fi
python3 "$ROOT/benches/replicated_report.py" "$OUT" "$REPRO" "$RATE" "$LAT_SECS" "$RECORDS" "$RECORD_BYTES" \
  "$PARTITIONS" "$REPEAT" "$FAILOVERS" "$FO_RATE" "$KAFKA_HEAP" "$DOC"
