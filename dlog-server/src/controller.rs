//! The controller: the one node (the metadata Raft group's leader) that changes topics.
//! It records each topic under `/topics/<name>` in the metadata store, assigns its
//! partitions to live brokers, and moves partition leadership as brokers come and go.
//!
//! Admin requests reaching any node are forwarded here ([`crate::cluster::Cluster::forward`])
//! as a [`ControllerRequest`]; [`execute`] runs them. Every change is a compare-and-set
//! on the topic's record, so a deposed controller that still believes it leads can
//! never overwrite its successor's work: its write fails and the forwarder retries at
//! the new leader.
//!
//! With one replica per partition (data replication comes with the replication plane),
//! a partition whose broker is gone has no copy to serve from: it goes offline (no
//! leader, epoch bumped) and comes back, epoch bumped again, when its broker returns.
//!
//! Invariant: a partition's leader epoch only grows, by one at every change of leader.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use dlog_consensus::{Comparison, ExpectedVersion, MetadataError, MetadataStore, PutOptions, RaftStore, VersionId};
use dlog_core::{Error, LeaderEpoch, NodeId, Result, TopicConfig, TopicId};
use serde::{Deserialize, Serialize};

use dlog_replication::placement::{assign, copysets, Node};

use crate::cluster::BrokerInfo;
use crate::topics::{check_growth, check_new_topic, Assignment, TopicMeta};

/// Topic records: `/topics/<name>` = a JSON [`TopicRecord`].
pub const TOPICS_PREFIX: &str = "/topics/";
pub const TOPICS_END: &str = "/topics0";
/// How often a compare-and-set that lost a race is tried again before giving up.
const CAS_ATTEMPTS: usize = 16;

/// A topic as the metadata store records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// The topic id, 32 hex digits.
    pub id: String,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionRecord>,
}

/// One partition's assignment as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub replicas: Vec<i32>,
    /// The leading broker, -1 when offline.
    pub leader: i32,
    pub epoch: i32,
    /// The replicas the leader of `epoch` counts in its write quorum (Kafka's ISR),
    /// as it last reported them; none before its first report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isr: Option<Vec<i32>>,
    /// Replicas that must not lead, as their nodes reported: the log failed a write
    /// or an fsync there (offline until that node reopens it), or the node lost its
    /// data and has not caught up yet. Never elected, never counted in sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cannot_lead: Vec<i32>,
}

impl PartitionRecord {
    /// Whether the leader's last report counts `replica` in sync.
    pub fn in_sync(&self, replica: i32) -> bool {
        self.isr.as_ref().is_some_and(|isr| isr.contains(&replica)) && self.may_lead(replica)
    }

    /// Whether `replica` may be elected: its node has not reported it unfit.
    pub fn may_lead(&self, replica: i32) -> bool {
        !self.cannot_lead.contains(&replica)
    }

    /// Records whether `replica` may lead. Unfit, it leaves the in-sync set, and loses
    /// the leadership if it holds it (to a live in-sync replica, else any live fit one,
    /// else none): returns whether the leader changed.
    pub fn set_fit(&mut self, replica: i32, fit: bool, live: &BTreeSet<i32>) -> bool {
        if fit {
            self.cannot_lead.retain(|&r| r != replica);
            return false;
        }
        if !self.cannot_lead.contains(&replica) {
            self.cannot_lead.push(replica);
        }
        if let Some(isr) = &mut self.isr {
            isr.retain(|&r| r != replica);
        }
        if self.leader != replica {
            return false;
        }
        self.leader = self.next_leader(live);
        self.epoch += 1;
        self.isr = None;
        true
    }

    /// The replica to lead next among `live`: one the last leader counted in sync
    /// first (it holds the most), then any fit one; -1 when none is live.
    fn next_leader(&self, live: &BTreeSet<i32>) -> i32 {
        let candidates = || self.replicas.iter().copied().filter(|r| live.contains(r) && self.may_lead(*r));
        candidates().find(|&r| self.in_sync(r)).or_else(|| candidates().next()).unwrap_or(-1)
    }
}

pub fn topic_key(name: &str) -> String {
    format!("{TOPICS_PREFIX}{name}")
}

impl TopicRecord {
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a topic record always serializes"))
    }

    pub fn decode(value: &[u8]) -> std::result::Result<TopicRecord, String> {
        serde_json::from_slice(value).map_err(|e| e.to_string())
    }

    /// This record as a cluster member's registry holds it, its configs applied over
    /// `defaults`. A config this node cannot parse (a newer node wrote it) falls back
    /// to the defaults, with a warning, rather than hiding the topic.
    pub fn to_meta(&self, name: &str, defaults: &TopicConfig) -> std::result::Result<TopicMeta, String> {
        let id = TopicId::from_hex(&self.id).ok_or_else(|| format!("bad topic id {:?}", self.id))?;
        let (config, refused) = defaults.with_usable_overrides(&self.configs);
        for e in refused {
            tracing::warn!(topic = name, error = %e, "cannot apply a topic config; ignoring it");
        }
        let assignments = self
            .partitions
            .iter()
            .map(|p| Assignment {
                replicas: p.replicas.iter().map(|&r| NodeId(r)).collect(),
                leader: (p.leader >= 0).then_some(NodeId(p.leader)),
                leader_epoch: LeaderEpoch(p.epoch),
                isr: p.isr.as_ref().map(|isr| isr.iter().map(|&r| NodeId(r)).collect()),
                cannot_lead: p.cannot_lead.iter().map(|&r| NodeId(r)).collect(),
            })
            .collect();
        Ok(TopicMeta {
            name: name.into(),
            id,
            partitions: self.partitions.len() as i32,
            overrides: self.configs.clone(),
            config,
            assignments,
        })
    }
}

/// An admin change, as forwarded to the controller. `validate_only` requests never get
/// here: any node validates against its own image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerRequest {
    CreateTopic {
        name: String,
        /// Chosen by the forwarder, so that a retry recognises its own topic.
        id: String,
        partitions: i32,
        configs: BTreeMap<String, String>,
        /// Replicas chosen by the client, one list per partition; none: the controller
        /// places them.
        assignment: Option<Vec<Vec<i32>>>,
        /// Replicas per partition when the controller places them; none: 3, or the
        /// number of live brokers when fewer.
        #[serde(default)]
        replication_factor: Option<i32>,
    },
    DeleteTopic {
        name: String,
        /// Set when an earlier attempt may have taken effect: "already gone" succeeds.
        retried: bool,
    },
    CreatePartitions {
        name: String,
        count: i32,
        assignment: Option<Vec<Vec<i32>>>,
        /// Set when an earlier attempt may have taken effect: "already `count`"
        /// succeeds.
        retried: bool,
    },
    AlterConfigs {
        name: String,
        change: ConfigChange,
    },
    /// Adds node `id`, whose internal RPC listens at `rpc`, to the metadata group.
    AddNode {
        id: i32,
        rpc: String,
    },
    /// Removes node `id` from the metadata group.
    RemoveNode {
        id: i32,
    },
    /// Moves these partitions' leadership to their preferred (first) replica where it
    /// is live and does not lead (Kafka's preferred leader election).
    ElectPreferred {
        partitions: Vec<(String, i32)>,
    },
    /// The leader `leader` of these partitions of `name` reports which replicas it
    /// counts in its write quorum now: (partition, epoch, replicas). A report from a
    /// leader or epoch that is no longer the partition's is ignored.
    SetIsr {
        name: String,
        leader: i32,
        partitions: Vec<(i32, i32, Vec<i32>)>,
    },
    /// Node `node` reports whether its replica of `partition` of `name` may lead:
    /// not after a failed write or fsync (until the node reopens the log), nor while
    /// it catches up after losing its data. An unfit leader is replaced at once.
    ReplicaFit {
        name: String,
        partition: i32,
        node: i32,
        fit: bool,
    },
    /// Node `node` leads `partition` of `name` at `epoch` but did not open that epoch
    /// in its current life (it restarted within its session): it asks for a new
    /// epoch, so that no two lives of one leader ever write the same epoch.
    BumpEpoch {
        name: String,
        partition: i32,
        epoch: i32,
        node: i32,
    },
}

/// A change of a topic's config overrides, applied by the controller to the record as
/// it reads it (so concurrent changes of different keys both take effect).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    /// Drop every override first (the legacy AlterConfigs replaces them all).
    pub replace: bool,
    pub set: BTreeMap<String, String>,
    pub delete: Vec<String>,
}

impl ConfigChange {
    pub fn apply(&self, overrides: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut out = if self.replace { BTreeMap::new() } else { overrides.clone() };
        for k in &self.delete {
            out.remove(k);
        }
        out.extend(self.set.clone());
        out
    }
}

// Requests and replies travel as JSON: enum variants by name, so nodes of different
// versions (a rolling upgrade) read each other's unless a variant really is new.
impl ControllerRequest {
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a controller request always serializes"))
    }

    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<ControllerRequest, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("bad controller request: {e}"))
    }

    /// Marks the request as sent again after an attempt whose outcome is unknown.
    pub fn mark_retried(&mut self) {
        match self {
            ControllerRequest::DeleteTopic { retried, .. } | ControllerRequest::CreatePartitions { retried, .. } => {
                *retried = true
            }
            _ => {}
        }
    }
}

/// The controller's answer: the Raft log index at which the change was applied (the
/// forwarder waits until its own image reflects it), or why it was refused.
pub type ControllerReply = Result<u64>;

pub fn encode_reply(reply: &ControllerReply) -> Bytes {
    Bytes::from(serde_json::to_vec(reply).expect("a controller reply always serializes"))
}

pub fn decode_reply(bytes: &[u8]) -> ControllerReply {
    serde_json::from_slice(bytes).map_err(|e| Error::Storage(format!("bad controller reply: {e}")))?
}

/// A store failure in the controller's terms: the retriable ones say "not the
/// controller" (the forwarder tries again, at whoever leads by then).
fn store_error(e: MetadataError) -> Error {
    if e.is_retriable() {
        Error::NotController(e.to_string())
    } else {
        Error::Storage(format!("metadata store: {e}"))
    }
}

/// Kafka's rack-alternating order of brokers: sorted by id within each rack, the racks
/// taken in turn, so that consecutive positions fall in different racks whenever
/// possible. Brokers without a rack form one rack of their own.
pub fn rack_alternated(brokers: &[BrokerInfo]) -> Vec<NodeId> {
    let mut racks: BTreeMap<Option<&str>, Vec<NodeId>> = BTreeMap::new();
    for b in brokers {
        racks.entry(b.rack.as_deref()).or_default().push(b.id);
    }
    for ids in racks.values_mut() {
        ids.sort();
    }
    let longest = racks.values().map(Vec::len).max().unwrap_or(0);
    let mut order = Vec::with_capacity(brokers.len());
    for i in 0..longest {
        for ids in racks.values() {
            if let Some(&id) = ids.get(i) {
                order.push(id);
            }
        }
    }
    order
}

/// The replication factor of a new topic: the requested one (at most the live
/// brokers), or 3 capped at the live brokers.
pub fn check_replication_factor(requested: Option<i32>, live: usize) -> Result<usize> {
    match requested {
        None | Some(-1) => Ok(live.clamp(1, DEFAULT_REPLICATION_FACTOR)),
        Some(rf) if rf <= 0 => {
            Err(Error::InvalidReplicationFactor(format!("replication factor must be positive, got {rf}")))
        }
        Some(rf) if rf as usize > live => Err(Error::InvalidReplicationFactor(format!(
            "replication factor {rf} is larger than the {live} live broker(s)"
        ))),
        Some(rf) => Ok(rf as usize),
    }
}

/// Replicas per partition when a topic asks for none.
pub const DEFAULT_REPLICATION_FACTOR: usize = 3;

/// Places partitions `from..to` of a topic, `rf` replicas each, on copysets of the
/// live brokers (Cidon et al.: few distinct replica sets, so that `rf` simultaneous
/// failures rarely take every copy of some partition; spread over racks when there
/// are enough). The copysets depend only on the brokers, so every topic shares them;
/// `start` (from the topic id) staggers where a topic's leaders begin.
pub fn place(
    brokers: &[BrokerInfo],
    start: usize,
    from: i32,
    to: i32,
    rf: usize,
    scatter_width: usize,
) -> Result<Vec<PartitionRecord>> {
    let nodes: Vec<Node> = brokers.iter().map(|b| Node { id: b.id, rack: b.rack.clone() }).collect();
    let sets = copysets(&nodes, rf, scatter_width, COPYSET_SEED)
        .map_err(|e| Error::InvalidReplicationFactor(e.to_string()))?;
    let lists = assign(&sets, (to - from) as usize, start.wrapping_add(from as usize));
    Ok(lists
        .into_iter()
        .map(|replicas| {
            let replicas: Vec<i32> = replicas.iter().map(|n| n.0).collect();
            PartitionRecord { leader: replicas[0], replicas, epoch: 0, isr: None, cannot_lead: Vec::new() }
        })
        .collect())
}

/// Every node computes the same copysets from the same brokers.
const COPYSET_SEED: u64 = 0x646c_6f67;

/// Checks replicas the client chose: distinct live brokers, the same number for every
/// partition.
fn chosen(assignment: &[Vec<i32>], live: &BTreeSet<i32>, first: i32) -> Result<Vec<PartitionRecord>> {
    let rf = assignment.first().map_or(0, Vec::len);
    assignment
        .iter()
        .enumerate()
        .map(|(i, replicas)| {
            let p = first + i as i32;
            if replicas.is_empty() || replicas.len() != rf {
                return Err(Error::InvalidReplicaAssignment(format!(
                    "partition {p} is assigned {} replicas; every partition needs the same number, at least 1",
                    replicas.len()
                )));
            }
            if let Some(b) = replicas.iter().find(|b| !live.contains(b)) {
                return Err(Error::InvalidReplicaAssignment(format!(
                    "partition {p} is assigned to broker {b}, which is not a live broker"
                )));
            }
            if replicas.iter().collect::<BTreeSet<_>>().len() != replicas.len() {
                return Err(Error::InvalidReplicaAssignment(format!(
                    "partition {p} names a broker twice: {replicas:?}"
                )));
            }
            Ok(PartitionRecord {
                replicas: replicas.clone(),
                leader: replicas[0],
                epoch: 0,
                isr: None,
                cannot_lead: Vec::new(),
            })
        })
        .collect()
}

/// The cluster's members: `/cluster/members` = `1=HOST:PORT,2=...` (the internal RPC
/// addresses), recorded at formation and changed by `AddNode` and `RemoveNode`.
pub const MEMBERS_KEY: &str = "/cluster/members";
/// How long a membership change may take (a new node must catch up within it).
const MEMBERSHIP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn members_text(members: &BTreeMap<NodeId, String>) -> String {
    members.iter().map(|(id, addr)| format!("{}={addr}", id.0)).collect::<Vec<_>>().join(",")
}

/// What the controller needs from its node.
pub struct Controller {
    pub store: Arc<RaftStore>,
    pub defaults: TopicConfig,
    /// The internal RPC's peers, whose addresses follow the member list.
    pub peers: Arc<dlog_rpc::Peers>,
    /// Since when each broker has been live, as this controller saw it.
    pub live_since: std::sync::Mutex<BTreeMap<i32, std::time::Instant>>,
    /// The copyset scatter width replicas are placed with.
    pub scatter_width: usize,
    /// The failure detector's pace and the broker session.
    pub timings: crate::config::ClusterTimings,
    /// The cluster's id: a node added must be of it, or of none yet.
    pub cluster_id: String,
}

impl Controller {
    fn live_brokers(&self) -> Vec<BrokerInfo> {
        crate::cluster::read_brokers(&self.store)
    }

    /// Runs one admin change. Refuses with [`Error::NotController`] unless this node
    /// leads the metadata group.
    pub async fn execute(&self, request: ControllerRequest) -> ControllerReply {
        let status = self.store.status();
        if status.leader != Some(self.store.id()) {
            return Err(Error::NotController(format!("the controller is {:?}", status.leader.map(|n| n.0))));
        }
        // Decide over everything committed, not this node's applied state: a leader
        // just elected may not yet have applied what its predecessor committed (a
        // broker's registration, a topic), and would refuse or place against a stale
        // view. One quorum round trip per admin change.
        self.store.sync().await.map_err(store_error)?;
        match request {
            ControllerRequest::CreateTopic { name, id, partitions, configs, assignment, replication_factor } => {
                self.create(&name, &id, partitions, configs, assignment, replication_factor).await?
            }
            ControllerRequest::ElectPreferred { partitions } => {
                let live: BTreeSet<i32> = self.live_brokers().iter().map(|b| b.id.0).collect();
                let mut by_topic: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
                for (t, p) in partitions {
                    by_topic.entry(t).or_default().insert(p);
                }
                for (name, wanted) in by_topic {
                    self.update(&name, |record| {
                        prefer(record, &live, |p| wanted.contains(&p));
                        Ok(())
                    })
                    .await?;
                }
            }
            ControllerRequest::SetIsr { name, leader, partitions } => {
                self.update(&name, |record| {
                    for (partition, epoch, isr) in &partitions {
                        let Some(p) = usize::try_from(*partition).ok().and_then(|i| record.partitions.get_mut(i))
                        else {
                            continue;
                        };
                        if p.leader == leader && p.epoch == *epoch {
                            p.isr = Some(isr.clone());
                        }
                    }
                    Ok(())
                })
                .await?
            }
            ControllerRequest::BumpEpoch { name, partition, epoch, node } => {
                self.update(&name, |record| {
                    let p = usize::try_from(partition)
                        .ok()
                        .and_then(|i| record.partitions.get_mut(i))
                        .ok_or_else(|| Error::UnknownTopicOrPartition(format!("{name}-{partition}")))?;
                    if p.leader == node && p.epoch == epoch {
                        p.epoch += 1;
                        p.isr = None;
                        tracing::info!(topic = %name, partition, epoch = p.epoch, leader = node,
                            "new leader epoch for a restarted leader");
                    }
                    Ok(())
                })
                .await?
            }
            ControllerRequest::ReplicaFit { name, partition, node, fit } => {
                let live: BTreeSet<i32> = self.live_brokers().iter().map(|b| b.id.0).collect();
                self.update(&name, |record| {
                    let p = usize::try_from(partition)
                        .ok()
                        .and_then(|i| record.partitions.get_mut(i))
                        .ok_or_else(|| Error::UnknownTopicOrPartition(format!("{name}-{partition}")))?;
                    if p.set_fit(node, fit, &live) {
                        tracing::warn!(topic = %name, partition, node, leader = p.leader, epoch = p.epoch,
                            "the leader's replica cannot lead; leadership moved");
                    }
                    Ok(())
                })
                .await?
            }
            ControllerRequest::DeleteTopic { name, retried } => match self.delete(&name).await {
                Err(Error::UnknownTopicOrPartition(_)) if retried => {}
                other => other?,
            },
            ControllerRequest::CreatePartitions { name, count, assignment, retried } => {
                let brokers = self.live_brokers();
                let grown = self.update(&name, |record| {
                    if retried && record.partitions.len() as i32 == count {
                        return Err(Error::NotController("already grown".into()));
                    }
                    grow(record, count, assignment.as_deref(), &brokers, self.scatter_width)
                });
                match grown.await {
                    Err(Error::NotController(why)) if why == "already grown" => {}
                    other => other?,
                }
            }
            ControllerRequest::AddNode { id, rpc } => self.add_node(NodeId(id), rpc).await?,
            ControllerRequest::RemoveNode { id } => self.remove_node(NodeId(id)).await?,
            ControllerRequest::AlterConfigs { name, change } => {
                self.update(&name, |record| {
                    let configs = change.apply(&record.configs);
                    let replicas = record.partitions.first().map_or(1, |p| p.replicas.len());
                    self.defaults.with_overrides(&configs)?.check_for(replicas)?;
                    record.configs = configs;
                    Ok(())
                })
                .await?
            }
        }
        // The leader applies a write before answering it: its applied index covers it.
        Ok(self.store.status().last_applied_index.unwrap_or(0))
    }

    async fn create(
        &self,
        name: &str,
        id: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        assignment: Option<Vec<Vec<i32>>>,
        replication_factor: Option<i32>,
    ) -> Result<()> {
        check_new_topic(name, partitions)?;
        let config = self.defaults.with_overrides(&configs)?;
        let brokers = self.live_brokers();
        if brokers.is_empty() {
            return Err(Error::InvalidReplicationFactor("no broker is registered yet".into()));
        }
        let id = TopicId::from_hex(id).ok_or_else(|| Error::InvalidRequest(format!("bad topic id {id:?}")))?;
        let records = match assignment {
            Some(a) => chosen(&a, &brokers.iter().map(|b| b.id.0).collect(), 0)?,
            None => {
                let rf = check_replication_factor(replication_factor, brokers.len())?;
                place(&brokers, id.0[0] as usize, 0, partitions, rf, self.scatter_width)?
            }
        };
        config.check_for(records.first().map_or(1, |p| p.replicas.len()))?;
        let record = TopicRecord { id: id.to_hex(), configs, partitions: records };
        match self.store.put(&topic_key(name), record.encode(), PutOptions::expect(ExpectedVersion::NotExists)).await {
            Ok(_) => {
                tracing::info!(topic = name, partitions = record.partitions.len(), "controller created topic");
                Ok(())
            }
            Err(MetadataError::UnexpectedVersion { .. }) => {
                // Our own earlier attempt, whose answer was lost, is not a conflict.
                let existing = self.store.get(&topic_key(name), Comparison::Equal).await.map_err(store_error)?;
                match existing.map(|e| TopicRecord::decode(&e.value)) {
                    Some(Ok(r)) if r.id == record.id => Ok(()),
                    _ => Err(Error::TopicAlreadyExists(name.to_string())),
                }
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// The member list as recorded, with its version.
    async fn members(&self) -> Result<(BTreeMap<NodeId, String>, VersionId)> {
        let entry = self
            .store
            .get(MEMBERS_KEY, Comparison::Equal)
            .await
            .map_err(store_error)?
            .ok_or_else(|| Error::Storage(format!("{MEMBERS_KEY} is missing")))?;
        let text = String::from_utf8_lossy(&entry.value);
        let members =
            crate::config::parse_cluster_nodes(MEMBERS_KEY, &text).map_err(|e| Error::Storage(e.to_string()))?;
        Ok((members, entry.stat.version_id))
    }

    async fn write_members(&self, members: &BTreeMap<NodeId, String>, version: VersionId) -> Result<()> {
        let options = PutOptions::expect(ExpectedVersion::Is(version));
        match self.store.put(MEMBERS_KEY, Bytes::from(members_text(members)), options).await {
            Ok(_) => Ok(()),
            Err(MetadataError::UnexpectedVersion { .. }) => {
                Err(Error::NotController("the member list changed meanwhile".into()))
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// Records the new member (so that it passes its join check and every node learns
    /// its address), then has it catch up as a learner and vote if there is room.
    async fn add_node(&self, id: NodeId, rpc: String) -> Result<()> {
        if id.0 < 0 {
            return Err(Error::InvalidRequest(format!("node id {id} is negative")));
        }
        crate::config::parse_cluster_nodes("--rpc", &format!("{}={rpc}", id.0))
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        // Check the node before anything records it: a member list naming a wrong
        // address would stop every node from starting again.
        let answer = self.peers.call_addr(id, &rpc, PING_CHANNEL, Bytes::new(), MEMBER_CHECK_TIMEOUT).await;
        let identity = answer
            .map_err(|e| Error::InvalidRequest(format!("node {id} does not answer at {rpc}: {e}")))
            .and_then(|bytes| Identity::decode(&bytes))?;
        if identity.node != id {
            return Err(Error::InvalidRequest(format!("{rpc} is node {}, not node {id}", identity.node)));
        }
        if let Some(theirs) = identity.cluster_id.filter(|c| *c != self.cluster_id) {
            return Err(Error::InvalidRequest(format!(
                "node {id} at {rpc} belongs to cluster {theirs:?}, not this cluster ({:?})",
                self.cluster_id
            )));
        }
        let (mut members, version) = self.members().await?;
        match members.get(&id) {
            Some(addr) if *addr != rpc => {
                return Err(Error::InvalidRequest(format!("node {id} is already a member, at {addr}")))
            }
            Some(_) => {}
            None => {
                members.insert(id, rpc.clone());
                self.write_members(&members, version).await?;
            }
        }
        self.peers.set_addrs(members);
        self.store.add_member(id, rpc, MEMBERSHIP_TIMEOUT).await.map_err(|e| match e {
            MetadataError::Unavailable(why) => Error::Timeout(why),
            other => store_error(other),
        })?;
        tracing::info!(node = %id, voters = ?self.store.voters(), "controller added a node");
        Ok(())
    }

    /// Removes a member that holds no partition (with one replica per partition, its
    /// partitions would be lost): from the Raft group first, then from the list.
    async fn remove_node(&self, id: NodeId) -> Result<()> {
        let (mut members, version) = self.members().await?;
        if !members.contains_key(&id) {
            return Err(Error::InvalidRequest(format!("node {id} is not a member")));
        }
        if members.len() == 1 {
            return Err(Error::InvalidRequest(format!("node {id} is the last member")));
        }
        let holding: Vec<String> = self.store.read_local(|kv| {
            kv.range_scan(TOPICS_PREFIX, TOPICS_END)
                .into_iter()
                .filter(|e| {
                    TopicRecord::decode(&e.value).is_ok_and(|r| r.partitions.iter().any(|p| p.replicas.contains(&id.0)))
                })
                .map(|e| e.key[TOPICS_PREFIX.len()..].to_string())
                .collect()
        });
        if !holding.is_empty() {
            return Err(Error::InvalidRequest(format!(
                "node {id} holds partitions of {holding:?}, which have no other replica: delete those topics first"
            )));
        }
        self.store.remove_member(id, MEMBERSHIP_TIMEOUT).await.map_err(store_error)?;
        members.remove(&id);
        self.write_members(&members, version).await?;
        self.peers.set_addrs(members);
        tracing::info!(node = %id, voters = ?self.store.voters(), "controller removed a node");
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(entry) = self.store.get(&topic_key(name), Comparison::Equal).await.map_err(store_error)? else {
                return Err(Error::UnknownTopicOrPartition(name.to_string()));
            };
            match self.store.delete(&topic_key(name), ExpectedVersion::Is(entry.stat.version_id)).await {
                Ok(_) => {
                    tracing::info!(topic = name, "controller deleted topic");
                    return Ok(());
                }
                Err(MetadataError::UnexpectedVersion { .. }) => continue,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(Error::NotController(format!("topic {name:?} kept changing while being deleted")))
    }

    /// Reads, changes and writes back a topic's record, retrying lost races.
    async fn update(&self, name: &str, change: impl Fn(&mut TopicRecord) -> Result<()>) -> Result<()> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(entry) = self.store.get(&topic_key(name), Comparison::Equal).await.map_err(store_error)? else {
                return Err(Error::UnknownTopicOrPartition(name.to_string()));
            };
            let mut record = TopicRecord::decode(&entry.value).map_err(Error::Storage)?;
            change(&mut record)?;
            match self.write_over(name, &record, entry.stat.version_id).await {
                Ok(()) => return Ok(()),
                Err(MetadataError::UnexpectedVersion { .. }) => continue,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(Error::NotController(format!("topic {name:?} kept changing")))
    }

    async fn write_over(
        &self,
        name: &str,
        record: &TopicRecord,
        version: VersionId,
    ) -> std::result::Result<(), MetadataError> {
        let options = PutOptions::expect(ExpectedVersion::Is(version));
        self.store.put(&topic_key(name), record.encode(), options).await.map(|_| ())
    }

    /// Moves partition leadership after broker changes: a partition whose leader is
    /// gone goes to its first live replica, or offline; an offline one comes back when
    /// a replica returns. Each change bumps the partition's epoch. Only the leader of
    /// the metadata group acts; a lost race waits for the next round.
    pub async fn rebalance_leaders(&self, leading_since: &mut Option<std::time::Instant>) {
        if self.store.status().leader != Some(self.store.id()) {
            *leading_since = None;
            self.live_since.lock().expect("live-since lock").clear();
            return;
        }
        // A new controller (after a restart of the whole cluster, say) first gives
        // brokers a session's time to register, rather than taking their partitions
        // offline and back.
        let since = *leading_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < self.timings.broker_session {
            return;
        }
        self.elect(None).await;
        self.restore_preferred().await;
    }

    /// Gives partitions back to their preferred (first) replica once it has been live
    /// for [`PREFERRED_LEADER_DELAY`] (Kafka's auto leader rebalance): leadership
    /// spreads evenly again after a node returns.
    async fn restore_preferred(&self) {
        let now = std::time::Instant::now();
        let live: BTreeSet<i32> = self.live_brokers().iter().map(|b| b.id.0).collect();
        let settled: BTreeSet<i32> = {
            let mut since = self.live_since.lock().expect("live-since lock");
            since.retain(|b, _| live.contains(b));
            for b in &live {
                since.entry(*b).or_insert(now);
            }
            since.iter().filter(|(_, t)| now.duration_since(**t) >= PREFERRED_LEADER_DELAY).map(|(b, _)| *b).collect()
        };
        let entries = self.store.read_local(|kv| kv.range_scan(TOPICS_PREFIX, TOPICS_END));
        for entry in entries {
            let name = &entry.key[TOPICS_PREFIX.len()..];
            let Ok(mut record) = TopicRecord::decode(&entry.value) else { continue };
            if prefer(&mut record, &settled, |_| true) == 0 {
                continue;
            }
            match self.write_over(name, &record, entry.stat.version_id).await {
                Ok(()) => tracing::info!(topic = name, "controller restored preferred leaders"),
                Err(e) => tracing::debug!(topic = name, error = %e, "preferred leaders not written; next round"),
            }
        }
    }

    /// Moves the leaders of partitions whose leader is not live; with `only`, just
    /// those led by these brokers.
    async fn elect(&self, only: Option<&BTreeSet<i32>>) {
        let live: BTreeSet<i32> = self.live_brokers().iter().map(|b| b.id.0).collect();
        let entries = self.store.read_local(|kv| kv.range_scan(TOPICS_PREFIX, TOPICS_END));
        for entry in entries {
            let name = &entry.key[TOPICS_PREFIX.len()..];
            let Ok(mut record) = TopicRecord::decode(&entry.value) else { continue };
            let changes = elect_leaders_where(&mut record, &live, |leader| only.is_none_or(|o| o.contains(&leader)));
            if changes == 0 {
                continue;
            }
            match self.write_over(name, &record, entry.stat.version_id).await {
                Ok(()) => tracing::info!(topic = name, partitions = changes, "controller moved partition leaders"),
                Err(e) => tracing::debug!(topic = name, error = %e, "leader change not written; next round"),
            }
        }
    }
}

impl Controller {
    /// The controller's failure detector: pings every registered broker every
    /// `failure_detector_interval_ms`; one that misses `failure_detector_misses` pings
    /// in a row (a killed
    /// process refuses at once, a cut one times out) is fenced — its session closed,
    /// its registration gone — and its partitions get new leaders at once, rather
    /// than after its session would expire. A fenced broker that is alive registers
    /// again by itself.
    pub async fn detect_failures(&self, misses: &mut BTreeMap<i32, u32>) {
        if self.store.status().leader != Some(self.store.id()) {
            misses.clear();
            return;
        }
        let me = self.store.id();
        let brokers: Vec<NodeId> = self.live_brokers().iter().map(|b| b.id).filter(|&b| b != me).collect();
        misses.retain(|b, _| brokers.contains(&NodeId(*b)));
        let timeout = self.timings.ping_timeout;
        let pings = brokers.iter().map(|&b| {
            let peers = self.peers.clone();
            async move { (b, peers.call(b, PING_CHANNEL, Bytes::new(), timeout).await) }
        });
        let mut fenced = BTreeSet::new();
        for (b, answer) in futures_util::future::join_all(pings).await {
            match answer {
                Ok(_) => {
                    misses.remove(&b.0);
                }
                Err(e) => {
                    let n = misses.entry(b.0).or_insert(0);
                    *n += 1;
                    if *n >= self.timings.ping_misses {
                        tracing::warn!(broker = %b, misses = *n, error = %e, "broker unreachable; fencing it");
                        if self.fence(b).await {
                            fenced.insert(b.0);
                            misses.remove(&b.0);
                        }
                    }
                }
            }
        }
        if !fenced.is_empty() {
            self.elect(Some(&fenced)).await;
        }
    }

    /// Closes the session holding `broker`'s registration.
    async fn fence(&self, broker: NodeId) -> bool {
        let key = crate::cluster::broker_key(broker);
        let entry = match self.store.get(&key, Comparison::Equal).await {
            Ok(Some(e)) => e,
            Ok(None) => return true,
            Err(e) => {
                tracing::debug!(broker = %broker, error = %e, "cannot read the registration");
                return false;
            }
        };
        let Some(session) = entry.stat.session else { return false };
        match self.store.close_session(session).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(broker = %broker, error = %e, "cannot fence");
                false
            }
        }
    }
}

/// The RPC channel of the controller's pings. A node answers with its [`Identity`].
pub const PING_CHANNEL: &str = "ping";
/// How long a node about to be added has to answer.
const MEMBER_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Who answers at an RPC address: its node id, and its cluster once it has joined one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub node: NodeId,
    pub cluster_id: Option<String>,
}

impl Identity {
    pub fn encode(&self) -> Bytes {
        Bytes::from(format!("{} {}", self.node.0, self.cluster_id.as_deref().unwrap_or("")))
    }

    pub fn decode(bytes: &[u8]) -> Result<Identity> {
        let bad = || Error::InvalidRequest(format!("unreadable node identity {:?}", String::from_utf8_lossy(bytes)));
        let text = std::str::from_utf8(bytes).map_err(|_| bad())?;
        let (node, cluster) = text.split_once(' ').ok_or_else(bad)?;
        Ok(Identity {
            node: NodeId(node.parse().map_err(|_| bad())?),
            cluster_id: (!cluster.is_empty()).then(|| cluster.to_string()),
        })
    }
}

/// Grows `record` to `count` partitions.
fn grow(
    record: &mut TopicRecord,
    count: i32,
    assignment: Option<&[Vec<i32>]>,
    brokers: &[BrokerInfo],
    scatter_width: usize,
) -> Result<()> {
    let current = record.partitions.len() as i32;
    check_growth(current, count)?;
    let rf = record.partitions.first().map_or(1, |p| p.replicas.len());
    if brokers.is_empty() {
        return Err(Error::InvalidReplicationFactor("no broker is registered".into()));
    }
    let added = match assignment {
        Some(a) if a.len() as i32 != count - current => {
            return Err(Error::InvalidReplicaAssignment(format!(
                "{} assignments for {} new partitions",
                a.len(),
                count - current
            )))
        }
        Some(a) => {
            let added = chosen(a, &brokers.iter().map(|b| b.id.0).collect(), current)?;
            if added.first().map(|p| p.replicas.len()) != Some(rf) {
                return Err(Error::InvalidReplicaAssignment(format!(
                    "the topic has {rf} replicas per partition; new partitions must too"
                )));
            }
            added
        }
        None => {
            if rf > brokers.len() {
                return Err(Error::InvalidReplicationFactor(format!(
                    "the topic has {rf} replicas per partition but only {} brokers are live",
                    brokers.len()
                )));
            }
            let start = TopicId::from_hex(&record.id).map_or(0, |id| id.0[0] as usize);
            place(brokers, start, current, count, rf, scatter_width)?
        }
    };
    record.partitions.extend(added);
    Ok(())
}

/// Gives the partitions passing `which` to their preferred (first) replica where it is
/// in `live`, does not lead yet and is in sync (the leader's last report counts it):
/// a replica still catching up, or one started over below the leader's log start,
/// does not hold the log and must not lead it. Returns how many changed.
pub fn prefer(record: &mut TopicRecord, live: &BTreeSet<i32>, which: impl Fn(i32) -> bool) -> usize {
    let mut changes = 0;
    for (i, p) in record.partitions.iter_mut().enumerate() {
        let Some(&preferred) = p.replicas.first() else { continue };
        if which(i as i32) && p.leader != preferred && live.contains(&preferred) && p.in_sync(preferred) {
            // in_sync excludes replicas that reported they cannot lead.
            p.leader = preferred;
            p.epoch += 1;
            p.isr = None;
            changes += 1;
        }
    }
    changes
}

/// How long a returned preferred replica must stay live before it leads again.
pub const PREFERRED_LEADER_DELAY: std::time::Duration = std::time::Duration::from_secs(10);

/// Chooses each partition's leader among its live replicas; returns how many changed.
pub fn elect_leaders(record: &mut TopicRecord, live: &BTreeSet<i32>) -> usize {
    elect_leaders_where(record, live, |_| true)
}

/// As [`elect_leaders`], for the partitions whose current leader passes `which`.
fn elect_leaders_where(record: &mut TopicRecord, live: &BTreeSet<i32>, which: impl Fn(i32) -> bool) -> usize {
    let mut changes = 0;
    for p in &mut record.partitions {
        let keep = (p.leader >= 0 && live.contains(&p.leader)) || !which(p.leader);
        if keep {
            continue;
        }
        // A live replica the last leader counted in its quorum first: it holds the
        // most (an available topic's new leader loses nothing it holds). Never one
        // whose node reported it unfit.
        let next = p.next_leader(live);
        if next != p.leader {
            p.leader = next;
            p.epoch += 1;
            p.isr = None;
            changes += 1;
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32, rack: Option<&str>) -> BrokerInfo {
        BrokerInfo {
            id: NodeId(id),
            host: "h".into(),
            port: 1,
            rack: rack.map(str::to_string),
            incarnation: String::new(),
        }
    }

    #[test]
    fn racks_alternate() {
        let brokers =
            [broker(1, Some("a")), broker(2, Some("a")), broker(3, Some("b")), broker(4, Some("b")), broker(5, None)];
        let order: Vec<i32> = rack_alternated(&brokers).iter().map(|n| n.0).collect();
        assert_eq!(order, vec![5, 1, 3, 2, 4]);
    }

    #[test]
    fn partitions_are_placed_on_copysets_across_racks() {
        let brokers =
            [broker(1, Some("a")), broker(2, Some("a")), broker(3, Some("b")), broker(4, Some("b")), broker(5, None)];
        let placed = place(&brokers, 1, 0, 10, 1, 4).unwrap();
        let mut leaders: Vec<i32> = placed.iter().map(|p| p.leader).collect();
        leaders.sort();
        assert_eq!(leaders, vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5], "one replica: leaders round-robin");
        assert!(placed.iter().all(|p| p.replicas == vec![p.leader] && p.epoch == 0));
        let three = place(&brokers, 1, 0, 30, 3, 4).unwrap();
        let rack = |id: i32| brokers.iter().find(|b| b.id.0 == id).unwrap().rack.clone();
        for p in &three {
            assert_eq!(p.replicas[0], p.leader);
            let racks: BTreeSet<_> = p.replicas.iter().map(|&r| rack(r)).collect();
            assert_eq!(racks.len(), 3, "{:?} spans three racks", p.replicas);
        }
        let distinct: BTreeSet<Vec<i32>> = three
            .iter()
            .map(|p| {
                let mut r = p.replicas.clone();
                r.sort();
                r
            })
            .collect();
        assert!(distinct.len() < 10, "copysets, not every combination: {distinct:?}");
        assert!(place(&brokers, 0, 0, 1, 6, 4).is_err());
    }

    #[test]
    fn leaders_follow_their_brokers_with_growing_epochs() {
        let mut r = TopicRecord {
            id: TopicId::NONE.to_hex(),
            configs: BTreeMap::new(),
            partitions: place(&[broker(1, None), broker(2, None)], 0, 0, 2, 1, 4).unwrap(),
        };
        assert_eq!(elect_leaders(&mut r, &[1, 2].into()), 0);
        assert_eq!(elect_leaders(&mut r, &[1].into()), 1, "broker 2 is gone");
        assert_eq!((r.partitions[1].leader, r.partitions[1].epoch), (-1, 1));
        assert_eq!(elect_leaders(&mut r, &[1].into()), 0, "still offline: no change");
        assert_eq!(elect_leaders(&mut r, &[1, 2].into()), 1, "broker 2 is back");
        assert_eq!((r.partitions[1].leader, r.partitions[1].epoch), (2, 2));
        assert_eq!((r.partitions[0].leader, r.partitions[0].epoch), (1, 0));
    }

    #[test]
    fn a_new_leader_is_a_live_replica_the_last_leader_counted_in_sync() {
        let mut r = TopicRecord {
            id: TopicId::NONE.to_hex(),
            configs: BTreeMap::new(),
            partitions: vec![PartitionRecord {
                replicas: vec![1, 2, 3],
                leader: 1,
                epoch: 4,
                isr: Some(vec![1, 3]),
                cannot_lead: Vec::new(),
            }],
        };
        assert_eq!(elect_leaders(&mut r, &[2, 3].into()), 1);
        let p = &r.partitions[0];
        assert_eq!((p.leader, p.epoch, &p.isr), (3, 5, &None), "3 was in sync, 2 was not");
        r.partitions[0].isr = Some(vec![3]);
        assert_eq!(elect_leaders(&mut r, &[2].into()), 1, "no in-sync replica live: any live one");
        assert_eq!(r.partitions[0].leader, 2);
        assert_eq!(prefer(&mut r, &[1, 2].into(), |_| true), 0, "1 is not known to be in sync");
        r.partitions[0].isr = Some(vec![2, 3]);
        assert_eq!(prefer(&mut r, &[1, 2].into(), |_| true), 0, "1 is not in sync");
        r.partitions[0].isr = Some(vec![2, 1]);
        assert_eq!(prefer(&mut r, &[1, 2].into(), |_| true), 1);
        assert_eq!((r.partitions[0].leader, r.partitions[0].epoch), (1, 7));
        assert_eq!(prefer(&mut r, &[1, 2].into(), |_| true), 0, "already preferred");
    }

    /// A replica whose node reported it unfit (a disk error, or data lost and not
    /// caught up) leaves the in-sync set, loses the leadership to an in-sync replica,
    /// and is never elected or preferred until its node reports it fit again.
    #[test]
    fn a_replica_reported_unfit_loses_the_leadership_and_is_never_elected() {
        let all: BTreeSet<i32> = [1, 2, 3].into();
        let mut p = PartitionRecord {
            replicas: vec![1, 2, 3],
            leader: 1,
            epoch: 4,
            isr: Some(vec![1, 2, 3]),
            cannot_lead: Vec::new(),
        };
        assert!(!p.set_fit(2, false, &all), "a follower unfit: no leader change");
        assert_eq!((p.leader, p.epoch, p.isr.clone()), (1, 4, Some(vec![1, 3])));
        assert!(p.set_fit(1, false, &all), "the leader unfit: it moves");
        assert_eq!((p.leader, p.epoch, &p.isr), (3, 5, &None), "to the fit one it counted in sync");
        assert_eq!(p.cannot_lead, vec![2, 1]);
        assert!(!p.in_sync(1) && !p.may_lead(1));

        let mut r = TopicRecord { id: TopicId::NONE.to_hex(), configs: BTreeMap::new(), partitions: vec![p] };
        r.partitions[0].isr = Some(vec![1, 2, 3]);
        assert_eq!(prefer(&mut r, &all, |_| true), 0, "an unfit preferred replica is not made leader");
        assert_eq!(elect_leaders(&mut r, &[1, 2].into()), 1, "its leader died");
        assert_eq!(r.partitions[0].leader, -1, "only unfit replicas live: offline rather than unfit");
        assert!(!r.partitions[0].set_fit(2, true, &all));
        assert_eq!(elect_leaders(&mut r, &[1, 2].into()), 1);
        assert_eq!(r.partitions[0].leader, 2, "fit again: elected");
        let decoded = TopicRecord::decode(&r.encode()).unwrap();
        assert_eq!(decoded.partitions[0].cannot_lead, vec![1]);
        let old = br#"{"id":"00000000000000000000000000000000","configs":{},"partitions":[{"replicas":[1],"leader":1,"epoch":0}]}"#;
        assert!(TopicRecord::decode(old).unwrap().partitions[0].cannot_lead.is_empty(), "records before it decode");
    }

    #[test]
    fn records_and_requests_round_trip() {
        let r = TopicRecord {
            id: TopicId([7; 16]).to_hex(),
            configs: [("retention.ms".to_string(), "5".to_string())].into(),
            partitions: place(&[broker(3, None)], 0, 0, 2, 1, 4).unwrap(),
        };
        assert_eq!(TopicRecord::decode(&r.encode()).unwrap(), r);
        let meta = r.to_meta("t", &TopicConfig::default()).unwrap();
        assert_eq!((meta.partitions, meta.config.retention_ms), (2, 5));
        assert_eq!(meta.assignments[1].leader, Some(NodeId(3)));
        let mut q = ControllerRequest::CreatePartitions {
            name: "t".into(),
            count: 3,
            assignment: Some(vec![vec![1]]),
            retried: false,
        };
        assert_eq!(ControllerRequest::from_bytes(&q.to_bytes()).unwrap(), q);
        q.mark_retried();
        assert!(matches!(q, ControllerRequest::CreatePartitions { retried: true, .. }));
        let change = ConfigChange {
            replace: false,
            set: [("a".to_string(), "1".to_string())].into(),
            delete: vec!["b".to_string()],
        };
        let before: BTreeMap<String, String> =
            [("b".to_string(), "2".to_string()), ("c".to_string(), "3".to_string())].into();
        assert_eq!(
            change.apply(&before),
            [("a".to_string(), "1".to_string()), ("c".to_string(), "3".to_string())].into()
        );
        assert_eq!(ConfigChange { replace: true, ..change }.apply(&before).len(), 1);
        let refused: ControllerReply = Err(Error::TopicAlreadyExists("t".into()));
        assert_eq!(decode_reply(&encode_reply(&refused)), refused);
        assert_eq!(decode_reply(&encode_reply(&Ok(42))), Ok(42));
    }

    #[test]
    fn chosen_replicas_must_be_distinct_live_brokers() {
        let live: BTreeSet<i32> = [1, 2].into();
        assert!(chosen(&[vec![1], vec![2]], &live, 0).is_ok());
        assert!(chosen(&[vec![1, 2], vec![2, 1]], &live, 0).is_ok());
        assert!(matches!(chosen(&[vec![9]], &live, 0), Err(Error::InvalidReplicaAssignment(_))));
        assert!(matches!(chosen(&[vec![1, 1]], &live, 0), Err(Error::InvalidReplicaAssignment(_))));
        assert!(matches!(chosen(&[vec![1, 2], vec![1]], &live, 0), Err(Error::InvalidReplicaAssignment(_))));
        assert_eq!(check_replication_factor(None, 2), Ok(2));
        assert_eq!(check_replication_factor(Some(-1), 5), Ok(3));
        assert!(matches!(check_replication_factor(Some(4), 3), Err(Error::InvalidReplicationFactor(_))));
        assert!(matches!(check_replication_factor(Some(0), 3), Err(Error::InvalidReplicationFactor(_))));
        let mut r = TopicRecord { id: TopicId::NONE.to_hex(), configs: BTreeMap::new(), partitions: vec![] };
        let brokers = [broker(1, None)];
        assert!(grow(&mut r, 0, None, &brokers, 4).is_err());
        grow(&mut r, 3, None, &brokers, 4).unwrap();
        assert_eq!(r.partitions.len(), 3);
    }
}
