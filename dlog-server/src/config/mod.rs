//! Broker configuration: flags beat `DLOG_*` environment variables, which beat the TOML
//! file given by `--config`, which beats the built-in defaults. Every bad value names the
//! flag or key it came from.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dlog_core::{NodeId, TopicConfig};

use crate::groups::CoordinatorConfig;

mod topic_defaults;
use serde::Deserialize;
use topic_defaults::resolve_topic_defaults;

/// `dlog broker` flags. Each is optional so that the file can fill what flags and
/// environment leave unset.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BrokerArgs {
    /// TOML config file; flags and DLOG_* variables override its keys.
    #[arg(long, env = "DLOG_CONFIG")]
    pub config: Option<PathBuf>,
    /// This broker's id in the cluster.
    #[arg(long, env = "DLOG_NODE_ID")]
    pub node_id: Option<i32>,
    /// Where partition logs and metadata live.
    #[arg(long, env = "DLOG_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Kafka listener, HOST:PORT.
    #[arg(long, env = "DLOG_LISTEN")]
    pub listen: Option<String>,
    /// Address clients are told to connect to, HOST:PORT (default: the listen address,
    /// or this host's name when listening on 0.0.0.0).
    #[arg(long, env = "DLOG_ADVERTISE")]
    pub advertise: Option<String>,
    /// Prometheus metrics listener, HOST:PORT (off when unset).
    #[arg(long, env = "DLOG_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Number of shards (one thread pinned per core); default: the number of cores.
    #[arg(long, env = "DLOG_SHARDS")]
    pub shards: Option<usize>,
    /// Internal RPC listener (Raft, forwarding, replication), HOST:PORT.
    #[arg(long, env = "DLOG_RPC_LISTEN")]
    pub rpc_listen: Option<String>,
    /// Every member of the cluster: `1=HOST:RPCPORT,2=HOST:RPCPORT,...` (this node included).
    #[arg(long, env = "DLOG_CLUSTER_NODES")]
    pub cluster_nodes: Option<String>,
    /// This node's rack or zone; replicas are spread over racks.
    #[arg(long, env = "DLOG_RACK")]
    pub rack: Option<String>,
    /// Copyset scatter width: how many other nodes share partitions with each node
    /// (fewer: less chance that losing RF nodes loses a partition; more: faster
    /// re-replication). Give every node the same value.
    #[arg(long, env = "DLOG_SCATTER_WIDTH")]
    pub scatter_width: Option<usize>,
    /// A broker not heard from for this long loses its registration (its partitions
    /// move). Default 3000.
    #[arg(long, env = "DLOG_BROKER_SESSION_TIMEOUT_MS")]
    pub broker_session_timeout_ms: Option<u64>,
    /// How often a broker keeps its registration's session alive. Default 500; at most
    /// half the session timeout.
    #[arg(long, env = "DLOG_BROKER_HEARTBEAT_INTERVAL_MS")]
    pub broker_heartbeat_interval_ms: Option<u64>,
    /// How often the controller's failure detector pings each broker. Default 100.
    #[arg(long, env = "DLOG_FAILURE_DETECTOR_INTERVAL_MS")]
    pub failure_detector_interval_ms: Option<u64>,
    /// How long one ping may take. Default 250.
    #[arg(long, env = "DLOG_FAILURE_DETECTOR_TIMEOUT_MS")]
    pub failure_detector_timeout_ms: Option<u64>,
    /// Pings missed in a row that fence a broker. Default 3.
    #[arg(long, env = "DLOG_FAILURE_DETECTOR_MISSES")]
    pub failure_detector_misses: Option<u32>,
    /// How long an admin request forwarded to the controller may wait when the request
    /// names no timeout of its own. Default 20000.
    #[arg(long, env = "DLOG_CONTROLLER_FORWARD_TIMEOUT_MS")]
    pub controller_forward_timeout_ms: Option<u64>,
    /// Kafka connections this node holds at once; at the limit it stops accepting until
    /// one closes (Kafka's `max.connections`). Default 10000.
    #[arg(long, env = "DLOG_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Kafka connections one client IP may hold; more are closed at once (Kafka's
    /// `max.connections.per.ip`). Default: --max-connections.
    #[arg(long, env = "DLOG_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// A connection with no request in flight and no bytes received for this long is
    /// closed (Kafka's `connections.max.idle.ms`). Default 600000.
    #[arg(long, env = "DLOG_CONNECTIONS_MAX_IDLE_MS")]
    pub connections_max_idle_ms: Option<u64>,
    /// Largest request frame accepted (Kafka's `socket.request.max.bytes`). Default
    /// 104857600.
    #[arg(long, env = "DLOG_SOCKET_REQUEST_MAX_BYTES")]
    pub socket_request_max_bytes: Option<usize>,
    /// Node-wide budget of request bytes buffered past each connection's first 64 KiB
    /// (Kafka's `queued.max.request.bytes`); a connection whose large frame finds it
    /// spent stops reading until requests complete. Default 536870912; at least
    /// --socket-request-max-bytes.
    #[arg(long, env = "DLOG_QUEUED_MAX_REQUEST_BYTES")]
    pub queued_max_request_bytes: Option<usize>,
    /// Broker defaults of topic configs, KEY=VALUE, repeatable (DLOG_TOPIC_DEFAULTS:
    /// comma-separated). KEY is a topic config (`retention.ms`) or a Kafka broker config
    /// that sets one (`log.retention.hours`, `log.segment.bytes`, `message.max.bytes`).
    #[arg(long = "topic-default", env = "DLOG_TOPIC_DEFAULTS", value_delimiter = ',', value_name = "KEY=VALUE")]
    pub topic_defaults: Vec<String>,
    /// Partitions of an auto-created topic (Kafka's `num.partitions`). Default 1.
    #[arg(long, env = "DLOG_NUM_PARTITIONS")]
    pub num_partitions: Option<i32>,
    /// Whether Metadata and Produce create topics they name (Kafka's
    /// `auto.create.topics.enable`): true or false. Default true.
    #[arg(long, env = "DLOG_AUTO_CREATE_TOPICS", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub auto_create_topics: Option<bool>,
}

/// The broker settings that set topic config defaults: topic config -> (the broker
/// config name it was set by, the value as given). DescribeConfigs lists them as
/// STATIC_BROKER_CONFIG synonyms.
pub type BrokerTopicDefaults = BTreeMap<String, (String, String)>;

/// The `--config` file. Unknown keys are an error, so a typo is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<i32>,
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    advertise: Option<String>,
    metrics_listen: Option<String>,
    shards: Option<usize>,
    rpc_listen: Option<String>,
    cluster_nodes: Option<String>,
    rack: Option<String>,
    scatter_width: Option<usize>,
    broker_session_timeout_ms: Option<u64>,
    broker_heartbeat_interval_ms: Option<u64>,
    failure_detector_interval_ms: Option<u64>,
    failure_detector_timeout_ms: Option<u64>,
    failure_detector_misses: Option<u32>,
    controller_forward_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    connections_max_idle_ms: Option<u64>,
    socket_request_max_bytes: Option<usize>,
    queued_max_request_bytes: Option<usize>,
    auto_create_topics: Option<bool>,
    num_partitions: Option<i32>,
    /// Broker-wide defaults of topic configs, by topic config name
    /// (`[topic_defaults] "flush.ms" = "1000"`).
    topic_defaults: Option<BTreeMap<String, toml::Value>>,
    /// Group coordinator settings by Kafka's broker config names
    /// (`[groups] "group.max.size" = 100`).
    groups: Option<BTreeMap<String, toml::Value>>,
}

/// The resolved broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertise_host: String,
    pub advertise_port: u16,
    pub metrics_listen: Option<SocketAddr>,
    pub shards: usize,
    pub auto_create_topics: bool,
    pub num_partitions: i32,
    /// Defaults of every topic config (DLog's defaults, then the broker's settings).
    pub topic_defaults: TopicConfig,
    /// Which of them the broker's settings made, and how.
    pub topic_default_settings: BrokerTopicDefaults,
    pub connections: ConnectionLimits,
    pub retention_check_interval_ms: u64,
    pub coordinator: CoordinatorConfig,
    pub cluster: ClusterConfig,
}

/// What one node lets its Kafka clients hold: connections, idle time, request bytes.
/// Each is a flag, a `DLOG_*` variable and a config key of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `max_connections`: connections held at once; at the limit accepting pauses.
    pub max_connections: usize,
    /// `max_connections_per_ip`: connections one client address may hold.
    pub max_connections_per_ip: usize,
    /// `connections_max_idle_ms`: a connection silent this long, nothing in flight, closes.
    pub idle: Duration,
    /// `socket_request_max_bytes`: the largest request frame.
    pub socket_request_max_bytes: usize,
    /// `queued_max_request_bytes`: node-wide bytes of large frames being received.
    pub queued_max_request_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            max_connections_per_ip: 10_000,
            idle: Duration::from_millis(600_000),
            socket_request_max_bytes: dlog_core::limits::SOCKET_REQUEST_MAX_BYTES,
            queued_max_request_bytes: 512 * 1024 * 1024,
        }
    }
}

impl ConnectionLimits {
    fn resolve(args: &BrokerArgs, file: &FileConfig) -> Result<ConnectionLimits, ConfigProblem> {
        let d = ConnectionLimits::default();
        let max_connections = args.max_connections.or(file.max_connections).unwrap_or(d.max_connections);
        let l = ConnectionLimits {
            max_connections,
            max_connections_per_ip: args
                .max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(max_connections),
            idle: Duration::from_millis(
                args.connections_max_idle_ms.or(file.connections_max_idle_ms).unwrap_or(d.idle.as_millis() as u64),
            ),
            socket_request_max_bytes: args
                .socket_request_max_bytes
                .or(file.socket_request_max_bytes)
                .unwrap_or(d.socket_request_max_bytes),
            queued_max_request_bytes: args
                .queued_max_request_bytes
                .or(file.queued_max_request_bytes)
                .unwrap_or(d.queued_max_request_bytes),
        };
        let within = |key: &str, v: usize, range| in_range(key, v, range, "").map(|_| ());
        within("max_connections", l.max_connections, 1..=1_000_000)?;
        within("max_connections_per_ip", l.max_connections_per_ip, 1..=1_000_000)?;
        within("connections_max_idle_ms", l.idle.as_millis() as usize, 100..=86_400_000)?;
        within("socket_request_max_bytes", l.socket_request_max_bytes, 1024..=i32::MAX as usize)?;
        // The budget is taken a frame at a time: it must hold the largest frame.
        within("queued_max_request_bytes", l.queued_max_request_bytes, l.socket_request_max_bytes..=1 << 40)?;
        Ok(l)
    }
}

/// Who is in the cluster. A node without `--cluster-nodes` is a cluster of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Every member with its internal RPC address, ordered by id; includes this node.
    pub nodes: BTreeMap<NodeId, String>,
    /// Where this node's internal RPC listens.
    pub rpc_listen: Option<SocketAddr>,
    pub rack: Option<String>,
    /// The copyset scatter width the controller places replicas with.
    pub scatter_width: usize,
    pub timings: ClusterTimings,
}

/// How fast the cluster notices a lost broker, and how long admin requests wait for the
/// controller. Each is a flag, a `DLOG_*` variable and a config key of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterTimings {
    /// `broker_session_timeout_ms`: a registration not kept alive for this long expires.
    pub broker_session: Duration,
    /// `broker_heartbeat_interval_ms`: how often the registration is kept alive.
    pub broker_heartbeat: Duration,
    /// `failure_detector_interval_ms`: how often the controller pings each broker.
    pub ping_every: Duration,
    /// `failure_detector_timeout_ms`: how long one ping may take.
    pub ping_timeout: Duration,
    /// `failure_detector_misses`: pings missed in a row that fence a broker.
    pub ping_misses: u32,
    /// `controller_forward_timeout_ms`: the wait of a forwarded admin request that
    /// names no timeout of its own.
    pub forward_timeout: Duration,
}

impl Default for ClusterTimings {
    fn default() -> Self {
        ClusterTimings {
            broker_session: Duration::from_millis(3000),
            broker_heartbeat: Duration::from_millis(500),
            ping_every: Duration::from_millis(100),
            ping_timeout: Duration::from_millis(250),
            ping_misses: 3,
            forward_timeout: Duration::from_millis(20_000),
        }
    }
}

impl ClusterTimings {
    /// Resolves each timing (flag, else file, else default) and checks its bounds.
    fn resolve(args: &BrokerArgs, file: &FileConfig) -> Result<ClusterTimings, ConfigProblem> {
        let d = ClusterTimings::default();
        let ms = |name: &str,
                  arg: Option<u64>,
                  key: Option<u64>,
                  default: Duration,
                  range: std::ops::RangeInclusive<u64>| {
            let v = arg.or(key).unwrap_or(default.as_millis() as u64);
            in_range(name, v, range, " ms").map(Duration::from_millis)
        };
        let t = ClusterTimings {
            broker_session: ms(
                "broker_session_timeout_ms",
                args.broker_session_timeout_ms,
                file.broker_session_timeout_ms,
                d.broker_session,
                500..=300_000,
            )?,
            broker_heartbeat: ms(
                "broker_heartbeat_interval_ms",
                args.broker_heartbeat_interval_ms,
                file.broker_heartbeat_interval_ms,
                d.broker_heartbeat,
                10..=150_000,
            )?,
            ping_every: ms(
                "failure_detector_interval_ms",
                args.failure_detector_interval_ms,
                file.failure_detector_interval_ms,
                d.ping_every,
                10..=60_000,
            )?,
            ping_timeout: ms(
                "failure_detector_timeout_ms",
                args.failure_detector_timeout_ms,
                file.failure_detector_timeout_ms,
                d.ping_timeout,
                10..=60_000,
            )?,
            ping_misses: args.failure_detector_misses.or(file.failure_detector_misses).unwrap_or(d.ping_misses),
            forward_timeout: ms(
                "controller_forward_timeout_ms",
                args.controller_forward_timeout_ms,
                file.controller_forward_timeout_ms,
                d.forward_timeout,
                100..=600_000,
            )?,
        };
        in_range("failure_detector_misses", t.ping_misses, 1..=100, "")?;
        if t.broker_heartbeat * 2 > t.broker_session {
            return Err(ConfigProblem(format!(
                "--broker-heartbeat-interval-ms ({} ms) must be at most half of --broker-session-timeout-ms ({} ms)",
                t.broker_heartbeat.as_millis(),
                t.broker_session.as_millis()
            )));
        }
        Ok(t)
    }
}

impl ClusterConfig {
    pub fn is_single_node(&self) -> bool {
        self.nodes.len() <= 1
    }
}

/// Parses `1=host:port,2=host:port`: ids unique and non-negative, addresses HOST:PORT.
pub fn parse_cluster_nodes(what: &str, value: &str) -> Result<BTreeMap<NodeId, String>, ConfigProblem> {
    let mut nodes = BTreeMap::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, addr) =
            item.split_once('=').ok_or_else(|| ConfigProblem(format!("{what}: {item:?} is not ID=HOST:PORT")))?;
        let id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|i| *i >= 0)
            .ok_or_else(|| ConfigProblem(format!("{what}: {id:?} in {item:?} is not a node id (0 or more)")))?;
        let (host, port) = split_host_port(what, addr.trim())?;
        if nodes.insert(NodeId(id), format!("{host}:{port}")).is_some() {
            return Err(ConfigProblem(format!("{what}: node id {id} is listed twice")));
        }
    }
    if nodes.is_empty() {
        return Err(ConfigProblem(format!("{what}: {value:?} names no node")));
    }
    Ok(nodes)
}

/// `v` when `range` holds it; else a problem naming the flag and the key (`key` is the
/// config key, `max_connections`; the flag is `--max-connections`) and the range.
fn in_range<T: PartialOrd + std::fmt::Display>(
    key: &str,
    v: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<T, ConfigProblem> {
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(ConfigProblem(format!(
            "--{} ({key}): {v}{unit} is not between {} and {}{unit}",
            key.replace('_', "-"),
            range.start(),
            range.end()
        )))
    }
}

/// A configuration problem, naming its source.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigProblem(pub String);

/// DLog's defaults for topic configs: Kafka's, except that the log is fsynced at least
/// every second (Kafka never fsyncs by default and leans on replication alone).
pub fn dlog_topic_defaults() -> TopicConfig {
    TopicConfig { flush_ms: 1000, ..TopicConfig::default() }
}

fn parse_addr(what: &str, value: &str) -> Result<SocketAddr, ConfigProblem> {
    value
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ConfigProblem(format!("{what}: {value:?} is not a HOST:PORT address")))
}

fn split_host_port(what: &str, value: &str) -> Result<(String, u16), ConfigProblem> {
    let (host, port) =
        value.rsplit_once(':').ok_or_else(|| ConfigProblem(format!("{what}: {value:?} is not HOST:PORT")))?;
    let port: u16 = port.parse().map_err(|_| ConfigProblem(format!("{what}: {port:?} is not a port number")))?;
    let host = host.trim_matches(|c| c == '[' || c == ']').trim();
    if host.is_empty() {
        return Err(ConfigProblem(format!("{what}: {value:?} has no host")));
    }
    Ok((host.to_string(), port))
}

impl BrokerConfig {
    /// Resolves flags (already merged with env by clap) over the file over defaults.
    pub fn resolve(args: &BrokerArgs) -> Result<BrokerConfig, ConfigProblem> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let timings = ClusterTimings::resolve(args, &file)?;
        let connections = ConnectionLimits::resolve(args, &file)?;
        let node_id = args.node_id.or(file.node_id).unwrap_or(1);
        if node_id < 0 {
            return Err(ConfigProblem(format!("--node-id: {node_id} must not be negative")));
        }
        let data_dir = args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("./data"));
        let listen_s = args.listen.clone().or(file.listen).unwrap_or_else(|| "127.0.0.1:9092".into());
        let listen = parse_addr("--listen", &listen_s)?;
        let (advertise_host, advertise_port) = match args.advertise.clone().or(file.advertise) {
            Some(a) => split_host_port("--advertise", &a)?,
            None if listen.ip().is_unspecified() => (host_name(), listen.port()),
            None => (listen.ip().to_string(), listen.port()),
        };
        let metrics_listen = match args.metrics_listen.clone().or(file.metrics_listen) {
            Some(m) => Some(parse_addr("--metrics-listen", &m)?),
            None => None,
        };
        let shards = args
            .shards
            .or(file.shards)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        if shards == 0 || shards > 256 {
            return Err(ConfigProblem(format!("--shards: {shards} must be between 1 and 256")));
        }
        let num_partitions = args.num_partitions.or(file.num_partitions).unwrap_or(1);
        if !(1..=dlog_core::limits::PARTITIONS_MAX).contains(&num_partitions) {
            return Err(ConfigProblem(format!("--num-partitions: {num_partitions} is out of range")));
        }
        let (topic_defaults, topic_default_settings) =
            resolve_topic_defaults(file.topic_defaults.unwrap_or_default(), &args.topic_defaults)?;
        let coordinator = coordinator_config(file.groups.unwrap_or_default())?;
        let cluster = {
            let rpc_listen = match args.rpc_listen.clone().or(file.rpc_listen) {
                Some(a) => Some(parse_addr("--rpc-listen", &a)?),
                None => None,
            };
            let nodes = match args.cluster_nodes.clone().or(file.cluster_nodes) {
                Some(v) => parse_cluster_nodes("--cluster-nodes", &v)?,
                None => BTreeMap::new(),
            };
            if !nodes.is_empty() && !nodes.contains_key(&NodeId(node_id)) {
                return Err(ConfigProblem(format!(
                    "--cluster-nodes: this node's id {node_id} (--node-id) is not among {:?}",
                    nodes.keys().map(|n| n.0).collect::<Vec<_>>()
                )));
            }
            if nodes.len() > 1 && rpc_listen.is_none() {
                return Err(ConfigProblem("--rpc-listen: a node of a multi-node cluster needs one".into()));
            }
            let scatter_width =
                args.scatter_width.or(file.scatter_width).unwrap_or(dlog_replication::placement::DEFAULT_SCATTER_WIDTH);
            if scatter_width == 0 {
                return Err(ConfigProblem("--scatter-width: must be at least 1".into()));
            }
            ClusterConfig { nodes, rpc_listen, rack: args.rack.clone().or(file.rack), scatter_width, timings }
        };
        Ok(BrokerConfig {
            node_id: NodeId(node_id),
            data_dir,
            listen,
            advertise_host,
            advertise_port,
            metrics_listen,
            shards,
            auto_create_topics: args.auto_create_topics.or(file.auto_create_topics).unwrap_or(true),
            num_partitions,
            topic_defaults,
            topic_default_settings,
            connections,
            retention_check_interval_ms: 300_000,
            coordinator,
            cluster,
        })
    }
}

/// The `[groups]` table: Kafka's names, Kafka's defaults, Kafka's bounds.
fn coordinator_config(table: BTreeMap<String, toml::Value>) -> Result<CoordinatorConfig, ConfigProblem> {
    let mut c = CoordinatorConfig::default();
    for (key, value) in table {
        let bad = |why: &str| ConfigProblem(format!("groups.{key:?}: {value} {why}"));
        let n = value.as_integer().ok_or_else(|| bad("is not an integer"))?;
        let positive = |n: i64| if n > 0 { Ok(n) } else { Err(bad("must be positive")) };
        match key.as_str() {
            "group.initial.rebalance.delay.ms" if n >= 0 => c.group.initial_rebalance_delay_ms = n as u64,
            "group.min.session.timeout.ms" => c.group.min_session_timeout_ms = positive(n)?.min(i32::MAX as i64) as i32,
            "group.max.session.timeout.ms" => c.group.max_session_timeout_ms = positive(n)?.min(i32::MAX as i64) as i32,
            "group.max.size" => c.group.max_size = positive(n)? as usize,
            "offsets.retention.minutes" => c.offsets_retention_ms = positive(n)?.saturating_mul(60_000),
            "offsets.retention.check.interval.ms" => c.offsets_retention_check_interval_ms = positive(n)?,
            "offset.metadata.max.bytes" if n >= 0 => c.offset_metadata_max_bytes = n as usize,
            "group.initial.rebalance.delay.ms" | "offset.metadata.max.bytes" => {
                return Err(bad("must not be negative"))
            }
            _ => return Err(ConfigProblem(format!("groups: unknown key {key:?}"))),
        }
    }
    if c.group.min_session_timeout_ms > c.group.max_session_timeout_ms {
        return Err(ConfigProblem(format!(
            "groups: group.min.session.timeout.ms ({}) is above group.max.session.timeout.ms ({})",
            c.group.min_session_timeout_ms, c.group.max_session_timeout_ms
        )));
    }
    Ok(c)
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigProblem> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigProblem(format!("--config {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ConfigProblem(format!("--config {}: {e}", path.display())))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_is_a_working_single_node() {
        let c = BrokerConfig::resolve(&BrokerArgs::default()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9092".parse().unwrap());
        assert_eq!((c.advertise_host.as_str(), c.advertise_port), ("127.0.0.1", 9092));
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(c.metrics_listen.is_none());
    }

    #[test]
    fn flags_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dlog.toml");
        std::fs::write(
            &file,
            "node_id = 7\nlisten = \"127.0.0.1:9500\"\nnum_partitions = 3\n[topic_defaults]\n\"flush.messages\" = 1\n",
        )
        .unwrap();
        let args = BrokerArgs { config: Some(file), listen: Some("127.0.0.1:9600".into()), ..Default::default() };
        let c = BrokerConfig::resolve(&args).unwrap();
        assert_eq!(c.node_id, NodeId(7));
        assert_eq!(c.listen.port(), 9600);
        assert_eq!(c.num_partitions, 3);
        assert!(c.topic_defaults.flush_every_write());
    }

    #[test]
    fn bad_values_name_their_source() {
        let args = BrokerArgs { listen: Some("notanaddress".into()), ..Default::default() };
        assert!(BrokerConfig::resolve(&args).unwrap_err().0.contains("--listen"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dlog.toml");
        std::fs::write(&file, "listn = \"x\"\n").unwrap();
        let args = BrokerArgs { config: Some(file), ..Default::default() };
        assert!(BrokerConfig::resolve(&args).unwrap_err().0.contains("listn"));
        let args = BrokerArgs { advertise: Some("host:notaport".into()), ..Default::default() };
        assert!(BrokerConfig::resolve(&args).unwrap_err().0.contains("--advertise"));
    }

    #[test]
    fn connection_limits_come_from_flags_and_file_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dlog.toml");
        std::fs::write(&file, "max_connections = 50\nconnections_max_idle_ms = 1000\n").unwrap();
        let args = BrokerArgs { config: Some(file.clone()), max_connections: Some(70), ..Default::default() };
        let c = BrokerConfig::resolve(&args).unwrap().connections;
        assert_eq!((c.max_connections, c.max_connections_per_ip), (70, 70), "per-ip defaults to the node limit");
        assert_eq!(c.idle, Duration::from_millis(1000));
        assert_eq!(ConnectionLimits::default().idle, Duration::from_secs(600), "Kafka's default");
        let small_budget = BrokerArgs { queued_max_request_bytes: Some(1024 * 1024), ..Default::default() };
        let e = BrokerConfig::resolve(&small_budget).unwrap_err().0;
        assert!(e.contains("--queued-max-request-bytes"), "{e}");
        let none = BrokerArgs { max_connections_per_ip: Some(0), ..Default::default() };
        assert!(BrokerConfig::resolve(&none).unwrap_err().0.contains("--max-connections-per-ip"));
    }

    #[test]
    fn cluster_flags_are_checked() {
        let args = BrokerArgs {
            node_id: Some(2),
            rpc_listen: Some("127.0.0.1:9192".into()),
            cluster_nodes: Some("1=127.0.0.1:9191, 2=127.0.0.1:9192,3=localhost:9193".into()),
            rack: Some("az1".into()),
            ..Default::default()
        };
        let c = BrokerConfig::resolve(&args).unwrap().cluster;
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.nodes[&NodeId(3)], "localhost:9193");
        assert_eq!(c.rack.as_deref(), Some("az1"));
        assert_eq!(c.scatter_width, dlog_replication::placement::DEFAULT_SCATTER_WIDTH);
        assert!(!c.is_single_node());
        let wide = BrokerArgs { scatter_width: Some(6), ..args.clone() };
        assert_eq!(BrokerConfig::resolve(&wide).unwrap().cluster.scatter_width, 6);
        let zero = BrokerArgs { scatter_width: Some(0), ..args.clone() };
        assert!(BrokerConfig::resolve(&zero).unwrap_err().0.contains("--scatter-width"));
        assert!(BrokerConfig::resolve(&BrokerArgs::default()).unwrap().cluster.is_single_node());

        let bad = |nodes: &str, node_id: i32, rpc: Option<&str>| {
            let args = BrokerArgs {
                node_id: Some(node_id),
                rpc_listen: rpc.map(String::from),
                cluster_nodes: Some(nodes.into()),
                ..Default::default()
            };
            BrokerConfig::resolve(&args).unwrap_err().0
        };
        let rpc = Some("127.0.0.1:9191");
        assert!(bad("1=a:1,1=b:2", 1, rpc).contains("listed twice"));
        assert!(bad("1=a:1,2=b:2", 3, rpc).contains("not among"));
        assert!(bad("1=a:1,2=b", 1, rpc).contains("HOST:PORT"));
        assert!(bad("x=a:1", 1, rpc).contains("not a node id"));
        assert!(bad("1=a:1,2=b:2", 1, None).contains("--rpc-listen"));
    }

    #[test]
    fn cluster_timings_are_flags_and_keys_with_todays_defaults_and_bounds() {
        let c = BrokerConfig::resolve(&BrokerArgs::default()).unwrap().cluster.timings;
        assert_eq!(c, ClusterTimings::default());
        assert_eq!(
            (c.broker_session, c.broker_heartbeat, c.ping_every, c.ping_timeout, c.ping_misses, c.forward_timeout),
            (
                Duration::from_secs(3),
                Duration::from_millis(500),
                Duration::from_millis(100),
                Duration::from_millis(250),
                3,
                Duration::from_secs(20)
            )
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dlog.toml");
        std::fs::write(&file, "broker_session_timeout_ms = 6000\nfailure_detector_misses = 5\n").unwrap();
        let args = BrokerArgs { config: Some(file), failure_detector_misses: Some(4), ..Default::default() };
        let t = BrokerConfig::resolve(&args).unwrap().cluster.timings;
        assert_eq!((t.broker_session, t.ping_misses), (Duration::from_secs(6), 4), "the flag beats the file");
        let bad = |args: BrokerArgs| BrokerConfig::resolve(&args).unwrap_err().0;
        let e = bad(BrokerArgs { broker_session_timeout_ms: Some(100), ..Default::default() });
        assert!(e.contains("--broker-session-timeout-ms"), "{e}");
        let e = bad(BrokerArgs { broker_heartbeat_interval_ms: Some(2000), ..Default::default() });
        assert!(e.contains("at most half"), "{e}");
        let e = bad(BrokerArgs { failure_detector_misses: Some(0), ..Default::default() });
        assert!(e.contains("--failure-detector-misses"), "{e}");
        let e = bad(BrokerArgs { controller_forward_timeout_ms: Some(0), ..Default::default() });
        assert!(e.contains("controller_forward_timeout_ms"), "{e}");
    }

    #[test]
    fn group_settings_use_kafka_names_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dlog.toml");
        let resolve = |text: &str| {
            std::fs::write(&file, text).unwrap();
            BrokerConfig::resolve(&BrokerArgs { config: Some(file.clone()), ..Default::default() })
        };
        let c = resolve(
            "[groups]\n\"group.max.size\" = 5\n\"offsets.retention.minutes\" = 2\n\"group.initial.rebalance.delay.ms\" = 0\n",
        )
        .unwrap();
        assert_eq!(c.coordinator.group.max_size, 5);
        assert_eq!(c.coordinator.offsets_retention_ms, 120_000);
        assert_eq!(c.coordinator.group.initial_rebalance_delay_ms, 0);
        assert_eq!(c.coordinator.offset_metadata_max_bytes, 4096, "untouched keys keep Kafka's default");
        assert!(resolve("[groups]\n\"group.max.sise\" = 5\n").unwrap_err().0.contains("group.max.sise"));
        assert!(resolve("[groups]\n\"group.max.size\" = 0\n").unwrap_err().0.contains("positive"));
        assert!(resolve("[groups]\n\"group.max.size\" = \"x\"\n").unwrap_err().0.contains("integer"));
        let e = resolve("[groups]\n\"group.min.session.timeout.ms\" = 10\n\"group.max.session.timeout.ms\" = 5\n");
        assert!(e.unwrap_err().0.contains("group.min.session.timeout.ms"));
    }
}
