//! How the nodes of the metadata group talk: the [`Transport`] trait, the messages it
//! carries, openraft's network on top of it, and [`InProcessTransport`] for tests.
//!
//! One [`Transport`] carries both openraft's RPCs (append entries, vote, snapshot) and
//! DLog's own (a follower forwarding a client write or read to the leader, bootstrap's
//! probe). Its contract is one call: deliver a [`RaftRequest`] to a node and bring back
//! its [`RaftResponse`] within a timeout, saying whether a failed call was delivered
//! ([`TransportError`]). The receiving node answers through its [`RpcHandler`].
//!
//! Every message is serde-serializable; [`RaftRequest::to_bytes`] and
//! [`RaftRequest::from_bytes`] (and the same on [`RaftResponse`]) are the postcard
//! encoding a byte transport (gRPC) carries. [`InProcessTransport`] round-trips every
//! message through those bytes too, so the tests prove the encoding.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use dlog_core::NodeId;
use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, Snapshot, SnapshotMeta, Vote};
use serde::{Deserialize, Serialize};

use super::{node_id, RaftNodeId, TypeConfig};
use crate::kv::{Command, CommandOutcome, Comparison, Entry, KvError};

/// How long openraft waits before retrying a node the transport found unreachable.
/// openraft's default is 500 ms; a healed link or a restarted node is back in use sooner.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(100);

/// A message to one node of the metadata group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RaftRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<RaftNodeId>),
    /// A whole snapshot, in one message: metadata snapshots are small (a few MB at most).
    Snapshot {
        vote: Vote<RaftNodeId>,
        meta: SnapshotMeta<RaftNodeId, BasicNode>,
        data: Vec<u8>,
    },
    /// A client operation sent by a follower to the node it believes leads.
    Forward(ForwardRequest),
    /// Whether the node's Raft is initialized (bootstrap asks before initializing).
    Probe,
}

/// The answer to a [`RaftRequest`], of the same kind.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftResponse {
    AppendEntries(AppendEntriesResponse<RaftNodeId>),
    Vote(VoteResponse<RaftNodeId>),
    Snapshot(SnapshotResponse<RaftNodeId>),
    Forward(Result<ForwardResponse, ForwardError>),
    Probe {
        initialized: bool,
        leader: Option<RaftNodeId>,
    },
    /// The receiving node's Raft has stopped or failed.
    Fatal(Fatal<RaftNodeId>),
}

/// A client operation a follower forwards to the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// A write, already stamped with the proposer's clock.
    Write(Command),
    /// A linearizable read.
    Read(ReadRequest),
    /// Bootstrap: make these nodes learners (node id and address).
    AddLearners(BTreeMap<RaftNodeId, String>),
    /// The leader's commit index, confirmed with a quorum: every change that completed
    /// before this request was sent is at or below it (a watch starts from there).
    ReadIndex,
}

/// The reads of [`crate::MetadataStore`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadRequest {
    Get { key: String, comparison: Comparison },
    List { start: String, end: String },
    RangeScan { start: String, end: String },
}

/// What the leader answers a forwarded operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardResponse {
    /// The outcome of the write as the state machine applied it.
    Written(Result<CommandOutcome, KvError>),
    Get(Option<Entry>),
    List(Vec<String>),
    RangeScan(Vec<Entry>),
    LearnersAdded,
    ReadIndex(Option<u64>),
}

/// Why the node asked could not serve a forwarded operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ForwardError {
    /// It does not lead; `leader` does, if it knows. Nothing was done: retry there.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<RaftNodeId> },
    /// It leads but could not confirm it with a quorum. Nothing was done: retriable.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// It tried and gave up (timeout, shutting down): the operation may or may not take
    /// effect. Not to be retried blindly.
    #[error("{0}")]
    Unavailable(String),
}

/// Why a [`Transport::call`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The request was not delivered (the node is down or cut off). Retrying is safe.
    #[error("node {0} is unreachable")]
    Unreachable(NodeId),
    /// The request may have been delivered and acted on, but no answer came back in time.
    #[error("no answer from node {node} within {timeout:?}")]
    NoAnswer { node: NodeId, timeout: Duration },
    /// The transport knows no way to that node (no address for it).
    #[error("no route to node {0}")]
    NoRoute(NodeId),
    /// A message could not be encoded or decoded.
    #[error("undecodable message: {0}")]
    Codec(String),
}

macro_rules! postcard_codec {
    ($t:ty) => {
        impl $t {
            /// The message as the bytes a byte transport carries (postcard).
            pub fn to_bytes(&self) -> Result<Vec<u8>, TransportError> {
                postcard::to_stdvec(self).map_err(|e| TransportError::Codec(e.to_string()))
            }

            /// The message of [`Self::to_bytes`]; an error for anything else.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, TransportError> {
                postcard::from_bytes(bytes).map_err(|e| TransportError::Codec(e.to_string()))
            }
        }
    };
}
postcard_codec!(RaftRequest);
postcard_codec!(RaftResponse);

/// Carries requests between the nodes of the metadata group. Implementations: the
/// [`InProcessTransport`] of tests; a gRPC one carrying the messages' bytes.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Delivers `request` from `from` to `to` and returns `to`'s answer, or an error
    /// within about `timeout`. Must not retry on its own: the caller decides.
    async fn call(
        &self,
        from: NodeId,
        to: NodeId,
        request: RaftRequest,
        timeout: Duration,
    ) -> Result<RaftResponse, TransportError>;
}

/// The receiving end of a node: what a transport calls with the requests for it.
#[async_trait]
pub trait RpcHandler: Send + Sync + 'static {
    async fn handle(&self, request: RaftRequest) -> RaftResponse;
}

/// What the network does to one message ([`LinkFaults`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered after this delay. Random delays reorder messages.
    After(Duration),
    /// Never delivered: the sender waits out its timeout.
    Lost,
}

/// A fault model for [`InProcessTransport`]: decides the fate of every message, a
/// request or an answer, from `from` to `to`, given its bytes (so that a seeded model
/// can decide by content, whatever the order in which messages sent at the same
/// instant reach it).
pub trait LinkFaults: Send + Sync + fmt::Debug + 'static {
    fn deliver(&self, from: NodeId, to: NodeId, message: &[u8]) -> Delivery;
}

/// A transport between nodes in one process, for tests: a registry of nodes by id,
/// with links that can be cut and healed and nodes that can be dropped, and optionally
/// a [`LinkFaults`] model delaying and losing messages.
///
/// It holds its nodes weakly (a node owns its transport; the reverse would be a
/// cycle), so a node whose store is dropped becomes unreachable by itself. Requests
/// and answers go through their postcard bytes, as over a network.
#[derive(Debug, Default)]
pub struct InProcessTransport {
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    nodes: BTreeMap<NodeId, Weak<dyn RpcHandler>>,
    /// Cut links, each as (lower id, higher id): both directions are cut.
    cut: BTreeSet<(NodeId, NodeId)>,
    faults: Option<Arc<dyn LinkFaults>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("nodes", &self.nodes.keys())
            .field("cut", &self.cut)
            .field("faults", &self.faults)
            .finish()
    }
}

fn link(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

impl InProcessTransport {
    pub fn new() -> Arc<InProcessTransport> {
        Arc::new(InProcessTransport::default())
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // The registry is only ever updated whole under the lock: a poisoned one is intact.
        self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `handler` reachable as node `id` (replacing an earlier registration).
    pub fn register(&self, id: NodeId, handler: &Arc<dyn RpcHandler>) {
        self.registry().nodes.insert(id, Arc::downgrade(handler));
    }

    /// Drops node `id` entirely: nothing reaches it any more until it registers again.
    pub fn remove(&self, id: NodeId) {
        self.registry().nodes.remove(&id);
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        assert_ne!(a, b, "a node has no link to itself");
        self.registry().cut.insert(link(a, b));
    }

    /// Restores the link between `a` and `b`.
    pub fn heal(&self, a: NodeId, b: NodeId) {
        self.registry().cut.remove(&link(a, b));
    }

    /// Cuts every link between `side` and the other registered nodes.
    pub fn partition(&self, side: &[NodeId]) {
        let mut registry = self.registry();
        let others: Vec<NodeId> = registry.nodes.keys().filter(|id| !side.contains(id)).copied().collect();
        for &a in side {
            for &b in &others {
                registry.cut.insert(link(a, b));
            }
        }
    }

    /// Restores every cut link.
    pub fn heal_all(&self) {
        self.registry().cut.clear();
    }

    /// Delays and loses messages as `faults` says, or, with `None`, delivers every
    /// message at once.
    pub fn set_faults(&self, faults: Option<Arc<dyn LinkFaults>>) {
        self.registry().faults = faults;
    }

    fn faults(&self) -> Option<Arc<dyn LinkFaults>> {
        self.registry().faults.clone()
    }

    /// Carries one message from `from` to `to` through the fault model, by `deadline`:
    /// whether it arrived in time and the link is still up.
    async fn carry(&self, from: NodeId, to: NodeId, message: &[u8], deadline: tokio::time::Instant) -> bool {
        let Some(faults) = self.faults() else { return true };
        match faults.deliver(from, to, message) {
            Delivery::Lost => {
                tokio::time::sleep_until(deadline).await;
                false
            }
            Delivery::After(delay) => {
                let arrival = tokio::time::Instant::now() + delay;
                if arrival > deadline {
                    tokio::time::sleep_until(deadline).await;
                    return false;
                }
                tokio::time::sleep_until(arrival).await;
                // A link cut while the message was on its way loses it.
                !self.registry().cut.contains(&link(from, to))
            }
        }
    }

    fn reachable(&self, from: NodeId, to: NodeId) -> Option<Arc<dyn RpcHandler>> {
        let registry = self.registry();
        if registry.cut.contains(&link(from, to)) {
            return None;
        }
        registry.nodes.get(&to).and_then(Weak::upgrade)
    }
}

#[async_trait]
impl Transport for InProcessTransport {
    async fn call(
        &self,
        from: NodeId,
        to: NodeId,
        request: RaftRequest,
        timeout: Duration,
    ) -> Result<RaftResponse, TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let no_answer = TransportError::NoAnswer { node: to, timeout };
        let handler = self.reachable(from, to).ok_or(TransportError::Unreachable(to))?;
        let bytes = request.to_bytes()?;
        if !self.carry(from, to, &bytes, deadline).await {
            return Err(no_answer);
        }
        // The node may have gone while the request travelled.
        let Some(handler) = self.reachable(from, to).filter(|h| Arc::ptr_eq(h, &handler)) else {
            return Err(no_answer);
        };
        let request = RaftRequest::from_bytes(&bytes)?;
        // The receiver works in a task of its own, as a server would: a caller giving up
        // does not cancel what was delivered.
        let serving = tokio::spawn(async move { handler.handle(request).await.to_bytes() });
        let answer = match tokio::time::timeout_at(deadline, serving).await {
            Ok(Ok(answer)) => answer?,
            // The receiver panicked: as if its process died mid-request.
            Ok(Err(_)) | Err(_) => return Err(no_answer),
        };
        // A link cut while the request was served loses the answer.
        if self.registry().cut.contains(&link(from, to)) || !self.carry(to, from, &answer, deadline).await {
            return Err(no_answer);
        }
        RaftResponse::from_bytes(&answer)
    }
}

/// openraft's network: one [`PeerClient`] per target, over the node's [`Transport`].
pub(crate) struct NetworkFactory {
    pub(crate) me: NodeId,
    pub(crate) transport: Arc<dyn Transport>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: RaftNodeId, _node: &BasicNode) -> PeerClient {
        // Members come from `RaftStore::open`'s validated node ids.
        let target_node = node_id(target).unwrap_or_else(|| panic!("member id {target} is not a node id"));
        PeerClient { me: self.me, target, target_node, transport: self.transport.clone() }
    }
}

/// openraft's client of one peer.
pub(crate) struct PeerClient {
    me: NodeId,
    target: RaftNodeId,
    target_node: NodeId,
    transport: Arc<dyn Transport>,
}

type RpcResult<T> = Result<T, RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>>;

#[derive(Debug, thiserror::Error)]
#[error("unexpected answer: {0}")]
struct UnexpectedAnswer(String);

impl PeerClient {
    async fn call(&self, request: RaftRequest, timeout: Duration) -> Result<RaftResponse, TransportError> {
        self.transport.call(self.me, self.target_node, request, timeout).await
    }

    fn rpc_error(&self, e: TransportError) -> RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>> {
        match e {
            TransportError::Unreachable(_) | TransportError::NoRoute(_) => RPCError::Unreachable(Unreachable::new(&e)),
            TransportError::NoAnswer { .. } | TransportError::Codec(_) => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn answer_error(&self, answer: RaftResponse) -> RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>> {
        match answer {
            RaftResponse::Fatal(fatal) => RPCError::RemoteError(RemoteError::new(self.target, RaftError::Fatal(fatal))),
            other => RPCError::Network(NetworkError::new(&UnexpectedAnswer(format!("{other:?}")))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<RaftNodeId>> {
        match self.call(RaftRequest::AppendEntries(rpc), option.hard_ttl()).await {
            Ok(RaftResponse::AppendEntries(resp)) => Ok(resp),
            Ok(other) => Err(self.answer_error(other)),
            Err(e) => Err(self.rpc_error(e)),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<RaftNodeId>, option: RPCOption) -> RpcResult<VoteResponse<RaftNodeId>> {
        match self.call(RaftRequest::Vote(rpc), option.hard_ttl()).await {
            Ok(RaftResponse::Vote(resp)) => Ok(resp),
            Ok(other) => Err(self.answer_error(other)),
            Err(e) => Err(self.rpc_error(e)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<RaftNodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<RaftNodeId>, StreamingError<TypeConfig, Fatal<RaftNodeId>>> {
        let request = RaftRequest::Snapshot { vote, meta: snapshot.meta, data: *snapshot.snapshot };
        let answer = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            answer = self.call(request, option.hard_ttl()) => answer,
        };
        match answer {
            Ok(RaftResponse::Snapshot(resp)) => Ok(resp),
            Ok(RaftResponse::Fatal(fatal)) => Err(StreamingError::RemoteError(RemoteError::new(self.target, fatal))),
            Ok(other) => Err(StreamingError::Network(NetworkError::new(&UnexpectedAnswer(format!("{other:?}"))))),
            Err(e @ (TransportError::Unreachable(_) | TransportError::NoRoute(_))) => {
                Err(StreamingError::Unreachable(Unreachable::new(&e)))
            }
            Err(e) => Err(StreamingError::Network(NetworkError::new(&e))),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    #[async_trait]
    impl RpcHandler for Echo {
        async fn handle(&self, request: RaftRequest) -> RaftResponse {
            match request {
                RaftRequest::Probe => RaftResponse::Probe { initialized: true, leader: Some(7) },
                other => RaftResponse::Forward(Err(ForwardError::Unavailable(format!("{other:?}")))),
            }
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn links_are_cut_and_healed_and_dropped_nodes_are_unreachable() {
        let transport = InProcessTransport::new();
        let (a, b, c) = (NodeId(1), NodeId(2), NodeId(3));
        let handler: Arc<dyn RpcHandler> = Arc::new(Echo);
        for id in [a, b, c] {
            transport.register(id, &handler);
        }
        let probe = |to| transport.call(a, to, RaftRequest::Probe, SECOND);
        assert!(matches!(probe(b).await, Ok(RaftResponse::Probe { initialized: true, leader: Some(7) })));

        transport.cut(b, a);
        assert_eq!(probe(b).await.unwrap_err(), TransportError::Unreachable(b));
        assert!(probe(c).await.is_ok());
        transport.heal(a, b);
        assert!(probe(b).await.is_ok());

        transport.partition(&[c]);
        assert_eq!(probe(c).await.unwrap_err(), TransportError::Unreachable(c));
        transport.heal_all();
        transport.remove(c);
        assert_eq!(probe(c).await.unwrap_err(), TransportError::Unreachable(c));
        drop(handler);
        assert_eq!(probe(b).await.unwrap_err(), TransportError::Unreachable(b), "held weakly");
    }

    #[test]
    fn messages_round_trip_through_bytes() {
        let request = RaftRequest::Forward(ForwardRequest::Read(ReadRequest::Get {
            key: "k".into(),
            comparison: Comparison::Floor,
        }));
        let decoded = RaftRequest::from_bytes(&request.to_bytes().unwrap()).unwrap();
        assert!(matches!(
            decoded,
            RaftRequest::Forward(ForwardRequest::Read(ReadRequest::Get { key, comparison: Comparison::Floor })) if key == "k"
        ));
        assert!(matches!(RaftRequest::from_bytes(&[0xff, 0xff]), Err(TransportError::Codec(_))));
    }
}
