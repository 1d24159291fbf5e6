//! [`RaftStore`]: the built-in [`MetadataStore`], a [`KvState`] replicated by an
//! openraft group over the controller voters of the cluster.
//!
//! # How it works
//!
//! - **Writes** become [`Command`]s stamped with this node's [`Clock`] and go through
//!   `Raft::client_write` on the leader. A follower (or learner) forwards them to the
//!   leader it knows through the [`Transport`]; while no leader is known (an election)
//!   it retries for up to [`RaftStoreConfig::request_timeout`], then answers
//!   `Unavailable`. A write that was sent but not answered in time is `Unavailable`
//!   too (it may still take effect) and is never retried on its own.
//! - **Reads** are linearizable: the leader confirms its leadership with a quorum
//!   (`Raft::ensure_linearizable`, which also waits for its state machine to catch up,
//!   and, on a leader that restarted into its own term, until it applied what its log
//!   held at start: see `Node::confirm_leadership`) and reads its [`KvState`]; a
//!   follower forwards the read to the leader.
//! - **Watches** are served by the node itself: every node applies every entry and
//!   broadcasts its notifications to its own watchers ([`state_machine`]). A new watch
//!   first gets the leader's commit index (confirmed with a quorum) and waits for this
//!   node to have applied up to it, so that it never reports a change that completed
//!   before it was asked for. A node that installs a snapshot tells its watchers
//!   [`WatchEvent::Reset`](crate::WatchEvent::Reset).
//! - **Session expiry**: every [`RaftStoreConfig::expiry_interval`] the leader, and only
//!   the leader, proposes `ExpireSessions` when its state has a session past its
//!   deadline (checked locally first, so an idle cluster writes nothing).
//! - **Storage** is a directory or, for the deterministic simulation, a [`disk::SimDisk`]
//!   ([`RaftStore::open_on`]); the code above it is the same.
//! - **Durability**: the log is in redb ([`log_store`]), fsynced before openraft is told
//!   an entry is stored; the state machine is in memory and snapshotted to a file every
//!   [`RaftStoreConfig::snapshot_every_entries`] entries, after which openraft purges the
//!   log it covers. A restarted node installs its snapshot and replays the log after it.
//!
//! # Controller voters and election timeouts
//!
//! [`controller_voters`] picks the voters (every node up to 5, otherwise the first 3 or
//! 5 by id; the others are learners, which replicate and serve but do not vote).
//!
//! openraft 0.9 draws a node's election timeout once, when the node starts, and checks
//! it only on its tick, every 1.5 heartbeat intervals. Two voters whose timeouts round
//! up to the same tick campaign together after every failed election, split the vote
//! and do it again, possibly for ever (openraft#1838, fixed on the 0.10 line): with 3
//! voters and one down, that is an outage. So each voter gets its own window by its
//! rank among the voters ([`election_timeout_ms`]): with the default 50 ms heartbeat,
//! rank r waits 150 + 125 r ms, plus up to 10 ms of jitter. Adjacent windows are
//! 115 ms apart, more than the 75 ms tick, so two voters never time out on the same
//! tick and the lower rank always asks first. (The 60 ms steps first considered are
//! less than a tick: two voters 10 ms apart would round up to the same tick.)
//!
//! What that gives after a leader dies: a follower that has seen a leader first waits
//! out openraft's leader lease (its own window's maximum), so rank 0 campaigns
//! 310-395 ms after the last heartbeat, rank 1 550-645 ms, rank 2 800-895 ms. A
//! voter of higher rank refuses votes while its own, longer, lease runs, so rank 0's
//! first campaign may be refused; it tries again one election timeout later. Measured
//! on 3 in-process voters (`tests/it`): a new leader 0.5-0.65 s after the kill. Ranks
//! are computed from the members given to [`RaftStore::open`]; a later membership
//! change keeps the ranks of the start until the nodes restart.

pub mod disk;
pub mod log_store;
mod membership;
pub mod network;
pub mod state_machine;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dlog_core::NodeId;
use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::raft::AppendEntriesResponse;
use openraft::storage::RaftLogStorage;
/// A node's role in the group, as openraft names it.
pub use openraft::ServerState;
use openraft::{BasicNode, ChangeMembers, Raft, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::disk::{NodeDisk, Storage};
use self::log_store::{LogStore, OpenLogError};
use self::network::{
    ForwardError, ForwardRequest, ForwardResponse, NetworkFactory, RaftRequest, RaftResponse, ReadRequest, RpcHandler,
    Transport, TransportError,
};
use self::state_machine::{load_snapshot, LoadSnapshotError, SharedState, StateMachine};
use crate::kv::SessionId;
use crate::kv::{Command, CommandOutcome, Comparison, Entry, ExpectedVersion, KvError, KvState, Notification, Stat};
use crate::local::Clock;
use crate::store::{MetadataError, MetadataStore, PutOptions, Watch};

/// openraft's id of a node: a DLog [`NodeId`] (never negative) widened.
pub type RaftNodeId = u64;

openraft::declare_raft_types!(
    /// openraft's types for the metadata group.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = RaftNodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Vec<u8>,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// What applying one log entry gave: openraft's response type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// A [`Command`]'s outcome and the notifications of its change.
    Command { result: Result<CommandOutcome, KvError>, notifications: Vec<Notification> },
    /// A blank or membership entry: nothing for a client.
    Internal,
}

/// The most voters a metadata group has; more nodes are learners.
pub const VOTERS_MAX: usize = 5;

/// The openraft id of a DLog node id, which must not be negative.
pub(crate) fn raft_id(id: NodeId) -> RaftNodeId {
    u64::try_from(id.0).unwrap_or_else(|_| panic!("node id {id} is negative"))
}

/// The DLog node id of an openraft id, if it is one.
pub(crate) fn node_id(id: RaftNodeId) -> Option<NodeId> {
    i32::try_from(id).ok().map(NodeId)
}

/// The controller voters and learners among `nodes`: every node when there are at most
/// [`VOTERS_MAX`], otherwise the `max_voters` lowest ids vote and the rest learn.
///
/// Panics unless `max_voters` is 3 or 5 (an even number of voters tolerates no more
/// failures than one fewer).
pub fn controller_voters(
    nodes: impl IntoIterator<Item = NodeId>,
    max_voters: usize,
) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
    assert!(max_voters == 3 || max_voters == 5, "max_voters must be 3 or 5, not {max_voters}");
    let nodes: BTreeSet<NodeId> = nodes.into_iter().collect();
    if nodes.len() <= VOTERS_MAX {
        return (nodes, BTreeSet::new());
    }
    let voters: BTreeSet<NodeId> = nodes.iter().take(max_voters).copied().collect();
    let learners: BTreeSet<NodeId> = nodes.difference(&voters).copied().collect();
    debug_assert_eq!(voters.len() + learners.len(), nodes.len());
    (voters, learners)
}

/// The election timeout window `(min_ms, max_ms)` of the voter of `rank` (its position
/// among the voters by id, from 0), for a heartbeat of `heartbeat_ms`. See the
/// [module documentation](self) for why each rank gets its own window.
///
/// openraft ticks every 1.5 heartbeats; windows are 2.5 heartbeats apart and 0.2 wide,
/// so the gap between two adjacent windows (2.3 heartbeats) exceeds a tick.
pub fn election_timeout_ms(heartbeat_ms: u64, rank: usize) -> (u64, u64) {
    assert!(heartbeat_ms >= 10, "heartbeat of {heartbeat_ms} ms is too short to stagger elections");
    let rank = rank as u64;
    let min_ms = 3 * heartbeat_ms + rank * heartbeat_ms * 5 / 2;
    let max_ms = min_ms + heartbeat_ms / 5;
    let tick_ms = heartbeat_ms * 3 / 2;
    debug_assert!(heartbeat_ms * 5 / 2 - heartbeat_ms / 5 > tick_ms, "adjacent windows closer than a tick");
    (min_ms, max_ms)
}

/// The knobs of a [`RaftStore`].
#[derive(Debug, Clone)]
pub struct RaftStoreConfig {
    /// Names the group in openraft's logs.
    pub cluster_name: String,
    /// How often the leader sends heartbeats; election timeouts derive from it
    /// ([`election_timeout_ms`]).
    pub heartbeat_interval: Duration,
    /// A snapshot is taken every this many applied entries, and the log it covers is
    /// purged (but for `entries_kept_after_snapshot`).
    pub snapshot_every_entries: u64,
    /// Entries kept in the log below the newest snapshot, so that a follower slightly
    /// behind catches up from the log rather than by snapshot.
    pub entries_kept_after_snapshot: u64,
    /// The longest a client operation waits, leader elections included.
    pub request_timeout: Duration,
    /// How often the leader checks for expired sessions.
    pub expiry_interval: Duration,
    /// Events buffered per watcher before it lags.
    pub watch_capacity: usize,
    /// Voters when the cluster has more than [`VOTERS_MAX`] nodes: 3 or 5.
    pub max_voters: usize,
    /// Where in its window ([`election_timeout_ms`]) a voter's election timeout falls.
    pub election_jitter: ElectionJitter,
}

/// How a voter's election timeout is chosen within its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ElectionJitter {
    /// openraft draws it at random when the node starts.
    #[default]
    Random,
    /// This many milliseconds past the window's start (capped to the window): no
    /// randomness, for the deterministic simulation.
    Fixed { offset_ms: u64 },
}

impl Default for RaftStoreConfig {
    fn default() -> Self {
        RaftStoreConfig {
            cluster_name: "dlog-metadata".to_string(),
            heartbeat_interval: Duration::from_millis(50),
            snapshot_every_entries: 1000,
            entries_kept_after_snapshot: 1000,
            request_timeout: Duration::from_secs(5),
            expiry_interval: Duration::from_millis(100),
            watch_capacity: 1024,
            max_voters: VOTERS_MAX,
            election_jitter: ElectionJitter::Random,
        }
    }
}

/// Why a [`RaftStore`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot use the directory: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Log(#[from] OpenLogError),
    #[error(transparent)]
    Snapshot(#[from] LoadSnapshotError),
    #[error("openraft failed to start: {0}")]
    Raft(Box<openraft::error::Fatal<RaftNodeId>>),
}

/// What a node knows of the group, for operators and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    pub id: NodeId,
    pub state: ServerState,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    /// The last index the newest snapshot covers.
    pub snapshot_index: Option<u64>,
    /// The last index purged from the log.
    pub purged_index: Option<u64>,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

/// Pause between attempts to find a leader.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Leaders named by others tried in a row before pausing.
const HINTS_FOLLOWED_MAX: u32 = 3;
/// Hard bound on the attempts of one routed operation (the deadline comes first).
const ROUTE_ATTEMPTS_MAX: usize = 10_000;
/// How long [`RaftStore::shutdown`] waits for openraft to release the log file.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// One node of the metadata group: what the store, its RPC handler and its expiry task
/// share.
struct Node {
    id: NodeId,
    raft: Raft<TypeConfig>,
    /// The last log index this node's log held when it started: a read it serves as
    /// leader waits until it applied that far (see `confirm_leadership`).
    recovered_log_index: Option<u64>,
    /// Set while this node started blank (no log, no snapshot: a new node, or one
    /// whose data directory was wiped) and has not yet applied a leader's commit index.
    /// It then grants no vote to a candidate holding more than the group's first
    /// (membership) entry: having forgotten its log and its votes, it could otherwise
    /// elect a candidate lacking committed entries it had acknowledged.
    withholding_votes: AtomicBool,
    shared: Arc<SharedState>,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    config: RaftStoreConfig,
}

impl Node {
    fn me(&self) -> RaftNodeId {
        raft_id(self.id)
    }

    /// Ends a blank node's abstention: its log now holds everything committed (see
    /// [`covers_its_terms_commit`]).
    fn stop_withholding(&self) {
        if self.withholding_votes.swap(false, Ordering::AcqRel) {
            tracing::info!(node = %self.id, "caught up after a blank start; voting again");
        }
    }

    /// Whether this node, started blank and not caught up, refuses `rpc`'s candidate:
    /// one whose log holds more than the group's first entry (index 0, the initial
    /// membership), which only a group being formed lacks.
    fn withholds_vote_from(&self, rpc: &openraft::raft::VoteRequest<RaftNodeId>) -> bool {
        self.withholding_votes.load(Ordering::Acquire) && rpc.last_log_id.is_some_and(|id| id.index > 0)
    }

    fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics.state == ServerState::Leader && metrics.current_leader == Some(self.me())
    }

    /// Serves `request` on whichever node leads, waiting for one while there is none,
    /// until the request timeout.
    async fn route(&self, request: ForwardRequest) -> Result<ForwardResponse, MetadataError> {
        let started = Instant::now();
        let deadline = started + self.config.request_timeout;
        let mut hint: Option<RaftNodeId> = None;
        let mut problem = "no leader elected".to_string();
        let mut hops_without_pause = 0;
        for _ in 0..ROUTE_ATTEMPTS_MAX {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let leader = hint.take().or_else(|| self.raft.metrics().borrow().current_leader);
            match leader {
                None => problem = "no leader elected".to_string(),
                Some(leader) if leader == self.me() => match self.serve(request.clone(), remaining).await {
                    Ok(response) => return Ok(response),
                    Err(ForwardError::NotLeader { leader }) => {
                        hint = leader.filter(|&l| l != self.me());
                        problem = format!("this node no longer leads (leader: {leader:?})");
                    }
                    Err(ForwardError::NoQuorum(reason)) => problem = reason,
                    Err(ForwardError::Unavailable(reason)) => return Err(MetadataError::Unavailable(reason)),
                },
                Some(leader) => {
                    let Some(target) = node_id(leader) else {
                        return Err(MetadataError::Unavailable(format!("leader id {leader} is not a node id")));
                    };
                    let call = RaftRequest::Forward(request.clone());
                    match self.transport.call(self.id, target, call, remaining).await {
                        Ok(RaftResponse::Forward(Ok(response))) => return Ok(response),
                        Ok(RaftResponse::Forward(Err(ForwardError::NotLeader { leader: hinted }))) => {
                            hint = hinted.filter(|&l| l != leader && l != self.me());
                            problem = format!("node {target} no longer leads (leader: {hinted:?})");
                        }
                        Ok(RaftResponse::Forward(Err(ForwardError::NoQuorum(reason)))) => problem = reason,
                        Ok(RaftResponse::Forward(Err(ForwardError::Unavailable(reason)))) => {
                            return Err(MetadataError::Unavailable(format!("leader {target}: {reason}")))
                        }
                        Ok(RaftResponse::Fatal(fatal)) => problem = format!("leader {target} stopped: {fatal}"),
                        Ok(other) => {
                            return Err(MetadataError::Unavailable(format!("leader {target} answered {other:?}")))
                        }
                        Err(e @ TransportError::Unreachable(_)) => problem = e.to_string(),
                        Err(TransportError::NoRoute(_)) => {
                            return Err(MetadataError::NotLeader { leader: Some(target) });
                        }
                        Err(e @ (TransportError::NoAnswer { .. } | TransportError::Codec(_))) => {
                            return Err(MetadataError::Unavailable(e.to_string()))
                        }
                    }
                }
            }
            // A named leader is tried at once, but a few in a row (nodes with stale
            // views naming each other) get the same pause as no leader at all.
            hops_without_pause = if hint.is_some() { hops_without_pause + 1 } else { HINTS_FOLLOWED_MAX };
            if hops_without_pause >= HINTS_FOLLOWED_MAX {
                hops_without_pause = 0;
                let remaining = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(RETRY_PAUSE.min(remaining)).await;
            }
        }
        Err(MetadataError::Unavailable(format!(
            "no metadata leader served the request within {:?}: {problem}",
            started.elapsed()
        )))
    }

    /// Serves `request` here, as the leader; `NotLeader` if this node does not lead.
    async fn serve(&self, request: ForwardRequest, timeout: Duration) -> Result<ForwardResponse, ForwardError> {
        match request {
            ForwardRequest::Write(command) => self.write_as_leader(command, timeout).await,
            ForwardRequest::Read(read) => {
                self.confirm_leadership(timeout).await?;
                Ok(self.shared.read(|kv| read_local(kv, read)))
            }
            ForwardRequest::AddLearners(nodes) => self.add_learners(nodes, timeout).await,
            ForwardRequest::ReadIndex => {
                let read_index = self.confirm_leadership(timeout).await?;
                Ok(ForwardResponse::ReadIndex(read_index))
            }
        }
    }

    /// Confirms with a quorum that this node still leads and waits until it applied
    /// everything committed when it was asked: a read of its state after this is
    /// linearizable. Returns that commit point's index.
    ///
    /// openraft 0.9's read index is the larger of the leader's commit index and the
    /// first entry of its term. A leader that restarts and leads its term again (its
    /// vote is on disk) starts with the commit index it last saved, which may be behind
    /// entries a quorum acknowledged before the crash, and the first entry of its term
    /// is older still: it would serve reads missing acknowledged writes. Found by the
    /// simulation (`tests/it/sim.rs`). A leader's log holds every committed entry, so
    /// waiting also until it applied what its log held at start closes the gap; that
    /// wait ends once, early in the node's life, and costs nothing after.
    async fn confirm_leadership(&self, timeout: Duration) -> Result<Option<u64>, ForwardError> {
        let started = Instant::now();
        let read_index = match tokio::time::timeout(timeout, self.raft.ensure_linearizable()).await {
            Ok(Ok(read_log_id)) => read_log_id.map(|id| id.index),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                return Err(ForwardError::NotLeader { leader: f.leader_id })
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => {
                return Err(ForwardError::NoQuorum(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(fatal))) => {
                return Err(ForwardError::Unavailable(format!("Raft stopped: {fatal}")))
            }
            Err(_) => return Err(ForwardError::NoQuorum(format!("leadership not confirmed within {timeout:?}"))),
        };
        if read_index >= self.recovered_log_index {
            return Ok(read_index);
        }
        let remaining = timeout.saturating_sub(started.elapsed());
        let wait = self.raft.wait(Some(remaining));
        match wait.applied_index_at_least(self.recovered_log_index, "apply the log recovered at start").await {
            Ok(_) => Ok(self.recovered_log_index),
            Err(e) => Err(ForwardError::NoQuorum(format!(
                "the log recovered at start (up to {:?}) not applied: {e}",
                self.recovered_log_index
            ))),
        }
    }

    async fn write_as_leader(&self, command: Command, timeout: Duration) -> Result<ForwardResponse, ForwardError> {
        match tokio::time::timeout(timeout, self.raft.client_write(command)).await {
            Ok(Ok(response)) => match response.data {
                Applied::Command { result, .. } => Ok(ForwardResponse::Written(result)),
                Applied::Internal => unreachable!("a command entry applied as an internal one"),
            },
            // openraft answers ForwardToLeader only for an entry it did not append, or
            // one truncated away: it never takes effect. Safe to send elsewhere.
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(ForwardError::NotLeader { leader: f.leader_id })
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                unreachable!("a command write failed as a membership change: {e}")
            }
            Ok(Err(RaftError::Fatal(fatal))) => Err(ForwardError::Unavailable(format!("Raft stopped: {fatal}"))),
            Err(_) => Err(ForwardError::Unavailable(format!(
                "write not committed within {timeout:?} (no quorum?); it may still take effect"
            ))),
        }
    }

    async fn add_learners(
        &self,
        nodes: BTreeMap<RaftNodeId, String>,
        timeout: Duration,
    ) -> Result<ForwardResponse, ForwardError> {
        let known: BTreeSet<RaftNodeId> =
            self.raft.metrics().borrow().membership_config.membership().nodes().map(|(id, _)| *id).collect();
        let missing: BTreeMap<RaftNodeId, BasicNode> = nodes
            .into_iter()
            .filter(|(id, _)| !known.contains(id))
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect();
        if missing.is_empty() {
            return Ok(ForwardResponse::LearnersAdded);
        }
        let change = self.raft.change_membership(ChangeMembers::AddNodes(missing), true);
        match tokio::time::timeout(timeout, change).await {
            Ok(Ok(_)) => Ok(ForwardResponse::LearnersAdded),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(ForwardError::NotLeader { leader: f.leader_id })
            }
            // Another change in progress: nothing was done, try again.
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(ForwardError::NoQuorum(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(fatal))) => Err(ForwardError::Unavailable(format!("Raft stopped: {fatal}"))),
            Err(_) => Err(ForwardError::Unavailable(format!("learners not added within {timeout:?}"))),
        }
    }

    /// Proposes `make(now)` (stamped with this node's clock) and returns its outcome.
    async fn write(&self, make: impl FnOnce(i64) -> Command) -> Result<CommandOutcome, MetadataError> {
        let command = make(self.clock.now_ms());
        match self.route(ForwardRequest::Write(command)).await? {
            ForwardResponse::Written(result) => Ok(result?),
            other => Err(unexpected_answer(other)),
        }
    }

    async fn read(&self, read: ReadRequest) -> Result<ForwardResponse, MetadataError> {
        self.route(ForwardRequest::Read(read)).await
    }

    fn status(&self) -> RaftStatus {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let to_nodes = |ids: Vec<RaftNodeId>| ids.into_iter().filter_map(node_id).collect::<BTreeSet<_>>();
        RaftStatus {
            id: self.id,
            state: m.state,
            term: m.current_term,
            leader: m.current_leader.and_then(node_id),
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            voters: to_nodes(membership.voter_ids().collect()),
            learners: to_nodes(membership.learner_ids().collect()),
        }
    }
}

fn read_local(kv: &KvState, read: ReadRequest) -> ForwardResponse {
    match read {
        ReadRequest::Get { key, comparison } => ForwardResponse::Get(kv.get(&key, comparison)),
        ReadRequest::List { start, end } => ForwardResponse::List(kv.list(&start, &end)),
        ReadRequest::RangeScan { start, end } => ForwardResponse::RangeScan(kv.range_scan(&start, &end)),
    }
}

fn unexpected_answer(answer: ForwardResponse) -> MetadataError {
    // A peer of another version, or a bug: the operation's fate is unknown.
    MetadataError::Unavailable(format!("unexpected answer from the leader: {answer:?}"))
}

fn unexpected_outcome(outcome: CommandOutcome) -> ! {
    unreachable!("command answered with the outcome of another: {outcome:?}")
}

#[async_trait]
impl RpcHandler for Node {
    async fn handle(&self, request: RaftRequest) -> RaftResponse {
        match request {
            RaftRequest::AppendEntries(rpc) => {
                let covers_commit = covers_its_terms_commit(&rpc);
                match self.raft.append_entries(rpc).await {
                    Ok(response) => {
                        if covers_commit && matches!(response, AppendEntriesResponse::Success) {
                            self.stop_withholding();
                        }
                        RaftResponse::AppendEntries(response)
                    }
                    Err(RaftError::Fatal(fatal)) => RaftResponse::Fatal(fatal),
                    Err(RaftError::APIError(never)) => match never {},
                }
            }
            RaftRequest::Vote(rpc) if self.withholds_vote_from(&rpc) => {
                let vote = self.raft.metrics().borrow().vote;
                tracing::info!(node = %self.id, candidate = %rpc.vote,
                    "started blank and not caught up yet: no vote for a candidate past the first entry");
                RaftResponse::Vote(openraft::raft::VoteResponse { vote, vote_granted: false, last_log_id: None })
            }
            RaftRequest::Vote(rpc) => match self.raft.vote(rpc).await {
                Ok(response) => RaftResponse::Vote(response),
                Err(RaftError::Fatal(fatal)) => RaftResponse::Fatal(fatal),
                Err(RaftError::APIError(never)) => match never {},
            },
            RaftRequest::Snapshot { vote, meta, data } => {
                let snapshot = openraft::Snapshot { meta, snapshot: Box::new(data) };
                match self.raft.install_full_snapshot(vote, snapshot).await {
                    Ok(response) => RaftResponse::Snapshot(response),
                    Err(fatal) => RaftResponse::Fatal(fatal),
                }
            }
            RaftRequest::Forward(request) => {
                RaftResponse::Forward(self.serve(request, self.config.request_timeout).await)
            }
            RaftRequest::Probe => match self.raft.is_initialized().await {
                Ok(initialized) => {
                    RaftResponse::Probe { initialized, leader: self.raft.metrics().borrow().current_leader }
                }
                Err(fatal) => RaftResponse::Fatal(fatal),
            },
        }
    }
}

/// Ends a blank node's abstention when it is elected (the node that forms the group is
/// blank and leads first): a leader holds every committed entry (Raft's leader
/// completeness), and it never takes a leader's entries to learn so from.
async fn stop_withholding_once_leader(node: Weak<Node>) {
    let Some(mut metrics) = node.upgrade().map(|n| n.raft.metrics()) else { return };
    if metrics.wait_for(|m| m.state == ServerState::Leader).await.is_ok() {
        if let Some(n) = node.upgrade() {
            n.stop_withholding();
        }
    }
}

/// Whether a receiver that takes `rpc` holds every committed entry: its entries (or,
/// for a heartbeat, the log it matches) reach the leader's commit index, and that commit
/// is of an entry of the leader's own term, which makes it at least every index
/// committed before (a new leader's commit index alone may lag behind).
fn covers_its_terms_commit(rpc: &openraft::raft::AppendEntriesRequest<TypeConfig>) -> bool {
    let Some(commit) = rpc.leader_commit else { return false };
    let held = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id);
    commit.index > 0
        && commit.leader_id.term == rpc.vote.leader_id().term
        && held.is_some_and(|h| h.index >= commit.index)
}

/// Every `every`, proposes `ExpireSessions` if this node leads and a session is past
/// its deadline. Ends when the node is gone.
async fn expire_sessions_every(node: Weak<Node>, every: Duration) {
    let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(node) = node.upgrade() else { return };
        if !node.is_leader() {
            continue;
        }
        let now_ms = node.clock.now_ms();
        if !node.shared.read(|kv| kv.next_session_deadline_ms().is_some_and(|deadline| deadline <= now_ms)) {
            continue;
        }
        match node.write_as_leader(Command::ExpireSessions { now_ms }, node.config.request_timeout).await {
            Ok(ForwardResponse::Written(Ok(CommandOutcome::SessionsExpired { sessions }))) => {
                if !sessions.is_empty() {
                    tracing::info!(sessions = ?sessions, "metadata sessions expired");
                }
            }
            Ok(other) => unreachable!("ExpireSessions answered {other:?}"),
            // Lost the leadership or the quorum: the next leader will do it.
            Err(e) => tracing::debug!(error = %e, "could not expire metadata sessions"),
        }
    }
}

/// The built-in [`MetadataStore`]: one node of the metadata Raft group. See the
/// [module documentation](self).
///
/// Dropping it stops the node (openraft shuts down in the background); prefer
/// [`RaftStore::shutdown`], which waits until the directory may be opened again.
pub struct RaftStore {
    node: Arc<Node>,
    members: BTreeMap<NodeId, String>,
    expiry_task: JoinHandle<()>,
    log: Weak<redb::Database>,
}

impl fmt::Debug for RaftStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftStore").field("id", &self.node.id).field("members", &self.members).finish_non_exhaustive()
    }
}

impl RaftStore {
    /// Starts node `id` of the cluster `members` (every node's id and RPC address) with
    /// its data in `dir` (created if missing): its Raft log, snapshot and vote. A new
    /// directory makes an uninitialized node: one node must [`bootstrap`](Self::bootstrap)
    /// the group once. An existing one recovers (snapshot, then the log after it).
    ///
    /// Must be called within a tokio runtime. The node answers RPCs once the caller
    /// registers [`rpc_handler`](Self::rpc_handler) with its transport.
    pub async fn open(
        id: NodeId,
        dir: &Path,
        members: BTreeMap<NodeId, String>,
        config: RaftStoreConfig,
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
    ) -> Result<RaftStore, OpenError> {
        RaftStore::open_on(id, NodeDisk::Dir(dir.to_path_buf()), members, config, transport, clock).await
    }

    /// [`open`](Self::open) with the data on `disk`: a directory, or a simulated disk
    /// (see [`disk`]).
    pub async fn open_on(
        id: NodeId,
        disk: NodeDisk,
        members: BTreeMap<NodeId, String>,
        config: RaftStoreConfig,
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
    ) -> Result<RaftStore, OpenError> {
        if let Some(bad) = members.keys().find(|m| m.0 < 0) {
            return Err(OpenError::Config(format!("negative node id {bad}")));
        }
        if !members.contains_key(&id) {
            return Err(OpenError::Config(format!("node {id} is not among the members {:?}", members.keys())));
        }
        if !(config.max_voters == 3 || config.max_voters == 5) {
            return Err(OpenError::Config(format!("max_voters must be 3 or 5, not {}", config.max_voters)));
        }
        if config.snapshot_every_entries == 0 || config.watch_capacity == 0 || config.expiry_interval.is_zero() {
            return Err(OpenError::Config(format!(
                "zero snapshot interval, watch capacity or expiry interval: {config:?}"
            )));
        }
        let heartbeat_ms = u64::try_from(config.heartbeat_interval.as_millis()).unwrap_or(u64::MAX);
        if !(10..=10_000).contains(&heartbeat_ms) {
            return Err(OpenError::Config(format!("heartbeat of {heartbeat_ms} ms outside [10, 10000]")));
        }
        let (voters, _) = controller_voters(members.keys().copied(), config.max_voters);
        // Learners never campaign; past the voters' ranks they collide with no one.
        let rank = voters.iter().position(|&v| v == id).unwrap_or(voters.len());
        let (window_min, window_max) = election_timeout_ms(heartbeat_ms, rank);
        let (election_timeout_min, election_timeout_max) = match config.election_jitter {
            ElectionJitter::Random => (window_min, window_max),
            // openraft draws from [min, max): a 1 ms range leaves it no choice.
            ElectionJitter::Fixed { offset_ms } => {
                let fixed = window_min + offset_ms.min(window_max - window_min - 1);
                (fixed, fixed + 1)
            }
        };
        debug_assert!(window_min <= election_timeout_min && election_timeout_max <= window_max);
        let raft_config = openraft::Config {
            cluster_name: config.cluster_name.clone(),
            heartbeat_interval: heartbeat_ms,
            election_timeout_min,
            election_timeout_max,
            install_snapshot_timeout: u64::try_from(config.request_timeout.as_millis()).unwrap_or(u64::MAX),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries),
            max_in_snapshot_log_to_keep: config.entries_kept_after_snapshot,
            // Purge as soon as a snapshot covers entries (the policy spaces snapshots).
            purge_batch_size: 1,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| OpenError::Config(e.to_string()))?;

        let storage = Storage::open(disk)?;
        let storage_owned = storage.clone();
        let opened = storage
            .run(move || -> Result<_, OpenError> {
                let log = LogStore::open(&storage_owned)?;
                let snapshot = load_snapshot(&storage_owned)?;
                Ok((log, snapshot))
            })
            .await?;
        let (mut log, snapshot) = opened?;
        let recovered_log_index = log
            .get_log_state()
            .await
            .map_err(|e| OpenError::Io(std::io::Error::other(e)))?
            .last_log_id
            .map(|id| id.index);
        let log_liveness = log.liveness();
        let (stored, kv) = match snapshot {
            Some((stored, kv)) => (Some(stored), kv),
            None => (None, KvState::new()),
        };
        if let Some(s) = &stored {
            tracing::info!(node = %id, snapshot = %s.meta, "metadata state restored from its snapshot");
        }
        let blank = recovered_log_index.is_none() && stored.is_none();
        let shared = Arc::new(SharedState::new(kv, config.watch_capacity));
        let state_machine = StateMachine::new(&storage, shared.clone(), stored);
        let network = NetworkFactory { me: id, transport: transport.clone() };
        let raft = Raft::new(raft_id(id), Arc::new(raft_config), network, log, state_machine)
            .await
            .map_err(|e| OpenError::Raft(Box::new(e)))?;
        tracing::info!(
            node = %id, rank, election_timeout_min, election_timeout_max,
            "metadata Raft node started"
        );
        let expiry_interval = config.expiry_interval;
        let node = Arc::new(Node {
            id,
            raft,
            recovered_log_index,
            withholding_votes: AtomicBool::new(blank),
            shared,
            transport,
            clock,
            config,
        });
        let expiry_task = tokio::spawn(expire_sessions_every(Arc::downgrade(&node), expiry_interval));
        if blank {
            tokio::spawn(stop_withholding_once_leader(Arc::downgrade(&node)));
        }

        Ok(RaftStore { node, members, expiry_task, log: log_liveness })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.node.id
    }

    /// Whether this node started blank and withholds its vote until it has caught up
    /// with a leader (see `withholding_votes`).
    pub fn withholds_votes(&self) -> bool {
        self.node.withholding_votes.load(Ordering::Acquire)
    }

    /// What a transport's server side calls with this node's requests. It keeps the
    /// node alive: [`InProcessTransport`](network::InProcessTransport) holds it weakly.
    pub fn rpc_handler(&self) -> Arc<dyn RpcHandler> {
        self.node.clone()
    }

    /// Forms the group, once: initializes the Raft membership with the controller voters
    /// of the members given to [`open`](Self::open), then makes the others learners.
    ///
    /// Does nothing to the membership if any member (this one included) is already
    /// initialized, so calling it again, or on several nodes, is harmless. `Unavailable`
    /// (retriable) while some member cannot be reached: a group is formed only with
    /// every member's log known to be empty.
    pub async fn bootstrap(&self) -> Result<(), MetadataError> {
        let node = &self.node;
        let mut unreachable = Vec::new();
        let mut initialized = Vec::new();
        for &member in self.members.keys() {
            let answer = if member == node.id {
                node.handle(RaftRequest::Probe).await
            } else {
                match node.transport.call(node.id, member, RaftRequest::Probe, node.config.request_timeout).await {
                    Ok(answer) => answer,
                    Err(e) => {
                        unreachable.push((member, e.to_string()));
                        continue;
                    }
                }
            };
            match answer {
                RaftResponse::Probe { initialized: true, .. } => initialized.push(member),
                RaftResponse::Probe { initialized: false, .. } => {}
                other => unreachable.push((member, format!("{other:?}"))),
            }
        }
        if !initialized.is_empty() {
            tracing::info!(initialized = ?initialized, "metadata group already formed; not bootstrapping");
            return Ok(());
        }
        if !unreachable.is_empty() {
            return Err(MetadataError::Unavailable(format!("waiting for members to bootstrap: {unreachable:?}")));
        }
        let (voters, learners) = controller_voters(self.members.keys().copied(), node.config.max_voters);
        let voter_nodes: BTreeMap<RaftNodeId, BasicNode> =
            voters.iter().map(|v| (raft_id(*v), BasicNode::new(self.members[v].clone()))).collect();
        match node.raft.initialize(voter_nodes).await {
            Ok(()) => tracing::info!(voters = ?voters, learners = ?learners, "metadata group bootstrapped"),
            // Initialized meanwhile (another bootstrap): same membership, nothing to do.
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                tracing::info!(reason = %e, "metadata group already initialized")
            }
            Err(RaftError::APIError(InitializeError::NotInMembers(e))) => {
                // This node bootstraps only when it is a voter: the caller's mistake.
                return Err(MetadataError::InvalidArgument(format!("bootstrap from a learner: {e}")));
            }
            Err(RaftError::Fatal(fatal)) => return Err(MetadataError::Storage(fatal.to_string())),
        }
        if !learners.is_empty() {
            let nodes = learners.iter().map(|l| (raft_id(*l), self.members[l].clone())).collect();
            match node.route(ForwardRequest::AddLearners(nodes)).await? {
                ForwardResponse::LearnersAdded => {}
                other => return Err(unexpected_answer(other)),
            }
        }
        Ok(())
    }

    /// What this node knows of the group now.
    pub fn status(&self) -> RaftStatus {
        self.node.status()
    }

    /// Waits until this node's status satisfies `done`, for at most `timeout`: the
    /// status that did, or the last one seen.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&RaftStatus) -> bool,
    ) -> Result<RaftStatus, RaftStatus> {
        let deadline = Instant::now() + timeout;
        let mut changes = self.node.raft.metrics();
        loop {
            changes.borrow_and_update();
            let status = self.node.status();
            if done(&status) {
                return Ok(status);
            }
            // Every change of openraft's metrics wakes it; the deadline bounds the loop.
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    let status = self.node.status();
                    return if done(&status) { Ok(status) } else { Err(status) };
                }
            }
        }
    }

    /// Runs `f` over this node's state as applied, which may lag the leader's: not a
    /// linearizable read. For tests and diagnostics; keep `f` short.
    pub fn read_local<R>(&self, f: impl FnOnce(&KvState) -> R) -> R {
        self.node.shared.read(f)
    }

    /// Waits until this node has applied everything committed when it was called (the
    /// leader's commit index, confirmed with a quorum) and returns that index: after
    /// it, [`RaftStore::read_local`] shows every write that completed before the call.
    pub async fn sync(&self) -> Result<Option<u64>, MetadataError> {
        let read_index = match self.node.route(ForwardRequest::ReadIndex).await? {
            ForwardResponse::ReadIndex(index) => index,
            other => return Err(unexpected_answer(other)),
        };
        let timeout = self.node.config.request_timeout;
        match self.wait_for(timeout, |s| s.last_applied_index >= read_index).await {
            Ok(_) => Ok(read_index),
            Err(status) => Err(MetadataError::Unavailable(format!(
                "node {} did not apply up to the leader's commit index {read_index:?} within {timeout:?} \
                 (applied: {:?})",
                self.node.id, status.last_applied_index
            ))),
        }
    }

    /// Stops the node and waits (a bounded while) until its directory may be opened
    /// again. Watches end.
    pub async fn shutdown(&self) {
        self.expiry_task.abort();
        if let Err(e) = self.node.raft.shutdown().await {
            tracing::warn!(node = %self.node.id, error = %e, "metadata Raft did not stop cleanly");
        }
        let started = Instant::now();
        while self.log.strong_count() > 0 && started.elapsed() < SHUTDOWN_WAIT {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if self.log.strong_count() > 0 {
            tracing::warn!(node = %self.node.id, "the metadata log is still open after shutdown");
        }
    }
}

impl Drop for RaftStore {
    fn drop(&mut self) {
        self.expiry_task.abort();
        // openraft's core runs until told to stop, whoever holds handles to it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let raft = self.node.raft.clone();
            runtime.spawn(async move {
                let _ = raft.shutdown().await;
            });
        }
    }
}

#[async_trait]
impl MetadataStore for RaftStore {
    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<(String, Stat), MetadataError> {
        let PutOptions { expected, session, sequential } = options;
        let key = key.to_string();
        match self.node.write(|now_ms| Command::Put { key, value, expected, session, sequential, now_ms }).await? {
            CommandOutcome::Put { key, stat } => Ok((key, stat)),
            other => unexpected_outcome(other),
        }
    }

    async fn delete(&self, key: &str, expected: ExpectedVersion) -> Result<bool, MetadataError> {
        match self.node.write(|now_ms| Command::Delete { key: key.to_string(), expected, now_ms }).await? {
            CommandOutcome::Delete { existed } => Ok(existed),
            other => unexpected_outcome(other),
        }
    }

    async fn delete_range(&self, start: &str, end: &str) -> Result<(), MetadataError> {
        let (start, end) = (start.to_string(), end.to_string());
        match self.node.write(|now_ms| Command::DeleteRange { start, end, now_ms }).await? {
            CommandOutcome::DeleteRange { .. } => Ok(()),
            other => unexpected_outcome(other),
        }
    }

    async fn get(&self, key: &str, comparison: Comparison) -> Result<Option<Entry>, MetadataError> {
        match self.node.read(ReadRequest::Get { key: key.to_string(), comparison }).await? {
            ForwardResponse::Get(entry) => Ok(entry),
            other => Err(unexpected_answer(other)),
        }
    }

    async fn list(&self, start: &str, end: &str) -> Result<Vec<String>, MetadataError> {
        match self.node.read(ReadRequest::List { start: start.to_string(), end: end.to_string() }).await? {
            ForwardResponse::List(keys) => Ok(keys),
            other => Err(unexpected_answer(other)),
        }
    }

    async fn range_scan(&self, start: &str, end: &str) -> Result<Vec<Entry>, MetadataError> {
        match self.node.read(ReadRequest::RangeScan { start: start.to_string(), end: end.to_string() }).await? {
            ForwardResponse::RangeScan(entries) => Ok(entries),
            other => Err(unexpected_answer(other)),
        }
    }

    async fn create_session(&self, timeout: Duration, identity: &str) -> Result<SessionId, MetadataError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let identity = identity.to_string();
        match self.node.write(|now_ms| Command::CreateSession { timeout_ms, identity, now_ms }).await? {
            CommandOutcome::SessionCreated { session } => Ok(session),
            other => unexpected_outcome(other),
        }
    }

    async fn keep_alive(&self, session: SessionId) -> Result<(), MetadataError> {
        match self.node.write(|now_ms| Command::KeepAlive { session, now_ms }).await? {
            CommandOutcome::KeptAlive => Ok(()),
            other => unexpected_outcome(other),
        }
    }

    async fn close_session(&self, session: SessionId) -> Result<(), MetadataError> {
        match self.node.write(|now_ms| Command::CloseSession { session, now_ms }).await? {
            CommandOutcome::SessionClosed { .. } => Ok(()),
            other => unexpected_outcome(other),
        }
    }

    /// Served from this node's applied notifications. Every change that completed
    /// before the call must be left out, and this node (a follower) may not have
    /// applied them yet: so it first gets the leader's commit index (confirmed with a
    /// quorum), waits to have applied up to it, and subscribes only then.
    async fn watch(&self, prefix: &str) -> Result<Watch, MetadataError> {
        self.sync().await?;
        Ok(Watch::new(prefix, self.node.shared.subscribe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ids: &[i32]) -> BTreeSet<NodeId> {
        ids.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn every_node_votes_up_to_five_then_the_lowest_ids() {
        assert_eq!(controller_voters(ids(&[3, 1, 2]), 5), (ids(&[1, 2, 3]), ids(&[])));
        assert_eq!(controller_voters(ids(&[5, 4, 3, 2, 1]), 3), (ids(&[1, 2, 3, 4, 5]), ids(&[])));
        assert_eq!(controller_voters(ids(&[7, 1, 9, 2, 8, 3]), 5), (ids(&[1, 2, 3, 7, 8]), ids(&[9])));
        assert_eq!(controller_voters(ids(&[7, 1, 9, 2, 8, 3]), 3), (ids(&[1, 2, 3]), ids(&[7, 8, 9])));
        assert_eq!(controller_voters(ids(&[]), 3), (ids(&[]), ids(&[])));
    }

    #[test]
    #[should_panic(expected = "max_voters must be 3 or 5")]
    fn four_voters_are_refused() {
        controller_voters(ids(&[1, 2, 3, 4, 5, 6]), 4);
    }

    #[test]
    fn election_windows_are_disjoint_and_further_apart_than_a_tick() {
        let heartbeat_ms = 50;
        let tick_ms = heartbeat_ms * 3 / 2;
        assert_eq!(election_timeout_ms(heartbeat_ms, 0), (150, 160));
        for rank in 0..VOTERS_MAX {
            let (min, max) = election_timeout_ms(heartbeat_ms, rank);
            let (next_min, _) = election_timeout_ms(heartbeat_ms, rank + 1);
            assert!(min > heartbeat_ms && min < max);
            assert!(next_min - max > tick_ms, "rank {rank}: {max} ms then {next_min} ms");
        }
    }
}
