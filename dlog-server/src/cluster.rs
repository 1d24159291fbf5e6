//! A broker's membership in a multi-node cluster: the metadata Raft group
//! ([`dlog_consensus::RaftStore`]) carried by the internal RPC ([`dlog_rpc`]), and this
//! broker's registration under an ephemeral key (its liveness).
//!
//! Runs on its own small multi-threaded tokio runtime, apart from the shards: Raft
//! heartbeats must not wait behind Kafka traffic. Forming the group waits, retrying,
//! until every member answers (a group is formed only with every log known empty);
//! registration waits for the group. What this node knows of the cluster (live brokers,
//! the controller) is read from its local copy of the metadata ([`Cluster::brokers`]).
//!
//! Topics live in the metadata store, written only by the controller
//! ([`crate::controller`]); admin requests reaching any node are forwarded to it
//! ([`Cluster::forward`]). Every node follows the store with its *reconciler*: it
//! rebuilds its topic image ([`crate::topics::TopicRegistry::replace`]), opens the
//! partitions assigned to it, deletes those of deleted topics, and applies configs and
//! leader epochs, then publishes the Raft index its image reflects, so that a forwarded
//! change is visible on the node that forwarded it before its request is answered.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use dlog_consensus::raft::network::{RaftRequest, RaftResponse};
use dlog_consensus::{
    Comparison, ExpectedVersion, MetadataError, MetadataStore, PutOptions, RaftStatus, RaftStore, RaftStoreConfig,
    RpcHandler, SessionId, SystemClock, Transport, TransportError,
};
use dlog_core::{Error, NodeId};

use crate::config::{BrokerConfig, ClusterTimings};
use crate::controller::{self, members_text, Controller, ControllerRequest, TopicRecord, MEMBERS_KEY};
use crate::shard::{ShardMsg, Shared};
use crate::topics::TopicMeta;

mod registration;
pub use registration::{broker_key, decode_broker, encode_broker, read_brokers, BrokerInfo};
use registration::{incarnation_key, recorded_incarnation, register};

/// The RPC channel of the metadata Raft group.
const RAFT_CHANNEL: &str = "raft";
/// The RPC channel of admin requests forwarded to the controller.
const CONTROLLER_CHANNEL: &str = "controller";
/// How often the controller checks partition leaders against live brokers, at least.
const LEADER_CHECK_EVERY: Duration = Duration::from_millis(250);
/// Producer ids: `/producer-ids/next` = the first id no node has reserved.
const PRODUCER_IDS_KEY: &str = "/producer-ids/next";
/// The Raft transport over the internal RPC.
struct RpcTransport {
    peers: Arc<dlog_rpc::Peers>,
}

impl std::fmt::Debug for RpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcTransport").field("me", &self.peers.me()).finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Transport for RpcTransport {
    async fn call(
        &self,
        _from: NodeId,
        to: NodeId,
        request: RaftRequest,
        timeout: Duration,
    ) -> Result<RaftResponse, TransportError> {
        let payload = Bytes::from(request.to_bytes()?);
        match self.peers.call(to, RAFT_CHANNEL, payload, timeout).await {
            Ok(answer) => RaftResponse::from_bytes(&answer),
            Err(dlog_rpc::RpcError::UnknownPeer(n)) => Err(TransportError::NoRoute(n)),
            Err(dlog_rpc::RpcError::Timeout { node, timeout }) => Err(TransportError::NoAnswer { node, timeout }),
            // A refused or failed call may still have been delivered: only a connection
            // that never formed is safe to call undelivered, and tonic does not tell the
            // two apart, so report "no answer".
            Err(dlog_rpc::RpcError::Unreachable { node, .. }) => Err(TransportError::NoAnswer { node, timeout }),
            Err(dlog_rpc::RpcError::Refused { reason, .. }) => Err(TransportError::Codec(reason)),
        }
    }
}

/// The RPC server side: hands `raft` calls to the store and `controller` calls to the
/// controller, once they are open.
struct Inbound {
    me: NodeId,
    /// This node's cluster, once it has joined one (a node waiting to be added has not).
    cluster_id: OnceLock<String>,
    raft: OnceLock<Arc<dyn RpcHandler>>,
    controller: OnceLock<Arc<Controller>>,
    /// The shards, for partition replication, once they run.
    shared: OnceLock<Weak<Shared>>,
}

#[async_trait::async_trait]
impl dlog_rpc::Handler for Inbound {
    async fn handle(&self, from: NodeId, channel: &str, payload: Bytes) -> Result<Bytes, String> {
        match channel {
            crate::controller::PING_CHANNEL => {
                Ok(controller::Identity { node: self.me, cluster_id: self.cluster_id.get().cloned() }.encode())
            }
            crate::replica::CHANNEL => {
                let shared = self.shared.get().and_then(Weak::upgrade).ok_or("the shards are not running")?;
                crate::replica::serve_call(shared, from, payload).await
            }
            RAFT_CHANNEL => {
                let raft = self.raft.get().ok_or("the metadata store is still opening")?;
                let request = RaftRequest::from_bytes(&payload).map_err(|e| e.to_string())?;
                let answer = raft.handle(request).await;
                Ok(Bytes::from(answer.to_bytes().map_err(|e| e.to_string())?))
            }
            CONTROLLER_CHANNEL => {
                let controller = self.controller.get().ok_or("the controller is still opening")?;
                let request = ControllerRequest::from_bytes(&payload)?;
                Ok(controller::encode_reply(&controller.execute(request).await))
            }
            other => Err(format!("unknown channel {other:?}")),
        }
    }
}

/// This broker's part of the cluster.
pub struct Cluster {
    runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    store: Arc<RaftStore>,
    server: std::sync::Mutex<Option<dlog_rpc::Server>>,
    peers: Arc<dlog_rpc::Peers>,
    controller: Arc<Controller>,
    inbound: Arc<Inbound>,
    /// The Raft index this node's topic image (and partitions) reflect.
    image_applied: tokio::sync::watch::Sender<u64>,
    /// The session holding this broker's registration, while registered.
    registration: Arc<std::sync::Mutex<Option<SessionId>>>,
    registering: tokio::task::JoinHandle<()>,
    timings: ClusterTimings,
    /// The recorded incarnation to replace with this run's once the first topic image
    /// is applied (every partition held before is then open, and marked).
    incarnation_update: std::sync::Mutex<Option<(dlog_consensus::VersionId, String)>>,
}

impl Cluster {
    /// Starts the RPC listener and the metadata node, then (in the background) forms
    /// the group and registers this broker.
    ///
    /// Returns once the group is formed and agrees with this node on who the members
    /// are and which cluster this is (waiting, and logging whom it waits for, while
    /// members are missing at the first start), with the cluster id.
    pub fn start(
        config: &BrokerConfig,
        advertised: (String, u16),
        recorded_id: Option<String>,
        incarnation: &str,
    ) -> anyhow::Result<(Cluster, String)> {
        let cluster = &config.cluster;
        let rpc_listen = cluster.rpc_listen.context("--rpc-listen is required in a cluster")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dlog-cluster")
            .enable_all()
            .build()
            .context("cannot start the cluster runtime")?;
        let me = config.node_id;
        let members: BTreeMap<NodeId, String> = cluster.nodes.clone();
        let dir = config.data_dir.join("meta").join("raft");
        let inbound = Arc::new(Inbound {
            me,
            cluster_id: OnceLock::new(),
            raft: OnceLock::new(),
            controller: OnceLock::new(),
            shared: OnceLock::new(),
        });
        let peers = Arc::new(dlog_rpc::Peers::new(me, members.clone()));
        let (store, server) = runtime.block_on(async {
            let server = dlog_rpc::spawn(rpc_listen, inbound.clone())
                .await
                .with_context(|| format!("--rpc-listen {rpc_listen}: cannot bind"))?;
            let store = RaftStore::open(
                me,
                &dir,
                members,
                RaftStoreConfig::default(),
                Arc::new(RpcTransport { peers: peers.clone() }),
                Arc::new(SystemClock),
            )
            .await
            .with_context(|| format!("cannot open the metadata store in {}", dir.display()))?;
            let _ = inbound.raft.set(store.rpc_handler());
            anyhow::Ok((Arc::new(store), server))
        })?;
        let joined = runtime.block_on(join(&store, &cluster.nodes, recorded_id));
        let cluster_id = match joined {
            Ok(id) => id,
            Err(e) => {
                let (store, server) = (store.clone(), server);
                runtime.block_on(async move {
                    store.shutdown().await;
                    server.stop().await;
                });
                return Err(e);
            }
        };
        let _ = inbound.cluster_id.set(cluster_id.clone());
        let recorded = runtime.block_on(retrying("read this node's recorded data directory", || {
            recorded_incarnation(&store, me, incarnation)
        }))?;
        if let Some((_, old)) = &recorded {
            tracing::warn!(node_id = %me, recorded = %old, now = incarnation,
                "this node's data directory is not the one the cluster knew: its partitions start empty and \
                 catch up before they count in read quorums or may lead; it votes in the metadata group once \
                 caught up");
        }
        let info = BrokerInfo {
            id: me,
            host: advertised.0,
            port: advertised.1,
            rack: cluster.rack.clone(),
            incarnation: incarnation.to_string(),
        };
        let registration = Arc::new(std::sync::Mutex::new(None));
        let registering = runtime.spawn(register(store.clone(), info, registration.clone(), cluster.timings));
        tracing::info!(node_id = %me, rpc = %server.addr, members = cluster.nodes.len(), cluster_id,
            "cluster member started");
        let controller = Arc::new(Controller {
            store: store.clone(),
            defaults: config.topic_defaults.clone(),
            peers: peers.clone(),
            live_since: std::sync::Mutex::new(BTreeMap::new()),
            scatter_width: cluster.scatter_width,
            timings: cluster.timings,
            cluster_id: cluster_id.clone(),
        });
        let _ = inbound.controller.set(controller.clone());
        let c = Cluster {
            handle: runtime.handle().clone(),
            runtime: std::sync::Mutex::new(Some(runtime)),
            store,
            server: std::sync::Mutex::new(Some(server)),
            peers,
            controller,
            inbound,
            image_applied: tokio::sync::watch::channel(0).0,
            registration,
            registering,
            timings: cluster.timings,
            incarnation_update: std::sync::Mutex::new(recorded.map(|(version, _)| (version, incarnation.to_string()))),
        };
        Ok((c, cluster_id))
    }

    /// Starts following the metadata store for `shared` (the reconciler) and the
    /// controller's leader checks. Called once the shards run.
    pub fn start_following(&self, shared: &Arc<Shared>) {
        let _ = self.inbound.shared.set(Arc::downgrade(shared));
        self.handle.spawn(reconcile(
            self.store.clone(),
            self.peers.clone(),
            Arc::downgrade(shared),
            self.image_applied.clone(),
        ));
        let detector = self.controller.clone();
        self.handle.spawn(async move {
            let mut tick = tokio::time::interval(detector.timings.ping_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut misses = BTreeMap::new();
            loop {
                tick.tick().await;
                detector.detect_failures(&mut misses).await;
            }
        });
        let controller = self.controller.clone();
        self.handle.spawn(async move {
            let mut tick = tokio::time::interval(LEADER_CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut leading_since = None;
            loop {
                tick.tick().await;
                controller.rebalance_leaders(&mut leading_since).await;
            }
        });
    }

    /// Waits (at most `timeout`) until this broker is registered. Blocks: call it off
    /// every runtime.
    pub fn wait_registered(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.registration.lock().expect("registration lock").is_none() {
            if std::time::Instant::now() >= deadline {
                tracing::warn!(?timeout, "serving before this broker is registered");
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (at most `timeout`) until this node's topic image reflects everything
    /// committed now, so that a restarted member does not serve an empty topic list.
    /// Blocks: call it off every runtime.
    pub fn wait_for_image(&self, timeout: Duration) {
        if !self.handle.block_on(self.caught_up(timeout)) {
            tracing::warn!(?timeout, "serving before this node caught up with the topic metadata");
        }
    }

    /// Waits (at most `timeout`) until this node's topic image reflects everything
    /// committed now: after a refusal that names the cluster's state (the topic exists),
    /// the caller then sees that state here too. Whether it caught up.
    pub async fn catch_up(&self, timeout: Duration) -> bool {
        self.handle.spawn(self.caught_up(timeout)).await.unwrap_or(false)
    }

    fn caught_up(&self, timeout: Duration) -> impl std::future::Future<Output = bool> + Send + 'static {
        let store = self.store.clone();
        let mut applied = self.image_applied.subscribe();
        async move {
            let caught_up = tokio::time::timeout(timeout, async move {
                let index = store.sync().await.ok().flatten().unwrap_or(0);
                applied.wait_for(|&a| a >= index).await.is_ok()
            });
            matches!(caught_up.await, Ok(true))
        }
    }

    /// Whether this node started without the data the cluster knew it by and has not
    /// yet opened (and marked) every partition it held: until its first topic image is
    /// applied. Partitions assigned to it later are new to it, not lost.
    pub fn lost_its_data(&self) -> bool {
        self.incarnation_update.lock().expect("incarnation lock").is_some()
    }

    /// Once the first topic image is applied (every partition this node held is open
    /// again, and marked as lacking its data), records this run's data directory, so
    /// that the next restart is an ordinary one. Retried on later images if it fails.
    async fn record_incarnation(&self) {
        let Some((version, token)) = self.incarnation_update.lock().expect("incarnation lock").clone() else {
            return;
        };
        let key = incarnation_key(self.store.id());
        let put = self.store.put(&key, Bytes::from(token), PutOptions::expect(ExpectedVersion::Is(version))).await;
        match put {
            Ok(_) => {
                self.incarnation_update.lock().expect("incarnation lock").take();
                tracing::info!("recorded this node's new data directory");
            }
            Err(e) => tracing::warn!(error = %e, "cannot record this node's new data directory yet"),
        }
    }

    /// The live brokers as this node last applied them.
    pub fn brokers(&self) -> Vec<BrokerInfo> {
        read_brokers(&self.store)
    }

    /// The broker `id`, if it is live.
    pub fn broker(&self, id: NodeId) -> Option<BrokerInfo> {
        self.brokers().into_iter().find(|b| b.id == id)
    }

    /// Has the controller make `request`, wherever it runs, and returns once this
    /// node's topic image shows the change. Waits (retrying) while no controller is
    /// elected or the controller changes, up to `within` (the request's own timeout,
    /// when it names one) or else the `controller_forward_timeout_ms` config.
    pub async fn forward(&self, mut request: ControllerRequest, within: Option<Duration>) -> dlog_core::Result<()> {
        let within = within.unwrap_or(self.timings.forward_timeout);
        let store = self.store.clone();
        let peers = self.peers.clone();
        let controller = self.controller.clone();
        let mut applied = self.image_applied.subscribe();
        let task = self.handle.spawn(async move {
            let deadline = tokio::time::Instant::now() + within;
            let mut last_error;
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let answer = match store.status().leader {
                    None => Err(Error::NotController("no controller is elected".into())),
                    Some(leader) if leader == store.id() => {
                        match tokio::time::timeout(left, controller.execute(request.clone())).await {
                            Ok(answer) => answer,
                            Err(_) => Err(Error::NotController("the controller did not finish in time".into())),
                        }
                    }
                    Some(leader) => match peers.call(leader, CONTROLLER_CHANNEL, request.to_bytes(), left).await {
                        Ok(bytes) => controller::decode_reply(&bytes),
                        Err(e) => Err(Error::NotController(format!("cannot reach the controller: {e}"))),
                    },
                };
                match answer {
                    Ok(index) => {
                        // The controller's node may have applied less than its write
                        // (leadership moved under it): also wait for the commit index,
                        // which covers every write that completed.
                        let synced = match tokio::time::timeout_at(deadline, store.sync()).await {
                            Ok(Ok(i)) => i.unwrap_or(0),
                            _ => 0,
                        };
                        let index = index.max(synced);
                        let shown = tokio::time::timeout_at(deadline, applied.wait_for(|&a| a >= index)).await;
                        return match shown {
                            Ok(Ok(_)) => Ok(()),
                            _ => Err(Error::Timeout("the change was made but this node has not applied it yet".into())),
                        };
                    }
                    Err(Error::NotController(why)) => {
                        // It may have taken effect: the next attempt must accept that.
                        request.mark_retried();
                        last_error = why
                    }
                    Err(e) => return Err(e),
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::Timeout(format!("no controller answered within {within:?}: {last_error}")));
                }
                tokio::time::sleep(Duration::from_millis(100).min(deadline - tokio::time::Instant::now())).await;
            }
        });
        task.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Reserves `size` producer ids no other node has or will have: a compare-and-set
    /// on `/producer-ids/next`. Blocks: call it off the shards.
    pub fn reserve_producer_ids(&self, size: i64) -> dlog_core::Result<i64> {
        let store = self.store.clone();
        let within = self.timings.forward_timeout;
        self.handle.block_on(async move {
            let deadline = tokio::time::Instant::now() + within;
            loop {
                let result = async {
                    let current = store.get(PRODUCER_IDS_KEY, Comparison::Equal).await?;
                    let (start, expected) = match &current {
                        Some(e) => {
                            let text = String::from_utf8_lossy(&e.value);
                            let start = text.trim().parse::<i64>().map_err(|_| {
                                MetadataError::InvalidArgument(format!("{PRODUCER_IDS_KEY} holds {text:?}"))
                            })?;
                            (start, ExpectedVersion::Is(e.stat.version_id))
                        }
                        None => (0, ExpectedVersion::NotExists),
                    };
                    let end = start
                        .checked_add(size)
                        .ok_or_else(|| MetadataError::InvalidArgument("producer ids are exhausted".into()))?;
                    store.put(PRODUCER_IDS_KEY, Bytes::from(end.to_string()), PutOptions::expect(expected)).await?;
                    Ok::<i64, MetadataError>(start)
                }
                .await;
                match result {
                    Ok(start) => return Ok(start),
                    Err(MetadataError::UnexpectedVersion { .. }) if tokio::time::Instant::now() < deadline => {}
                    Err(e) if e.is_retriable() && tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(Error::Storage(format!("cannot reserve producer ids: {e}"))),
                }
            }
        })
    }

    /// The active controller: the metadata group's leader.
    /// Calls `node` on the internal RPC. The call runs on the cluster's runtime, so
    /// every connection lives there whichever shard asks.
    pub async fn call(
        &self,
        node: NodeId,
        channel: &'static str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, dlog_rpc::RpcError> {
        let peers = self.peers.clone();
        match self.handle.spawn(async move { peers.call(node, channel, payload, timeout).await }).await {
            Ok(answer) => answer,
            Err(e) => Err(dlog_rpc::RpcError::Unreachable { node, reason: format!("call task: {e}") }),
        }
    }

    pub fn controller(&self) -> Option<NodeId> {
        self.store.status().leader
    }

    pub fn status(&self) -> RaftStatus {
        self.store.status()
    }

    /// Leaves: stops the metadata node and the RPC listener (once; later calls do nothing).
    pub fn shutdown(&self) {
        let Some(runtime) = self.runtime.lock().expect("cluster runtime lock").take() else { return };
        let store = self.store.clone();
        let server = self.server.lock().expect("cluster server lock").take();
        // Deregister first: the controller moves this broker's partitions at once
        // rather than a session timeout later.
        self.registering.abort();
        let session = self.registration.lock().expect("registration lock").take();
        runtime.block_on(async move {
            if let Some(session) = session {
                let closed = tokio::time::timeout(Duration::from_secs(2), store.close_session(session)).await;
                if !matches!(closed, Ok(Ok(()))) {
                    tracing::warn!("could not deregister; the registration expires with its session");
                }
            }
            store.shutdown().await;
            if let Some(s) = server {
                s.stop().await;
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// Follows the topics in the store: whenever this node applies new entries, rebuilds
/// the image if any topic record changed and brings the shards in line, then
/// publishes the index the image reflects.
async fn reconcile(
    store: Arc<RaftStore>,
    peers: Arc<dlog_rpc::Peers>,
    shared: Weak<Shared>,
    applied: tokio::sync::watch::Sender<u64>,
) {
    let mut seen_index = None;
    let mut seen_versions: Vec<(String, dlog_consensus::VersionId)> = Vec::new();
    let mut seen_members = None;
    loop {
        let status = match store.wait_for(Duration::from_secs(1), |s| s.last_applied_index != seen_index).await {
            Ok(s) | Err(s) => s,
        };
        let Some(shared) = shared.upgrade() else { return };
        // Read the index first: the scan that follows reflects at least this much.
        let index = status.last_applied_index;
        // Members added or removed: the RPC follows their addresses.
        let members = store.read_local(|kv| kv.get(MEMBERS_KEY, Comparison::Equal)).map(|e| e.value);
        if members != seen_members {
            let text = members.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            match crate::config::parse_cluster_nodes(MEMBERS_KEY, &text) {
                Ok(addrs) if !addrs.is_empty() => peers.set_addrs(addrs),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "unreadable member list"),
            }
            seen_members = members;
        }
        let entries = store.read_local(|kv| kv.range_scan(controller::TOPICS_PREFIX, controller::TOPICS_END));
        let versions: Vec<_> = entries.iter().map(|e| (e.key.clone(), e.stat.version_id)).collect();
        if versions != seen_versions {
            let defaults = shared.config.topic_defaults.clone();
            let topics: Vec<TopicMeta> = entries
                .iter()
                .filter_map(|e| {
                    let name = &e.key[controller::TOPICS_PREFIX.len()..];
                    let meta = TopicRecord::decode(&e.value).and_then(|r| r.to_meta(name, &defaults));
                    meta.map_err(|err| tracing::error!(topic = name, error = %err, "unreadable topic record")).ok()
                })
                .collect();
            match apply_image(&shared, topics).await {
                Ok(()) => seen_versions = versions,
                Err(e) => {
                    // Try again on the next change or tick; the image is not published.
                    tracing::error!(error = %e, "cannot apply the topic metadata; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        if let Some(cluster) = &shared.cluster {
            cluster.record_incarnation().await;
        }
        seen_index = index;
        applied.send_replace(index.unwrap_or(0));
    }
}

/// Brings the shards in line with `topics` and makes them the image: deletes the
/// partitions of topics gone (or recreated with a new id), opens the partitions now
/// assigned here, swaps the image, then applies configs and leader epochs.
async fn apply_image(shared: &Arc<Shared>, topics: Vec<TopicMeta>) -> dlog_core::Result<()> {
    let current: Vec<TopicMeta> = shared.topics.read().expect("topic registry lock").list().cloned().collect();
    let same = |a: &TopicMeta, b: &TopicMeta| a.name == b.name && a.id == b.id;
    let (kept, gone): (Vec<TopicMeta>, Vec<TopicMeta>) =
        current.into_iter().partition(|old| topics.iter().any(|t| same(t, old)));
    let changed: Vec<TopicMeta> = topics
        .iter()
        .filter(|t| {
            !kept.iter().any(|old| same(old, t) && old.overrides == t.overrides && old.assignments == t.assignments)
        })
        .cloned()
        .collect();
    for old in &gone {
        let name = old.name.clone();
        on_every_shard(shared, move |s| s.delete_topic(&name)).await?;
        tracing::info!(topic = %old.name, "deleted topic's local partitions");
    }
    for t in &changed {
        let meta = t.clone();
        match on_every_shard(shared, move |s| s.open_topic(&meta)).await {
            Err(Error::ShuttingDown) => return Err(Error::ShuttingDown),
            // One damaged partition must not hold back every other topic's change: its
            // partitions here stay closed (NOT_LEADER_OR_FOLLOWER) until it is fixed.
            Err(e) => tracing::error!(topic = %t.name, error = %e, "cannot open the topic's partitions here"),
            Ok(()) => {}
        }
    }
    shared.topics.write().expect("topic registry lock").replace(topics);
    for t in changed {
        on_every_shard(shared, move |s| {
            s.reconfigure_topic(&t);
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// Runs `f` on every shard (from outside the shards) and waits for all of them.
async fn on_every_shard<F>(shared: &Arc<Shared>, f: F) -> dlog_core::Result<()>
where
    F: Fn(&crate::shard::Shard) -> dlog_core::Result<()> + Clone + Send + 'static,
{
    for (i, tx) in shared.senders.iter().enumerate() {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let f = f.clone();
        let job: crate::shard::Job = Box::new(move |shard| {
            Box::pin(async move {
                let _ = done_tx.send(f(&shard));
            })
        });
        tx.send(ShardMsg::Run(job)).await.map_err(|_| Error::ShuttingDown)?;
        done_rx.await.map_err(|_| Error::ShuttingDown)?.map_err(|e| Error::Storage(format!("shard {i}: {e}")))?;
    }
    Ok(())
}

const CLUSTER_ID_KEY: &str = "/cluster/id";

/// Runs `op` until it succeeds or fails for a reason retrying cannot fix, logging
/// every few attempts why it waits.
async fn retrying<T, F, Fut>(what: &str, mut op: F) -> Result<T, MetadataError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, MetadataError>>,
{
    let mut attempt = 0u32;
    loop {
        match op().await {
            Err(e) if e.is_retriable() => {
                if attempt.is_multiple_of(10) {
                    tracing::info!(error = %e, "waiting to {what}");
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

/// Forms the group (once every member answers), then checks this node against it: the
/// member lists must be equal and the data directory, if it recorded a cluster id, must
/// be of this cluster. The first node to get here records both.
async fn join(
    store: &RaftStore,
    members: &BTreeMap<NodeId, String>,
    recorded_id: Option<String>,
) -> anyhow::Result<String> {
    retrying("form the metadata group (every member must answer)", || store.bootstrap()).await?;
    let mine = members_text(members);
    let put_new = |key: &'static str, value: String| async move {
        match store.put(key, Bytes::from(value), PutOptions::expect(ExpectedVersion::NotExists)).await {
            Ok(_) | Err(MetadataError::UnexpectedVersion { .. }) => {}
            Err(e) => return Err(e),
        }
        let stored = store.get(key, Comparison::Equal).await?.map(|e| e.value);
        Ok(stored.map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default())
    };
    let theirs = retrying("record the cluster members", || put_new(MEMBERS_KEY, mine.clone())).await?;
    if theirs != mine {
        anyhow::bail!("--cluster-nodes {mine} disagrees with the cluster's members {theirs}");
    }
    let candidate = recorded_id.clone().unwrap_or_else(crate::broker::new_cluster_id);
    let id = retrying("record the cluster id", || put_new(CLUSTER_ID_KEY, candidate.clone())).await?;
    if let Some(recorded) = recorded_id {
        if recorded != id {
            anyhow::bail!(
                "--data-dir belongs to cluster {recorded:?}, but the nodes of --cluster-nodes form cluster {id:?}"
            );
        }
    }
    Ok(id)
}
