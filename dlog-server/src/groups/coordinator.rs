//! A shard's part of the group coordinator: the groups whose `__consumer_offsets`
//! partition this shard owns, their committed offsets, and the JoinGroup/SyncGroup
//! requests waiting for an answer. Only the owner shard touches it (no locks).
//!
//! Committed offsets and group metadata are records of that partition, in Kafka's own
//! encoding (offset commit key v1 with value v3; group metadata key v2 with value v3;
//! a null value deletes), appended through the normal partition log. A shard replays a
//! partition the first time one of its groups is used after start, so commits and the
//! last Stable generation survive a crash or restart. In a cluster it replays it again
//! in every leader epoch it leads it in (another node may have written it meanwhile),
//! and only once that epoch's opening batch is committed: then its high watermark
//! covers every commit the partition's earlier leaders acknowledged.
//!
//! Offsets of a group without members expire `offsets.retention.minutes` after the
//! group became empty (after their commit, for groups that never had members), as in
//! Kafka (KIP-211); a group left with neither members nor offsets is forgotten.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use dlog_core::{Error, LeaderEpoch, Offset, Result, TopicPartition};
use dlog_protocol::records::{decode_records, encode_batch, new_record, Compression, Record};
use tokio::sync::oneshot;

use super::state::{
    Group, GroupConfig, GroupSnapshot, Join, JoinResult, MemberSnapshot, Output, Sync, SyncResult, Token,
};
use crate::partition::{DurableReceiver, Partition, Role};
use crate::shard::Shard;

/// The internal topic holding committed offsets, as Kafka names it.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's default `offsets.topic.num.partitions`: the partition count fixes which
/// partition (and so which coordinator) each group maps to, so it cannot change once
/// groups exist; 50 leaves room to spread coordinators over a cluster later.
pub const OFFSETS_PARTITIONS: i32 = 50;
/// How long an offset commit waits for the replicas (Kafka's `offsets.commit.timeout.ms`).
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The `__consumer_offsets` partition of a group: Kafka's `abs(groupId.hashCode) % n`.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for c in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(c as i32);
    }
    // Kafka's Utils.abs maps i32::MIN to 0.
    let h = if h == i32::MIN { 0 } else { h.abs() };
    h % partitions
}

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// A group's committed offsets by (topic, partition).
pub type GroupOffsets = BTreeMap<(String, i32), Committed>;

type JoinReply = std::result::Result<JoinResult, (Error, String)>;

enum Waiter {
    /// With the member id the request came with.
    Join(oneshot::Sender<JoinReply>, String),
    Sync(oneshot::Sender<Result<SyncResult>>),
}

/// Coordinator settings: Kafka's `group.*` and `offsets.*` broker configs.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub group: GroupConfig,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`: longer commit metadata gets OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_max_bytes: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            group: GroupConfig::default(),
            offsets_retention_ms: 7 * 24 * 3_600_000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
        }
    }
}

/// The coordinator state of one shard.
pub struct Coordinator {
    pub config: CoordinatorConfig,
    groups: RefCell<HashMap<String, Group>>,
    offsets: RefCell<HashMap<String, GroupOffsets>>,
    /// Wall-clock ms at which each memberless group (that had members) became empty.
    empty_since: RefCell<HashMap<String, i64>>,
    /// Requests waiting for a rebalance, each with its group.
    waiting: RefCell<HashMap<Token, (String, Waiter)>>,
    next_token: Cell<Token>,
    /// The offsets partitions replayed, each with the leader epoch it was replayed in.
    loaded: RefCell<HashMap<i32, LeaderEpoch>>,
    clock: tokio::time::Instant,
}

impl Default for Coordinator {
    fn default() -> Self {
        Coordinator::new(CoordinatorConfig::default())
    }
}

impl Coordinator {
    pub fn new(config: CoordinatorConfig) -> Coordinator {
        Coordinator {
            config,
            groups: RefCell::new(HashMap::new()),
            offsets: RefCell::new(HashMap::new()),
            empty_since: RefCell::new(HashMap::new()),
            waiting: RefCell::new(HashMap::new()),
            next_token: Cell::new(1),
            loaded: RefCell::new(HashMap::new()),
            clock: tokio::time::Instant::now(),
        }
    }

    /// Milliseconds on the shard's monotonic clock.
    pub fn now(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn token(&self) -> Token {
        let t = self.next_token.get();
        self.next_token.set(t + 1);
        t
    }

    fn deliver(&self, outputs: Vec<Output>) {
        let mut waiting = self.waiting.borrow_mut();
        for o in outputs {
            match o {
                Output::Join(t, r) => {
                    if let Some((_, Waiter::Join(tx, _))) = waiting.remove(&t) {
                        let _ = tx.send(r);
                    }
                }
                Output::Sync(t, r) => {
                    if let Some((_, Waiter::Sync(tx))) = waiting.remove(&t) {
                        let _ = tx.send(r);
                    }
                }
            }
        }
    }

    /// Runs `f` on a group, creating it (empty) if needed.
    pub fn with_group<T>(&self, id: &str, f: impl FnOnce(&mut Group) -> T) -> T {
        let mut groups = self.groups.borrow_mut();
        let g = groups.entry(id.to_string()).or_insert_with(|| Group::new(id, self.config.group.clone()));
        f(g)
    }

    /// Runs `f` on a group that exists (has members or offsets).
    pub fn existing_group<T>(&self, id: &str, f: impl FnOnce(&mut Group) -> T) -> Option<T> {
        self.groups.borrow_mut().get_mut(id).map(f)
    }

    pub fn join(&self, id: &str, mut j: Join) -> oneshot::Receiver<JoinReply> {
        let (tx, rx) = oneshot::channel();
        j.token = self.token();
        self.waiting.borrow_mut().insert(j.token, (id.to_string(), Waiter::Join(tx, j.member_id.clone())));
        let now = self.now();
        let out = self.with_group(id, |g| g.join(now, j));
        self.deliver(out);
        rx
    }

    pub fn sync(&self, id: &str, mut s: Sync) -> oneshot::Receiver<Result<SyncResult>> {
        let (tx, rx) = oneshot::channel();
        s.token = self.token();
        self.waiting.borrow_mut().insert(s.token, (id.to_string(), Waiter::Sync(tx)));
        let now = self.now();
        let (token, member) = (s.token, s.member_id.clone());
        let out = self
            .existing_group(id, |g| g.sync(now, s))
            .unwrap_or_else(|| vec![Output::Sync(token, Err(Error::UnknownMemberId(member)))]);
        self.deliver(out);
        rx
    }

    pub fn heartbeat(&self, id: &str, member_id: &str, instance_id: Option<&str>, generation: i32) -> Result<()> {
        let now = self.now();
        self.existing_group(id, |g| g.heartbeat(now, member_id, instance_id, generation))
            .unwrap_or_else(|| Err(Error::UnknownMemberId(member_id.to_string())))
    }

    pub fn leave(&self, id: &str, leaving: &[(String, Option<String>)]) -> Vec<Result<String>> {
        let now = self.now();
        match self.existing_group(id, |g| g.leave(now, leaving)) {
            Some((results, out)) => {
                self.deliver(out);
                results
            }
            None => leaving.iter().map(|(m, _)| Err(Error::UnknownMemberId(m.clone()))).collect(),
        }
    }

    /// Advances every group's clock and stores the groups whose durable part changed
    /// (called by the shard's housekeeping).
    pub fn tick(&self, shard: &Shard) {
        self.drop_lost_partitions(shard);
        let now = self.now();
        let mut outputs = Vec::new();
        for g in self.groups.borrow_mut().values_mut() {
            if g.next_deadline().is_some_and(|d| d <= now) {
                outputs.extend(g.tick(now));
            }
        }
        self.deliver(outputs);
        self.store_changed_groups(shard);
    }

    /// Appends the metadata of every group changed since the last call. Not awaited:
    /// group metadata only spares members a rejoin after a restart, so losing the
    /// last one in a crash costs a rebalance, never an offset.
    pub fn store_changed_groups(&self, shard: &Shard) {
        let changed: Vec<(String, GroupSnapshot)> = self
            .groups
            .borrow_mut()
            .iter_mut()
            .filter_map(|(id, g)| g.take_dirty().then(|| (id.clone(), g.snapshot())))
            .collect();
        let now = crate::now_ms();
        for (id, snap) in changed {
            if snap.members.is_empty() {
                self.empty_since.borrow_mut().insert(id.clone(), now);
            } else {
                self.empty_since.borrow_mut().remove(&id);
            }
            let record = new_record(Some(encode_group_key(&id)), Some(encode_group_value(&snap, now)), now);
            if let Err(e) = self.append(shard, &id, vec![record]) {
                tracing::warn!(group = %id, error = %e, "could not store group metadata");
            }
        }
    }

    /// Expires offsets of groups without members after the retention (Kafka's
    /// KIP-211 rule) and forgets groups left with nothing. Returns the number of
    /// offsets expired.
    pub async fn expire_offsets(&self, shard: &Shard, now_wall: i64) -> usize {
        let retention = self.config.offsets_retention_ms;
        let mut expired: Vec<(String, Vec<(String, i32)>)> = Vec::new();
        {
            let groups = self.groups.borrow();
            let empty_since = self.empty_since.borrow();
            for (id, offsets) in self.offsets.borrow().iter() {
                if groups.get(id).is_some_and(|g| !g.is_empty()) {
                    continue;
                }
                let since = empty_since.get(id).copied();
                let gone: Vec<(String, i32)> = offsets
                    .iter()
                    .filter(|(_, c)| now_wall - since.unwrap_or(c.commit_timestamp) >= retention)
                    .map(|(k, _)| k.clone())
                    .collect();
                if !gone.is_empty() {
                    expired.push((id.clone(), gone));
                }
            }
        }
        let mut count = 0;
        for (group, keys) in expired {
            count += keys.len();
            let tombstones = keys.into_iter().map(|(t, p)| (t, p, None)).collect();
            if let Err(e) = self.write(shard, &group, tombstones).await {
                tracing::warn!(group, error = %e, "could not expire offsets");
                continue;
            }
            tracing::info!(group, "expired committed offsets of a group without members");
        }
        // Memberless groups with no offsets left are forgotten (Kafka: Dead).
        let dead: Vec<String> = self
            .groups
            .borrow()
            .iter()
            .filter(|(id, g)| g.is_empty() && !self.offsets.borrow().contains_key(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in dead {
            if let Err(e) = self.forget_group(shard, &id) {
                tracing::warn!(group = %id, error = %e, "could not remove group metadata");
            }
        }
        count
    }

    /// Removes a group's membership state and its stored metadata (a tombstone).
    pub fn forget_group(&self, shard: &Shard, group: &str) -> Result<()> {
        let stored = self.groups.borrow_mut().remove(group).is_some_and(|g| g.generation() > 0);
        self.empty_since.borrow_mut().remove(group);
        if stored {
            self.append(shard, group, vec![new_record(Some(encode_group_key(group)), None, crate::now_ms())])?;
        }
        Ok(())
    }

    /// The committed offsets of a group.
    pub fn offsets_of(&self, group: &str) -> GroupOffsets {
        self.offsets.borrow().get(group).cloned().unwrap_or_default()
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.borrow().get(group).is_some_and(|g| g.exists())
            || self.offsets.borrow().get(group).is_some_and(|o| !o.is_empty())
    }

    fn apply(&self, group: &str, topic: &str, partition: i32, value: Option<Committed>) {
        let mut offsets = self.offsets.borrow_mut();
        match value {
            Some(c) => {
                offsets.entry(group.to_string()).or_default().insert((topic.to_string(), partition), c);
            }
            None => {
                if let Some(o) = offsets.get_mut(group) {
                    o.remove(&(topic.to_string(), partition));
                    if o.is_empty() {
                        offsets.remove(group);
                    }
                }
            }
        }
    }

    /// Replays partition `p` of the offsets topic once after start (a single node), or
    /// once per leader epoch this node leads it in (a cluster). A cluster's leader
    /// replays only once its epoch's opening batch is committed: before, its high
    /// watermark (0 after a restart) may lag the commits earlier leaders acknowledged,
    /// and replaying that far would lose them. Until then COORDINATOR_NOT_AVAILABLE,
    /// which clients retry.
    pub fn ensure_loaded(&self, shard: &Shard, p: i32) -> Result<()> {
        let tp = TopicPartition::new(OFFSETS_TOPIC, p);
        let part = shard.partition(&tp).ok_or_else(|| Error::CoordinatorNotAvailable(format!("{tp} is not open")))?;
        let part = part.borrow();
        let epoch = match &part.role {
            Role::Solo => part.leader_epoch,
            Role::Leading(l) => {
                let epoch = l.engine.epoch();
                let opened = part.log.epoch_cache().latest().filter(|e| e.epoch == epoch).map(|e| e.start_offset);
                if opened.is_none_or(|start| part.high_watermark() <= start) {
                    return Err(Error::CoordinatorNotAvailable(format!(
                        "{tp}: loading; leader epoch {epoch} is not committed yet"
                    )));
                }
                epoch
            }
            _ => return Err(Error::CoordinatorNotAvailable(format!("{tp} is not led by this node"))),
        };
        match self.loaded.borrow().get(&p) {
            Some(&e) if e == epoch => return Ok(()),
            Some(_) => self.forget_partition(p),
            None => {}
        }
        let end = part.high_watermark();
        let mut next = part.log.log_start_offset();
        let mut records = 0usize;
        let mut stored: HashMap<String, Option<(GroupSnapshot, i64)>> = HashMap::new();
        while next < end {
            let read = part.log.read(next, 1 << 20, end)?;
            if read.bytes.is_empty() {
                break;
            }
            let decoded = decode_records(&read.bytes).map_err(|e| Error::Storage(format!("{tp}: {e}")))?;
            let Some(last) = decoded.last().map(|r| r.offset) else { break };
            for r in decoded.into_iter().filter(|r| !r.control) {
                if r.offset < next.0 {
                    continue;
                }
                records += 1;
                let Some(key) = r.key else { continue };
                if let Some((group, topic, partition)) = decode_key(key.clone()) {
                    self.apply(&group, &topic, partition, r.value.and_then(decode_value));
                } else if let Some(group) = decode_group_key(key) {
                    stored.insert(group, r.value.and_then(decode_group_value));
                }
            }
            next = Offset(last + 1);
        }
        let now = self.now();
        let mut restored = 0usize;
        for (id, snap) in stored {
            let Some((snap, state_ts)) = snap else { continue };
            if snap.members.is_empty() {
                self.empty_since.borrow_mut().insert(id.clone(), state_ts);
            }
            restored += 1;
            let g = Group::restore(id.clone(), self.config.group.clone(), snap, now);
            self.groups.borrow_mut().insert(id, g);
        }
        if records > 0 {
            tracing::info!(partition = %tp, records, groups = restored, "loaded committed offsets and groups");
        }
        self.loaded.borrow_mut().insert(p, epoch);
        Ok(())
    }

    /// Drops what a replay of offsets partition `p` in an earlier leader epoch left:
    /// another leader may have changed it since. Requests still waiting for a
    /// rebalance of its groups get NOT_COORDINATOR, so their clients look up the new
    /// coordinator instead of waiting out their timeouts here.
    fn forget_partition(&self, p: i32) {
        let mine = |group: &str| partition_for(group, OFFSETS_PARTITIONS) == p;
        self.groups.borrow_mut().retain(|g, _| !mine(g));
        self.offsets.borrow_mut().retain(|g, _| !mine(g));
        self.empty_since.borrow_mut().retain(|g, _| !mine(g));
        let gone: Vec<Token> =
            self.waiting.borrow().iter().filter(|(_, (group, _))| mine(group)).map(|(&t, _)| t).collect();
        for t in gone {
            let Some((group, waiter)) = self.waiting.borrow_mut().remove(&t) else { continue };
            let why = format!("{group}: this node no longer coordinates it");
            let _ = match waiter {
                Waiter::Join(tx, member) => tx.send(Err((Error::NotCoordinator(why), member))).map_err(drop),
                Waiter::Sync(tx) => tx.send(Err(Error::NotCoordinator(why))).map_err(drop),
            };
        }
    }

    /// Forgets the offsets partitions this node replayed but no longer leads in the
    /// epoch it replayed them in (Kafka unloads a partition's groups when its
    /// leadership moves): their groups are coordinated elsewhere now.
    fn drop_lost_partitions(&self, shard: &Shard) {
        let lost: Vec<i32> = self
            .loaded
            .borrow()
            .iter()
            .filter(|&(&p, &epoch)| {
                let tp = TopicPartition::new(OFFSETS_TOPIC, p);
                !shard.partition(&tp).is_some_and(|part| match &part.borrow().role {
                    Role::Solo => true,
                    Role::Leading(l) => l.engine.epoch() == epoch,
                    _ => false,
                })
            })
            .map(|(&p, _)| p)
            .collect();
        for p in lost {
            tracing::info!(partition = p, "offsets partition led elsewhere now: unloading its groups");
            self.loaded.borrow_mut().remove(&p);
            self.forget_partition(p);
        }
    }

    /// Appends commits (a `None` value deletes) to the group's partition and applies
    /// them; resolves once durable per the topic's flush policy.
    pub async fn write(
        &self,
        shard: &Shard,
        group: &str,
        entries: Vec<(String, i32, Option<Committed>)>,
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let now = crate::now_ms();
        let records: Vec<_> = entries
            .iter()
            .map(|(t, i, v)| new_record(Some(encode_key(group, t, *i)), v.as_ref().map(encode_value), now))
            .collect();
        let durable = self.append(shard, group, records)?;
        for (t, i, v) in entries {
            self.apply(group, &t, i, v);
        }
        if let Some(rx) = durable {
            // As Kafka (offsets.commit.timeout.ms, and its mapping of replication
            // errors): a commit the replicas do not take in time is retried by the
            // client at a coordinator that can.
            match tokio::time::timeout(COMMIT_TIMEOUT, rx).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(Error::NotEnoughReplicas(why) | Error::NotLeader(why)))) => {
                    return Err(Error::CoordinatorNotAvailable(why))
                }
                Ok(Ok(Err(e))) => return Err(e),
                Ok(Err(_)) => return Err(Error::ShuttingDown),
                Err(_) => {
                    return Err(Error::CoordinatorNotAvailable(format!(
                        "the offsets of {group} were not replicated within {COMMIT_TIMEOUT:?}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Appends records to the group's partition as one batch; the receiver resolves
    /// once they are durable per the topic's flush policy (in a cluster: once the
    /// write quorum holds them).
    fn append(&self, shard: &Shard, group: &str, mut records: Vec<Record>) -> Result<Option<DurableReceiver>> {
        let p = partition_for(group, OFFSETS_PARTITIONS);
        let tp = TopicPartition::new(OFFSETS_TOPIC, p);
        let part = shard.partition(&tp).ok_or_else(|| Error::CoordinatorNotAvailable(format!("{tp} is not open")))?;
        let bytes = encode_batch(&mut records, Compression::None).map_err(Error::Storage)?;
        let mut bytes = BytesMut::from(&bytes[..]);
        let (info, mut durable) = Partition::append(&part, &mut bytes, crate::now_ms()).map_err(|e| match e {
            Error::NotEnoughReplicas(why) | Error::NotLeader(why) => Error::CoordinatorNotAvailable(why),
            other => other,
        })?;
        if !matches!(part.borrow().role, crate::partition::Role::Solo) {
            // Committed once the write quorum holds them, as an acks=all produce.
            durable = Some(part.borrow_mut().wait_committed(info.last_offset.plus(1)));
        }
        Ok(durable)
    }

    /// Every group this shard coordinates: (id, protocol type, state name).
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let mut out: BTreeMap<String, (String, &'static str)> = BTreeMap::new();
        for g in self.groups.borrow().values() {
            if g.exists() {
                out.insert(g.id.clone(), (g.protocol_type().unwrap_or("consumer").to_string(), g.state().name()));
            }
        }
        for (id, o) in self.offsets.borrow().iter() {
            if !o.is_empty() {
                out.entry(id.clone()).or_insert_with(|| ("consumer".to_string(), "Empty"));
            }
        }
        out.into_iter().map(|(id, (t, s))| (id, t, s)).collect()
    }
}

/// Shared handle stored in the shard.
pub type CoordinatorRef = Rc<Coordinator>;

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

fn get_string(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let n = buf.get_i16();
    if n < 0 || buf.remaining() < n as usize {
        return None;
    }
    let s = buf.split_to(n as usize);
    String::from_utf8(s.to_vec()).ok()
}

/// The topics in a consumer's subscription metadata (ConsumerProtocolSubscription:
/// version, then an array of topic names); empty when it does not parse.
pub fn subscribed_topics(metadata: &Bytes) -> Vec<String> {
    let mut b = metadata.clone();
    if b.remaining() < 6 {
        return Vec::new();
    }
    b.get_i16();
    let n = b.get_i32();
    let mut topics = Vec::new();
    for _ in 0..n.max(0) {
        match get_string(&mut b) {
            Some(t) => topics.push(t),
            None => break,
        }
    }
    topics
}

/// Kafka's OffsetCommitKey v1: group, topic, partition.
pub fn encode_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    put_string(&mut b, group);
    put_string(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

pub fn decode_key(mut b: Bytes) -> Option<(String, String, i32)> {
    if b.remaining() < 2 {
        return None;
    }
    let version = b.get_i16();
    if !(0..=1).contains(&version) {
        return None; // group metadata (version 2) and others
    }
    let group = get_string(&mut b)?;
    let topic = get_string(&mut b)?;
    if b.remaining() < 4 {
        return None;
    }
    Some((group, topic, b.get_i32()))
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn get_nullable_string(buf: &mut Bytes) -> Option<Option<String>> {
    if buf.remaining() >= 2 && buf.chunk()[..2] == [0xff, 0xff] {
        buf.advance(2);
        return Some(None);
    }
    get_string(buf).map(Some)
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

fn get_bytes(buf: &mut Bytes) -> Option<Bytes> {
    if buf.remaining() < 4 {
        return None;
    }
    let n = buf.get_i32();
    if n < 0 {
        return Some(Bytes::new());
    }
    (buf.remaining() >= n as usize).then(|| buf.split_to(n as usize))
}

/// Kafka's GroupMetadataKey (key version 2): the group id.
pub fn encode_group_key(group: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(2);
    put_string(&mut b, group);
    b.freeze()
}

pub fn decode_group_key(mut b: Bytes) -> Option<String> {
    if b.remaining() < 2 || b.get_i16() != 2 {
        return None;
    }
    get_string(&mut b)
}

/// Kafka's GroupMetadataValue v3, with the state's wall-clock timestamp.
pub fn encode_group_value(g: &GroupSnapshot, state_timestamp: i64) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    put_string(&mut b, g.protocol_type.as_deref().unwrap_or("consumer"));
    b.put_i32(g.generation);
    put_nullable_string(&mut b, g.protocol.as_deref());
    put_nullable_string(&mut b, g.leader.as_deref());
    b.put_i64(state_timestamp);
    b.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_string(&mut b, &m.member_id);
        put_nullable_string(&mut b, m.instance_id.as_deref());
        put_string(&mut b, &m.client_id);
        put_string(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

/// Decodes GroupMetadataValue v3 (what DLog writes; Kafka writes v3 too for classic
/// groups) into the snapshot and its state timestamp.
pub fn decode_group_value(mut b: Bytes) -> Option<(GroupSnapshot, i64)> {
    if b.remaining() < 2 || b.get_i16() != 3 {
        return None;
    }
    let protocol_type = get_string(&mut b)?;
    if b.remaining() < 4 {
        return None;
    }
    let generation = b.get_i32();
    let protocol = get_nullable_string(&mut b)?;
    let leader = get_nullable_string(&mut b)?;
    if b.remaining() < 12 {
        return None;
    }
    let state_timestamp = b.get_i64();
    let n = b.get_i32();
    let mut members = Vec::new();
    for _ in 0..n.max(0) {
        let member_id = get_string(&mut b)?;
        let instance_id = get_nullable_string(&mut b)?;
        let client_id = get_string(&mut b)?;
        let client_host = get_string(&mut b)?;
        if b.remaining() < 8 {
            return None;
        }
        let rebalance_timeout_ms = b.get_i32();
        let session_timeout_ms = b.get_i32();
        let subscription = get_bytes(&mut b)?;
        let assignment = get_bytes(&mut b)?;
        members.push(MemberSnapshot {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    let protocol_type = (!protocol_type.is_empty()).then_some(protocol_type);
    Some((GroupSnapshot { protocol_type, generation, protocol, leader, members }, state_timestamp))
}

/// Kafka's OffsetCommitValue v3: offset, leader epoch, metadata, commit timestamp.
pub fn encode_value(c: &Committed) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i64(c.offset);
    b.put_i32(c.leader_epoch);
    put_string(&mut b, &c.metadata);
    b.put_i64(c.commit_timestamp);
    b.freeze()
}

pub fn decode_value(mut b: Bytes) -> Option<Committed> {
    if b.remaining() < 2 || b.get_i16() != 3 || b.remaining() < 12 {
        return None;
    }
    let offset = b.get_i64();
    let leader_epoch = b.get_i32();
    let metadata = get_string(&mut b)?;
    if b.remaining() < 8 {
        return None;
    }
    Some(Committed { offset, leader_epoch, metadata, commit_timestamp: b.get_i64() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_partitions_as_kafka_maps_them() {
        let h = "my-group".encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
        assert_eq!(partition_for("my-group", 50), h.abs() % 50);
        assert_eq!(partition_for("", 50), 0);
        for g in ["a", "group-1", "compat", "x".repeat(100).as_str()] {
            assert!((0..50).contains(&partition_for(g, 50)));
        }
    }

    #[test]
    fn subscriptions_name_their_topics() {
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i32(2);
        put_string(&mut b, "a");
        put_string(&mut b, "bb");
        b.put_i32(-1); // user data
        assert_eq!(subscribed_topics(&b.freeze()), vec!["a".to_string(), "bb".to_string()]);
        assert!(subscribed_topics(&Bytes::from_static(b"x")).is_empty());
    }

    #[test]
    fn keys_and_values_round_trip() {
        let k = encode_key("g", "t", 7);
        assert_eq!(decode_key(k), Some(("g".into(), "t".into(), 7)));
        let c = Committed { offset: 42, leader_epoch: -1, metadata: "m".into(), commit_timestamp: 5 };
        assert_eq!(decode_value(encode_value(&c)), Some(c));
        assert_eq!(decode_key(Bytes::from_static(&[0, 2, 0, 1, b'g'])), None, "group metadata keys are skipped");
    }

    #[test]
    fn group_metadata_round_trips() {
        assert_eq!(decode_group_key(encode_group_key("g1")), Some("g1".to_string()));
        assert_eq!(decode_group_key(encode_key("g", "t", 1)), None);
        let snap = GroupSnapshot {
            protocol_type: Some("consumer".into()),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            members: vec![MemberSnapshot {
                member_id: "m1".into(),
                instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group_value(encode_group_value(&snap, 99)), Some((snap.clone(), 99)));
        let empty = GroupSnapshot { protocol: None, leader: None, members: vec![], ..snap };
        assert_eq!(decode_group_value(encode_group_value(&empty, 5)), Some((empty, 5)));
        let mut bytes = encode_group_value(&GroupSnapshot { members: vec![], ..Default::default() }, 1).to_vec();
        bytes.truncate(bytes.len() - 2);
        assert_eq!(decode_group_value(Bytes::from(bytes)), None, "a truncated value is refused");
    }
}
