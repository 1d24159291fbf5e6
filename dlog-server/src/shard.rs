//! Thread-per-core shards. Each shard is one OS thread pinned to a core, running a
//! single-threaded tokio runtime, owning a set of partitions that only it touches.
//!
//! Architecture invariant: a partition's log is only ever used on its owner shard
//! ([`Shared::owner`]); every other shard reaches it by sending a [`Job`] over the
//! owner's bounded channel. There are no locks on the data path: the per-shard state is
//! in `Rc<RefCell<..>>` and never crosses a thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex, RwLock};

use dlog_core::{limits, Error, LeaderEpoch, Offset, Result, ShardId, TopicPartition};
use dlog_storage::PartitionLog;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::BrokerConfig;
use crate::partition::{Partition, PartitionRef};
use crate::producer_ids::ProducerIdAllocator;
use crate::topics::{TopicMeta, TopicRegistry};

/// Work sent to a shard: runs there, on its runtime, with its state.
pub type Job = Box<dyn FnOnce(Rc<Shard>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

pub enum ShardMsg {
    Run(Job),
    /// Close every partition cleanly and stop.
    Shutdown(oneshot::Sender<()>),
}

/// What all shards share: configuration, the topic registry and the channels.
pub struct Shared {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub topics: RwLock<TopicRegistry>,
    pub senders: Vec<mpsc::Sender<ShardMsg>>,
    /// High watermark of every open partition, so a fetch on any shard can wait for data.
    pub watches: RwLock<HashMap<TopicPartition, watch::Receiver<Offset>>>,
    /// Producer ids for InitProducerId (a cold path; the lock is never taken on a shard
    /// thread, see `handlers::init_producer_id`).
    pub producer_ids: Mutex<ProducerIdAllocator>,
    /// This broker's part of a multi-node cluster (None: a single node).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Connection limits and the node-wide request byte budget.
    pub gate: Arc<crate::gate::Gate>,
}

impl Shared {
    /// The shard that owns a partition: a stable hash of topic and partition.
    pub fn owner(&self, tp: &TopicPartition) -> ShardId {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        tp.topic.hash(&mut h);
        tp.partition.0.hash(&mut h);
        ShardId((h.finish() % self.senders.len() as u64) as usize)
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.topics.read().expect("topic registry lock").get(name).cloned()
    }

    pub fn watch(&self, tp: &TopicPartition) -> Option<watch::Receiver<Offset>> {
        self.watches.read().expect("watch lock").get(tp).cloned()
    }
}

/// One partition's in-sync replicas as its leader reports them: (partition, leader
/// epoch, replicas).
type IsrReport = (i32, i32, Vec<i32>);

/// One shard's state, alive on its own thread.
pub struct Shard {
    pub id: ShardId,
    pub shared: Arc<Shared>,
    partitions: RefCell<HashMap<TopicPartition, PartitionRef>>,
    /// The groups whose `__consumer_offsets` partition this shard owns.
    pub coordinator: crate::groups::Coordinator,
    /// Set while an in-sync replica report of this shard is on its way.
    reporting_isr: std::cell::Cell<bool>,
}

impl Shard {
    pub fn new(id: ShardId, shared: Arc<Shared>) -> Shard {
        let coordinator = crate::groups::Coordinator::new(shared.config.coordinator.clone());
        Shard { id, shared, partitions: RefCell::new(HashMap::new()), coordinator, reporting_isr: Default::default() }
    }

    pub fn partition(&self, tp: &TopicPartition) -> Option<PartitionRef> {
        self.partitions.borrow().get(tp).cloned()
    }

    /// Partition `tp` of this shard, if this node leads it: NOT_LEADER_OR_FOLLOWER for
    /// a partition held but not led, or led elsewhere (or not opened here yet), so that
    /// the client refreshes its metadata and goes to the leader.
    pub fn leading(&self, tp: &TopicPartition) -> Result<PartitionRef> {
        match self.partition(tp) {
            Some(p) if p.borrow().leader => Ok(p),
            // A disk error took it offline here: KAFKA_STORAGE_ERROR, as Kafka answers
            // for a partition of an offline log directory.
            Some(p) if p.borrow().is_offline() => Err(p.borrow().offline()),
            Some(_) => Err(Error::NotLeader(tp.to_string())),
            None if self.shared.cluster.is_some()
                && self.shared.topic(&tp.topic).is_some_and(|t| t.assignment(tp.partition.0).is_some()) =>
            {
                Err(Error::NotLeader(tp.to_string()))
            }
            None => Err(Error::UnknownTopicOrPartition(tp.to_string())),
        }
    }

    pub fn partitions(&self) -> Vec<PartitionRef> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Runs `f` on shard `target`: directly when that is this shard, else over its channel.
    pub async fn run_on<T, F, Fut>(self: &Rc<Self>, target: ShardId, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if target == self.id {
            return Ok(f(self.clone()).await);
        }
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |shard| {
            Box::pin(async move {
                let _ = tx.send(f(shard).await);
            })
        });
        self.shared.senders[target.0].send(ShardMsg::Run(job)).await.map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)
    }

    /// Runs `f` against partition `tp` on its owner shard.
    pub async fn with_partition<T, F>(self: &Rc<Self>, tp: TopicPartition, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&PartitionRef) -> Result<T> + Send + 'static,
    {
        let owner = self.shared.owner(&tp);
        self.run_on(owner, move |shard| async move { f(&shard.leading(&tp)?) }).await?
    }

    /// Opens (creating if needed) a partition this shard owns.
    pub fn open_partition(&self, meta: &TopicMeta, partition: i32) -> Result<()> {
        let tp = TopicPartition::new(meta.name.clone(), partition);
        debug_assert_eq!(self.shared.owner(&tp), self.id, "opened on a shard that does not own it");
        if self.partitions.borrow().contains_key(&tp) {
            return Ok(());
        }
        let dir = self.shared.config.data_dir.join(tp.dir_name());
        // A node that came back without its data opens the partitions it held empty:
        // they lack records they once acknowledged until they catch up.
        // The mark is written before the topic id, which makes the directory the
        // partition's: a crash in between marks it again at the next start.
        // A partition with no other replica has nowhere to catch up from: what it held
        // is gone, and it starts over empty rather than wait for ever.
        let fresh = !dir.join(TOPIC_ID_FILE).exists();
        let others =
            meta.assignment(partition).is_some_and(|a| a.replicas.iter().any(|&r| r != self.shared.config.node_id));
        if fresh && others && self.shared.cluster.as_ref().is_some_and(|c| c.lost_its_data()) {
            std::fs::create_dir_all(&dir).map_err(|e| Error::Storage(format!("{}: {e}", dir.display())))?;
            crate::replica::persist_lost_data(&dir, true)
                .map_err(|e| Error::Storage(format!("{tp}: cannot record that the replica lost its data: {e}")))?;
        }
        claim_partition_dir(&dir, meta)?;
        let log = PartitionLog::open(&dir, meta.config.clone(), crate::now_ms())?;
        let report = log.recovery_report();
        if report.truncated_bytes > 0 || report.indexes_rebuilt > 0 {
            tracing::warn!(partition = %tp, truncated_bytes = report.truncated_bytes,
                indexes_rebuilt = report.indexes_rebuilt, "recovered partition");
        }
        let (mut p, rx) = Partition::new(tp.clone(), meta.id, log);
        if self.shared.cluster.is_some() {
            p.role = crate::partition::Role::Idle;
            p.leader = false;
            p.lost_data = crate::replica::read_lost_data(&dir);
            let metadata_epoch = meta.assignment(partition).map_or(LeaderEpoch(0), |a| a.leader_epoch);
            p.sealed = match crate::replica::read_sealed(&dir) {
                Ok(sealed) => sealed,
                Err(e) => {
                    let rebuilt = crate::replica::rebuilt_seal(p.log.latest_epoch(), metadata_epoch);
                    tracing::error!(partition = %tp, error = %e, rebuilt = %rebuilt,
                        "the sealed epoch is unreadable; sealing at the newest epoch known instead");
                    crate::replica::persist_sealed(&dir, rebuilt)
                        .map_err(|e| Error::Storage(format!("{tp}: cannot rewrite the sealed epoch: {e}")))?;
                    rebuilt
                }
            };
            if p.lost_data && p.sealed < metadata_epoch {
                // Its seals went with its data: fence every epoch before the current one
                // again (no leader could have sealed it past the metadata's epoch).
                crate::replica::persist_sealed(&dir, metadata_epoch)
                    .map_err(|e| Error::Storage(format!("{tp}: cannot seal the replica: {e}")))?;
                p.sealed = metadata_epoch;
            }
            if p.lost_data {
                tracing::warn!(partition = %tp, sealed = %p.sealed,
                    "this replica lost its data: it catches up before it counts in read quorums or may lead");
            }
        }
        self.shared.watches.write().expect("watch lock").insert(tp.clone(), rx);
        let p = Rc::new(RefCell::new(p));
        self.partitions.borrow_mut().insert(tp, p.clone());
        if self.shared.cluster.is_some() {
            crate::replica::apply_assignment(&self.shared, &p, meta);
        }
        Ok(())
    }

    /// Opens every partition of `meta` that this shard owns and this node holds.
    pub fn open_topic(&self, meta: &TopicMeta) -> Result<()> {
        let me = self.shared.config.node_id;
        for p in 0..meta.partitions {
            if meta.is_replica(p, me) && self.shared.owner(&TopicPartition::new(meta.name.clone(), p)) == self.id {
                self.open_partition(meta, p)?;
            }
        }
        Ok(())
    }

    /// Closes and deletes every partition of `topic` on this shard.
    pub fn delete_topic(&self, topic: &str) -> Result<()> {
        let doomed: Vec<TopicPartition> =
            self.partitions.borrow().keys().filter(|tp| &*tp.topic == topic).cloned().collect();
        for tp in doomed {
            let p = self.partitions.borrow_mut().remove(&tp).expect("listed above");
            self.shared.watches.write().expect("watch lock").remove(&tp);
            {
                // Ends its push loops and recovery, which hold the partition too.
                let mut part = p.borrow_mut();
                if !matches!(part.role, crate::partition::Role::Solo) {
                    part.step_down("the topic is deleted");
                    part.role = crate::partition::Role::Idle;
                }
            }
            match Rc::try_unwrap(p) {
                Ok(cell) => cell.into_inner().log.delete()?,
                Err(p) => {
                    // A flush still holds it: remove the files now and tell the flush, which
                    // drops the last handle when it completes.
                    p.borrow_mut().deleted = true;
                    let dir = self.shared.config.data_dir.join(p.borrow().tp.dir_name());
                    std::fs::remove_dir_all(&dir).map_err(|e| Error::Storage(format!("{}: {e}", dir.display())))?;
                }
            }
        }
        Ok(())
    }

    /// Applies new configs, leaders and leader epochs to this shard's partitions of
    /// `meta`.
    pub fn reconfigure_topic(&self, meta: &TopicMeta) {
        let mine: Vec<PartitionRef> =
            self.partitions.borrow().values().filter(|p| p.borrow().tp.topic == meta.name).cloned().collect();
        for p in mine {
            p.borrow_mut().log.set_config(meta.config.clone());
            if self.shared.cluster.is_some() {
                crate::replica::apply_assignment(&self.shared, &p, meta);
            }
        }
    }

    /// Reports to the controller the partitions this shard leads whose in-sync
    /// replicas changed (one report in flight per shard; a failed one is sent again).
    fn report_isr(self: &Rc<Self>) {
        let Some(cluster) = self.shared.cluster.clone() else { return };
        if self.reporting_isr.get() {
            return;
        }
        let me = self.shared.config.node_id;
        let mut changed: std::collections::BTreeMap<Arc<str>, Vec<IsrReport>> = Default::default();
        let mut reported = Vec::new();
        for p in self.partitions() {
            let mut part = p.borrow_mut();
            let Some(isr) = crate::replica::in_sync(&part, me) else { continue };
            let epoch = part.leader_epoch;
            if part.reported_isr.as_ref().is_some_and(|(e, r)| *e == epoch && *r == isr) {
                continue;
            }
            part.reported_isr = Some((epoch, isr.clone()));
            changed.entry(part.tp.topic.clone()).or_default().push((
                part.tp.partition.0,
                epoch.0,
                isr.iter().map(|n| n.0).collect(),
            ));
            reported.push(p.clone());
        }
        if changed.is_empty() {
            return;
        }
        self.reporting_isr.set(true);
        let shard = self.clone();
        tokio::task::spawn_local(async move {
            let mut failed = false;
            for (name, partitions) in changed {
                let request =
                    crate::controller::ControllerRequest::SetIsr { name: name.to_string(), leader: me.0, partitions };
                if let Err(e) = cluster.forward(request, None).await {
                    tracing::debug!(topic = %name, error = %e, "in-sync replicas not reported; again later");
                    failed = true;
                }
            }
            if failed {
                for p in reported {
                    p.borrow_mut().reported_isr = None;
                }
            }
            shard.reporting_isr.set(false);
        });
    }

    /// Tells the controller about replicas here whose fitness to lead differs from what
    /// the metadata records: taken offline by a disk error, or having lost their data
    /// (unfit), or healthy again after a restart or a catch-up (fit). One report per
    /// change in flight; a failed one is sent again on a later tick.
    fn report_fitness(self: &Rc<Self>) {
        let Some(cluster) = self.shared.cluster.clone() else { return };
        let me = self.shared.config.node_id;
        for p in self.partitions() {
            let request = {
                let mut part = p.borrow_mut();
                let fit = part.fit_to_lead();
                if fit == part.recorded_fit || part.reported_fit == Some(fit) {
                    if fit == part.recorded_fit {
                        part.reported_fit = None;
                    }
                    continue;
                }
                part.reported_fit = Some(fit);
                crate::controller::ControllerRequest::ReplicaFit {
                    name: part.tp.topic.to_string(),
                    partition: part.tp.partition.0,
                    node: me.0,
                    fit,
                }
            };
            let cluster = cluster.clone();
            tokio::task::spawn_local(async move {
                if let Err(e) = cluster.forward(request, None).await {
                    tracing::warn!(partition = %p.borrow().tp, error = %e, "fitness to lead not reported; again later");
                    p.borrow_mut().reported_fit = None;
                }
            });
        }
    }

    /// Periodic work: flushes due by `flush.ms`, time-based rolls, retention.
    async fn housekeeping(self: Rc<Self>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let retention_every = self.shared.config.retention_check_interval_ms as i64;
        let mut last_retention = crate::now_ms();
        let expire_every = self.coordinator.config.offsets_retention_check_interval_ms;
        let mut last_expiry = crate::now_ms();
        loop {
            tick.tick().await;
            self.coordinator.tick(&self);
            self.report_isr();
            self.report_fitness();
            if crate::now_ms() - last_expiry >= expire_every {
                last_expiry = crate::now_ms();
                self.coordinator.expire_offsets(&self, last_expiry).await;
            }
            let now = crate::now_ms();
            let run_retention = now - last_retention >= retention_every;
            if run_retention {
                last_retention = now;
            }
            for p in self.partitions() {
                let due = {
                    let mut part = p.borrow_mut();
                    if let Err(e) = part.log.maybe_roll(now) {
                        tracing::error!(partition = %part.tp, error = %e, "segment roll failed");
                    }
                    if run_retention {
                        match part.log.apply_retention(now) {
                            Ok(o) if o.segments_deleted > 0 => tracing::info!(partition = %part.tp,
                                segments = o.segments_deleted, bytes = o.bytes_deleted,
                                log_start_offset = %o.log_start_offset, "retention deleted segments"),
                            Ok(_) => {}
                            Err(e) => tracing::error!(partition = %part.tp, error = %e, "retention failed"),
                        }
                    }
                    part.log.flush_due(now)
                };
                if due {
                    Partition::kick_flush(&p);
                }
            }
        }
    }

    /// Closes every partition: flush, fsync, clean-shutdown marker.
    fn close_all(&self) {
        let all: Vec<(TopicPartition, PartitionRef)> = self.partitions.borrow_mut().drain().collect();
        for (tp, p) in all {
            match Rc::try_unwrap(p) {
                Ok(cell) => {
                    if let Err(e) = cell.into_inner().log.close() {
                        tracing::error!(partition = %tp, error = %e, "close failed");
                    }
                }
                Err(p) => {
                    if let Err(e) = p.borrow_mut().log.flush() {
                        tracing::error!(partition = %tp, error = %e, "flush at shutdown failed");
                    }
                }
            }
        }
    }
}

/// The file in a partition's directory naming the topic (by id) it belongs to.
const TOPIC_ID_FILE: &str = "topic.id";

/// Makes sure `dir` holds a partition of `meta` and not of an earlier topic of the
/// same name (deleted while this node was away): a directory recording another valid
/// topic id is removed, with a warning, before the partition is created afresh. A
/// missing, empty or unreadable record is never a reason to delete: it is rewritten
/// (atomically, fsynced) and the data kept.
fn claim_partition_dir(dir: &std::path::Path, meta: &TopicMeta) -> Result<()> {
    let io = |e: std::io::Error| Error::Storage(format!("{}: {e}", dir.display()));
    let recorded = match std::fs::read_to_string(dir.join(TOPIC_ID_FILE)) {
        Ok(text) => dlog_core::TopicId::from_hex(text.trim()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    match recorded {
        Some(id) if id == meta.id => return Ok(()),
        Some(id) => {
            tracing::warn!(dir = %dir.display(), old_topic_id = %id.to_hex(), topic_id = %meta.id.to_hex(),
                "removing the partition of a deleted topic of the same name");
            std::fs::remove_dir_all(dir).map_err(io)?;
        }
        None => {}
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    dlog_storage::replace_file_atomically(dir, TOPIC_ID_FILE, meta.id.to_hex().as_bytes())
        .map_err(|e| Error::Storage(e.to_string()))
}

/// A running shard thread.
pub struct ShardThread {
    pub join: std::thread::JoinHandle<()>,
}

/// Starts shard `id` on its own thread, pinned to `core` when given, opening the
/// partitions it owns before it reports ready.
pub fn spawn_shard(
    id: ShardId,
    shared_rx: std::sync::mpsc::Receiver<Arc<Shared>>,
    mut rx: mpsc::Receiver<ShardMsg>,
    core: Option<core_affinity::CoreId>,
    ready: std::sync::mpsc::Sender<Result<()>>,
) -> std::io::Result<ShardThread> {
    let join = std::thread::Builder::new().name(format!("dlog-shard-{}", id.0)).spawn(move || {
        if let Some(core) = core {
            core_affinity::set_for_current(core);
        }
        let Ok(shared) = shared_rx.recv() else { return };
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(Error::Storage(format!("shard runtime: {e}"))));
                return;
            }
        };
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let shard = Rc::new(Shard::new(id, shared.clone()));
            let topics: Vec<TopicMeta> = shared.topics.read().expect("topic registry lock").list().cloned().collect();
            let opened = topics.iter().try_for_each(|t| shard.open_topic(t));
            let failed = opened.is_err();
            let _ = ready.send(opened);
            if failed {
                return;
            }
            let housekeeping = tokio::task::spawn_local(shard.clone().housekeeping());
            let mut done = None;
            while let Some(msg) = rx.recv().await {
                match msg {
                    ShardMsg::Run(job) => {
                        tokio::task::spawn_local(job(shard.clone()));
                    }
                    ShardMsg::Shutdown(tx) => {
                        done = Some(tx);
                        break;
                    }
                }
            }
            housekeeping.abort();
            shard.close_all();
            if let Some(tx) = done {
                let _ = tx.send(());
            }
        });
    })?;
    Ok(ShardThread { join })
}

/// The bounded channel of a shard.
pub fn shard_channel() -> (mpsc::Sender<ShardMsg>, mpsc::Receiver<ShardMsg>) {
    mpsc::channel(limits::SHARD_CHANNEL_DEPTH)
}
