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
//! Not yet here: topics and partition assignments still live in each broker's local
//! registry; the controller that assigns them comes next.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use dlog_consensus::raft::network::{RaftRequest, RaftResponse};
use dlog_consensus::{
    Comparison, ExpectedVersion, MetadataError, MetadataStore, PutOptions, RaftStatus, RaftStore, RaftStoreConfig,
    RpcHandler, SystemClock, Transport, TransportError,
};
use dlog_core::NodeId;

use crate::config::BrokerConfig;

/// The RPC channel of the metadata Raft group.
const RAFT_CHANNEL: &str = "raft";
/// Where brokers register: `/brokers/ids/<id, 10 digits>` = `host:port rack`.
const BROKERS_PREFIX: &str = "/brokers/ids/";
const BROKERS_END: &str = "/brokers/ids0";
/// A broker not heard from for this long is gone (its registration expires).
const BROKER_SESSION: Duration = Duration::from_secs(3);
const KEEP_ALIVE_EVERY: Duration = Duration::from_millis(500);

/// A live broker as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: NodeId,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

fn broker_key(id: NodeId) -> String {
    format!("{BROKERS_PREFIX}{:010}", id.0)
}

fn encode_broker(b: &BrokerInfo) -> Bytes {
    Bytes::from(format!("{}:{} {}", b.host, b.port, b.rack.as_deref().unwrap_or("")))
}

fn decode_broker(key: &str, value: &[u8]) -> Option<BrokerInfo> {
    let id = key.strip_prefix(BROKERS_PREFIX)?.parse().ok()?;
    let text = std::str::from_utf8(value).ok()?;
    let (addr, rack) = text.split_once(' ').unwrap_or((text, ""));
    let (host, port) = addr.rsplit_once(':')?;
    Some(BrokerInfo {
        id: NodeId(id),
        host: host.to_string(),
        port: port.parse().ok()?,
        rack: (!rack.is_empty()).then(|| rack.to_string()),
    })
}

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

/// The RPC server side: hands `raft` calls to the store once it is open.
struct Inbound {
    raft: OnceLock<Arc<dyn RpcHandler>>,
}

#[async_trait::async_trait]
impl dlog_rpc::Handler for Inbound {
    async fn handle(&self, _from: NodeId, channel: &str, payload: Bytes) -> Result<Bytes, String> {
        match channel {
            RAFT_CHANNEL => {
                let raft = self.raft.get().ok_or("the metadata store is still opening")?;
                let request = RaftRequest::from_bytes(&payload).map_err(|e| e.to_string())?;
                let answer = raft.handle(request).await;
                Ok(Bytes::from(answer.to_bytes().map_err(|e| e.to_string())?))
            }
            other => Err(format!("unknown channel {other:?}")),
        }
    }
}

/// This broker's part of the cluster.
pub struct Cluster {
    runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
    store: Arc<RaftStore>,
    server: std::sync::Mutex<Option<dlog_rpc::Server>>,
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
        let (store, server) = runtime.block_on(async {
            let inbound = Arc::new(Inbound { raft: OnceLock::new() });
            let server = dlog_rpc::spawn(rpc_listen, inbound.clone())
                .await
                .with_context(|| format!("--rpc-listen {rpc_listen}: cannot bind"))?;
            let peers = Arc::new(dlog_rpc::Peers::new(me, members.clone()));
            let store = RaftStore::open(
                me,
                &dir,
                members,
                RaftStoreConfig::default(),
                Arc::new(RpcTransport { peers }),
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
        let info = BrokerInfo { id: me, host: advertised.0, port: advertised.1, rack: cluster.rack.clone() };
        runtime.spawn(register(store.clone(), info));
        tracing::info!(node_id = %me, rpc = %server.addr, members = cluster.nodes.len(), cluster_id,
            "cluster member started");
        let c = Cluster {
            runtime: std::sync::Mutex::new(Some(runtime)),
            store,
            server: std::sync::Mutex::new(Some(server)),
        };
        Ok((c, cluster_id))
    }

    /// The live brokers as this node last applied them.
    pub fn brokers(&self) -> Vec<BrokerInfo> {
        self.store.read_local(|kv| {
            kv.range_scan(BROKERS_PREFIX, BROKERS_END).iter().filter_map(|e| decode_broker(&e.key, &e.value)).collect()
        })
    }

    /// The active controller: the metadata group's leader.
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
        runtime.block_on(async move {
            store.shutdown().await;
            if let Some(s) = server {
                s.stop().await;
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

const MEMBERS_KEY: &str = "/cluster/members";
const CLUSTER_ID_KEY: &str = "/cluster/id";

fn members_text(members: &BTreeMap<NodeId, String>) -> String {
    members.iter().map(|(id, addr)| format!("{}={addr}", id.0)).collect::<Vec<_>>().join(",")
}

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

/// Keeps this broker registered: an ephemeral key in a session kept alive; a lost
/// session registers again.
async fn register(store: Arc<RaftStore>, info: BrokerInfo) {
    let store_dyn: Arc<dyn MetadataStore> = store.clone();
    loop {
        let session = match store.create_session(BROKER_SESSION, &format!("broker-{}", info.id.0)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "cannot open the broker session yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if let Err(e) = store.put(&broker_key(info.id), encode_broker(&info), PutOptions::ephemeral(session)).await {
            tracing::warn!(error = %e, "cannot register the broker; retrying");
            let _ = store.close_session(session).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        tracing::info!(broker = %info.id, session = session.0, "broker registered");
        let lost = dlog_consensus::spawn_keep_alive(store_dyn.clone(), session, KEEP_ALIVE_EVERY).await;
        match lost {
            Ok(e) => tracing::warn!(error = %e, "broker session lost; registering again"),
            Err(_) => return, // runtime shutting down
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_round_trip() {
        let b = BrokerInfo { id: NodeId(7), host: "10.0.0.1".into(), port: 9092, rack: Some("az-1".into()) };
        assert_eq!(decode_broker(&broker_key(b.id), &encode_broker(&b)), Some(b.clone()));
        let no_rack = BrokerInfo { rack: None, ..b };
        assert_eq!(decode_broker(&broker_key(no_rack.id), &encode_broker(&no_rack)), Some(no_rack));
        assert!(broker_key(NodeId(7)).as_str() < BROKERS_END);
        assert_eq!(decode_broker("/other/1", b"h:1 "), None);
    }
}
