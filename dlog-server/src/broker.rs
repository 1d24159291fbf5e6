//! Starting and stopping a broker: data directory, topic registry, shards, the Kafka
//! listener and the metrics endpoint.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use dlog_core::ShardId;
use tokio::sync::oneshot;

use crate::config::BrokerConfig;
use crate::shard::{shard_channel, spawn_shard, Shard, ShardMsg, ShardThread, Shared};
use crate::topics::TopicRegistry;

/// A running broker.
pub struct Broker {
    shared: Arc<Shared>,
    threads: Vec<ShardThread>,
    /// The Kafka listener's bound address (useful when configured with port 0).
    pub local_addr: SocketAddr,
    _lock: std::fs::File,
}

/// The cluster id this data directory recorded, if any.
fn recorded_cluster_id(config: &BrokerConfig) -> Option<String> {
    let path = config.data_dir.join("meta").join("cluster.id");
    std::fs::read_to_string(path).ok().map(|id| id.trim().to_string()).filter(|id| !id.is_empty())
}

/// Whether the data directory holds topic files of a single node.
fn has_single_node_topics(config: &BrokerConfig) -> bool {
    std::fs::read_dir(config.data_dir.join("meta").join("topics"))
        .map(|mut d| d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "toml"))))
        .unwrap_or(false)
}

/// A new cluster id: Kafka's are 22 characters of url-safe base64 of a UUID; any stable
/// string works for clients.
pub fn new_cluster_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..22].to_string()
}

/// Records `id` as this data directory's cluster (atomically: file and directory
/// fsynced).
fn record_cluster_id(config: &BrokerConfig, id: &str) -> anyhow::Result<()> {
    let meta = config.data_dir.join("meta");
    dlog_storage::replace_file_atomically(&meta, "cluster.id", id.as_bytes())
        .with_context(|| format!("recording the cluster id in {}", meta.display()))
}

/// This data directory's incarnation: a random token made at its first start, which
/// tells this node's own earlier registrations from another broker's.
fn data_dir_incarnation(config: &BrokerConfig) -> anyhow::Result<String> {
    let meta = config.data_dir.join("meta");
    if let Ok(token) = std::fs::read_to_string(meta.join("incarnation")) {
        if !token.trim().is_empty() {
            return Ok(token.trim().to_string());
        }
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    dlog_storage::replace_file_atomically(&meta, "incarnation", token.as_bytes())
        .with_context(|| format!("recording the incarnation in {}", meta.display()))?;
    Ok(token)
}

impl Broker {
    /// Opens the data directory, recovers every partition and starts serving.
    pub fn start(mut config: BrokerConfig) -> anyhow::Result<Broker> {
        let started = std::time::Instant::now();
        std::fs::create_dir_all(config.data_dir.join("meta"))
            .with_context(|| format!("--data-dir {}", config.data_dir.display()))?;
        let lock_path = config.data_dir.join("meta").join("lock");
        let lock = std::fs::File::create(&lock_path).with_context(|| lock_path.display().to_string())?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!("--data-dir {}: another broker is using this directory", config.data_dir.display())
        })?;
        let recorded = recorded_cluster_id(&config);
        // A cluster member's topics are in the metadata store; it starts with an empty
        // image, filled once it follows the store.
        let topics = if config.cluster.is_single_node() {
            TopicRegistry::load(&config.data_dir, config.node_id, config.topic_defaults.clone())
                .with_context(|| format!("loading topics from {}", config.data_dir.display()))?
        } else {
            TopicRegistry::image(config.node_id, config.topic_defaults.clone())
        };
        // Bound now (a taken port fails the start at once), listening only once this
        // node serves: registered in its cluster and holding the topic image, so no
        // client is ever told of a cluster without brokers or topics (as Kafka brokers
        // open their listeners only once registered).
        let socket =
            bind_kafka_listener(config.listen).with_context(|| format!("--listen {}: cannot bind", config.listen))?;
        let local_addr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| anyhow::anyhow!("--listen {}: not an internet address", config.listen))?;
        if config.advertise_port == 0 {
            // Listening on port 0 (tests): advertise the port the OS chose.
            config.advertise_port = local_addr.port();
        }

        if !config.cluster.is_single_node() && has_single_node_topics(&config) {
            anyhow::bail!(
                "--data-dir {} holds a single node's topics (meta/topics); a cluster member keeps topics in the \
                 cluster's metadata: start it on an empty data directory",
                config.data_dir.display()
            );
        }
        // A single node makes its own cluster id; a cluster member takes the group's,
        // and refuses to start on a data directory of another cluster.
        let (cluster, cluster_id) = if config.cluster.is_single_node() {
            (None, recorded.clone().unwrap_or_else(new_cluster_id))
        } else {
            let advertised = (config.advertise_host.clone(), config.advertise_port);
            let incarnation = data_dir_incarnation(&config)?;
            let (cluster, id) = crate::cluster::Cluster::start(&config, advertised, recorded.clone(), &incarnation)?;
            (Some(Arc::new(cluster)), id)
        };
        let producer_ids = match &cluster {
            None => crate::producer_ids::ProducerIdAllocator::open(&config.data_dir.join("meta"))?,
            Some(c) => {
                let c = c.clone();
                crate::producer_ids::ProducerIdAllocator::cluster(Box::new(move |n| c.reserve_producer_ids(n)))
            }
        };
        if recorded.as_deref() != Some(&*cluster_id) {
            record_cluster_id(&config, &cluster_id)?;
        }

        let n = config.shards;
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let mut senders = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        let mut shared_txs = Vec::with_capacity(n);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for i in 0..n {
            let (tx, rx) = shard_channel();
            let (shared_tx, shared_rx) = std::sync::mpsc::channel();
            let core = if cores.len() >= n { Some(cores[i]) } else { None };
            threads.push(spawn_shard(ShardId(i), shared_rx, rx, core, ready_tx.clone())?);
            senders.push(tx);
            shared_txs.push(shared_tx);
        }
        let shared = Arc::new(Shared {
            config: config.clone(),
            cluster_id,
            topics: RwLock::new(topics),
            senders,
            watches: RwLock::new(Default::default()),
            producer_ids: std::sync::Mutex::new(producer_ids),
            cluster,
            gate: crate::gate::Gate::new(config.connections),
        });
        for tx in shared_txs {
            tx.send(shared.clone()).map_err(|_| anyhow::anyhow!("shard thread died at start"))?;
        }
        for _ in 0..n {
            ready_rx.recv().map_err(|_| anyhow::anyhow!("shard thread died at start"))??;
        }

        if let Some(c) = &shared.cluster {
            c.start_following(&shared);
            c.wait_registered(REGISTRATION_WAIT);
            c.wait_for_image(std::time::Duration::from_secs(10));
        }
        socket.listen(LISTEN_BACKLOG).with_context(|| format!("--listen {}: cannot listen", config.listen))?;
        socket.set_nonblocking(true)?;
        let listener: std::net::TcpListener = socket.into();

        // The acceptor lives on shard 0 and deals connections round-robin to all shards.
        let accept: crate::shard::Job = Box::new(move |shard| Box::pin(accept_loop(shard, listener)));
        shared.senders[0]
            .try_send(ShardMsg::Run(accept))
            .map_err(|_| anyhow::anyhow!("shard 0 is not accepting work"))?;

        tracing::info!(node_id = %config.node_id, listen = %local_addr,
            advertise = %format!("{}:{}", config.advertise_host, config.advertise_port),
            data_dir = %config.data_dir.display(), shards = n,
            startup_ms = started.elapsed().as_millis() as u64, "broker serving");
        Ok(Broker { shared, threads, local_addr, _lock: lock })
    }

    /// Stops serving, flushes and closes every partition, and joins the shards.
    pub fn shutdown(self) {
        let mut waits = Vec::new();
        for tx in &self.shared.senders {
            let (done_tx, done_rx) = oneshot::channel();
            if tx.blocking_send(ShardMsg::Shutdown(done_tx)).is_ok() {
                waits.push(done_rx);
            }
        }
        for w in waits {
            let _ = w.blocking_recv();
        }
        for t in self.threads {
            let _ = t.join.join();
        }
        if let Some(c) = &self.shared.cluster {
            c.shutdown();
        }
        tracing::info!("broker stopped cleanly");
    }
}

/// Pending connections the kernel queues before accept.
const LISTEN_BACKLOG: i32 = 1024;
/// How long a cluster member waits for its registration before it listens anyway
/// (saying so): a member cut off from the metadata majority still serves what it can.
const REGISTRATION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A TCP socket bound to `addr` (with SO_REUSEADDR, as std's listener), not listening.
fn bind_kafka_listener(addr: std::net::SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

async fn accept_loop(shard: std::rc::Rc<Shard>, listener: std::net::TcpListener) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot register the Kafka listener");
            return;
        }
    };
    let n = shard.shared.senders.len();
    let gate = shard.shared.gate.clone();
    let mut next = 0usize;
    loop {
        // At max.connections, wait here: new clients queue in the kernel's backlog.
        let slot = gate.slot().await;
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admission) = gate.admit(slot, peer.ip()) else {
            tracing::info!(%peer, limit = gate.limits().max_connections_per_ip, "closing connection: max.connections.per.ip");
            metrics::counter!("dlog_connections_refused_total", "reason" => "per_ip").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let target = ShardId(next % n);
        next = next.wrapping_add(1);
        let Ok(std_stream) = stream.into_std() else { continue };
        let shard = shard.clone();
        tokio::task::spawn_local(async move {
            let served = shard
                .run_on(target, move |s| async move {
                    match tokio::net::TcpStream::from_std(std_stream) {
                        Ok(stream) => {
                            tokio::task::spawn_local(crate::conn::serve(s, stream, peer, admission));
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot register connection"),
                    }
                })
                .await;
            if served.is_err() {
                tracing::warn!(%peer, "shard stopped; connection dropped");
            }
        });
    }
}
