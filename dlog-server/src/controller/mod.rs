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

mod placement;
mod records;
pub use placement::*;
pub use records::*;

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
mod tests;
