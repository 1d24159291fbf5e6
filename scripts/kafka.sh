#!/usr/bin/env bash
# Apache Kafka (reference broker) helper: install from Maven Central, start/stop
# a KRaft (combined broker+controller) instance: a single node by default, or one
# node of a cluster (KAFKA_NODE_ID, KAFKA_VOTERS, KAFKA_CLUSTER_ID below).
#
#   scripts/kafka.sh [install]          install (cached) and print the lib dir
#   scripts/kafka.sh start DIR PORT [CPORT]
#                                       write DIR/server.properties, format storage
#                                       once, start in background (DIR/kafka.pid),
#                                       wait until PORT accepts connections
#   scripts/kafka.sh stop DIR           stop the instance started in DIR
#   scripts/kafka.sh version            print the pinned Kafka version
#   scripts/kafka.sh cluster-id         print a fresh cluster id (for KAFKA_CLUSTER_ID)
#
# Environment: DLOG_CACHE_DIR (default ~/.cache/dlog), KAFKA_VERSION (pinned default),
# KAFKA_HEAP (default 1g), KAFKA_START_TIMEOUT (seconds, default 120),
# KAFKA_ADVERTISED_PORT (the port clients are told to use; default PORT: a test puts a
# proxy there).
# A node of a cluster: KAFKA_NODE_ID (default 1), KAFKA_VOTERS (controller.quorum.voters,
# default this node alone), KAFKA_CLUSTER_ID (the same for every node; default a fresh
# one), KAFKA_REPLICATION (replication factor of the internal topics, default 1),
# KAFKA_EXTRA_PROPS (lines appended to server.properties), KAFKA_WAIT=0 (return at once
# instead of waiting for PORT: a cluster's nodes listen only once a quorum runs).
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.1.2}"
# SLF4J 1.x -> log4j2 binding (Kafka's own distribution ships it; the Maven
# artifacts do not depend on it). Matches the log4j-core Kafka 4.1 resolves.
LOG4J_VERSION="${LOG4J_VERSION:-2.25.3}"
CACHE_DIR="${DLOG_CACHE_DIR:-$HOME/.cache/dlog}"
KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
LIB="$KAFKA_HOME/lib"
KAFKA_HEAP="${KAFKA_HEAP:-1g}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not found on PATH"; }

install_kafka() {
  if [[ -f "$KAFKA_HOME/.installed" ]]; then
    echo "$LIB"; return 0
  fi
  need java; need mvn
  log "installing Apache Kafka $KAFKA_VERSION into $KAFKA_HOME (Maven Central)"
  local work; work="$(mktemp -d)"
  cat >"$work/pom.xml" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dlog.test</groupId>
  <artifactId>kafka-reference</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
  rm -rf "$KAFKA_HOME.tmp"
  mkdir -p "$KAFKA_HOME.tmp/lib"
  (cd "$work" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME.tmp/lib") >"$work/mvn.log" 2>&1 \
    || { cat "$work/mvn.log" >&2; rm -rf "$work" "$KAFKA_HOME.tmp"; die "mvn dependency:copy-dependencies failed"; }
  rm -rf "$work"
  ls "$KAFKA_HOME.tmp/lib"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null \
    || die "kafka_2.13-$KAFKA_VERSION.jar missing after download"
  echo "$KAFKA_VERSION" >"$KAFKA_HOME.tmp/.installed"
  rm -rf "$KAFKA_HOME"
  mv "$KAFKA_HOME.tmp" "$KAFKA_HOME"
  log "installed $(ls "$LIB" | wc -l) jars"
  echo "$LIB"
}

port_open() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start_kafka() {
  local dir="${1:?usage: kafka.sh start DIR PORT [CPORT]}" port="${2:?usage: kafka.sh start DIR PORT [CPORT]}"
  local cport="${3:-}"
  install_kafka >/dev/null
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [[ -f "$dir/kafka.pid" ]] && pid_alive "$(cat "$dir/kafka.pid")"; then
    die "a Kafka started in $dir is already running (pid $(cat "$dir/kafka.pid"))"
  fi
  if port_open 127.0.0.1 "$port"; then die "port $port is already in use"; fi
  if [[ -z "$cport" ]]; then
    if [[ -f "$dir/controller.port" ]]; then cport="$(cat "$dir/controller.port")"; else cport="$(free_port)"; fi
  fi
  echo "$cport" >"$dir/controller.port"
  local node_id="${KAFKA_NODE_ID:-1}" rf="${KAFKA_REPLICATION:-1}"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$node_id
controller.quorum.voters=${KAFKA_VOTERS:-$node_id@127.0.0.1:$cport}
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:${KAFKA_ADVERTISED_PORT:-$port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/logs
num.partitions=1
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
${KAFKA_EXTRA_PROPS:-}
PROPS
  cat >"$dir/log4j2.properties" <<'L4J'
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
L4J
  local jopts=(-Xmx"$KAFKA_HEAP" -Xms"$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true
               -Dkafka.logs.dir="$dir" -Dlog4j2.configurationFile="$dir/log4j2.properties")
  if [[ ! -f "$dir/logs/meta.properties" ]]; then
    local uuid="${KAFKA_CLUSTER_ID:-}"
    [[ -n "$uuid" ]] || uuid="$(cluster_id)"
    # Static quorum (controller.quorum.voters): format without --standalone,
    # which is only for dynamic quorums (controller.quorum.bootstrap.servers).
    java -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir" -cp "$LIB/*" \
      kafka.tools.StorageTool format -t "$uuid" -c "$dir/server.properties" >"$dir/format.out" 2>&1 \
      || { cat "$dir/format.out" >&2; die "storage format failed"; }
  fi
  nohup java "${jopts[@]}" -cp "$LIB/*" kafka.Kafka "$dir/server.properties" \
    >"$dir/kafka.out" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/kafka.pid"
  if [[ "${KAFKA_WAIT:-1}" == 0 ]]; then
    log "Kafka $KAFKA_VERSION node $node_id started: pid $pid, port $port (not waited for), dir $dir"
    return 0
  fi
  local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  until port_open 127.0.0.1 "$port"; do
    if ! pid_alive "$pid"; then
      tail -n 50 "$dir/kafka.out" "$dir/server.log" >&2 2>/dev/null || true
      rm -f "$dir/kafka.pid"
      die "Kafka exited during startup"
    fi
    if (( SECONDS >= deadline )); then
      tail -n 50 "$dir/kafka.out" "$dir/server.log" >&2 2>/dev/null || true
      kill "$pid" 2>/dev/null || true
      die "Kafka did not listen on 127.0.0.1:$port within ${KAFKA_START_TIMEOUT}s"
    fi
    sleep 0.2
  done
  log "Kafka $KAFKA_VERSION running: pid $pid, bootstrap 127.0.0.1:$port, dir $dir"
}

cluster_id() {
  install_kafka >/dev/null
  local uuid
  uuid="$(java -cp "$LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
  [[ -n "$uuid" ]] || die "StorageTool random-uuid failed"
  echo "$uuid"
}

pid_alive() { # a zombie (exited, not yet reaped) counts as gone
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

stop_kafka() {
  local dir="${1:?usage: kafka.sh stop DIR}"
  local pidf="$dir/kafka.pid"
  [[ -f "$pidf" ]] || { log "no pid file in $dir (not running?)"; return 0; }
  local pid; pid="$(cat "$pidf")"
  if pid_alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 60))
    while pid_alive "$pid"; do
      if (( SECONDS >= deadline )); then log "Kafka pid $pid ignored SIGTERM for 60s; killing"; kill -KILL "$pid" 2>/dev/null || true; fi
      sleep 0.2
    done
  fi
  # the JVM's main thread can be a zombie while other threads still hold the sockets
  local port
  port="$(sed -n 's/^listeners=PLAINTEXT:\/\/[^:]*:\([0-9]*\).*/\1/p' "$dir/server.properties" 2>/dev/null)"
  if [[ -n "$port" ]]; then
    local deadline=$((SECONDS + 60))
    while port_open 127.0.0.1 "$port" && (( SECONDS < deadline )); do sleep 0.2; done
  fi
  rm -f "$pidf"
  log "Kafka in $dir stopped"
}

cmd="${1:-install}"
case "$cmd" in
  install) install_kafka ;;
  start) shift; start_kafka "$@" ;;
  stop) shift; stop_kafka "$@" ;;
  version) echo "$KAFKA_VERSION" ;;
  cluster-id) cluster_id ;;
  lib) echo "$LIB" ;;
  *) die "unknown command '$cmd' (expected install|start|stop|version|cluster-id|lib)" ;;
esac
