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

use dlog_core::{limits, Error, Offset, Result, ShardId, TopicPartition};
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

/// One shard's state, alive on its own thread.
pub struct Shard {
    pub id: ShardId,
    pub shared: Arc<Shared>,
    partitions: RefCell<HashMap<TopicPartition, PartitionRef>>,
    /// The groups whose `__consumer_offsets` partition this shard owns.
    pub coordinator: crate::groups::Coordinator,
}

impl Shard {
    pub fn new(id: ShardId, shared: Arc<Shared>) -> Shard {
        let coordinator = crate::groups::Coordinator::new(shared.config.coordinator.clone());
        Shard { id, shared, partitions: RefCell::new(HashMap::new()), coordinator }
    }

    pub fn partition(&self, tp: &TopicPartition) -> Option<PartitionRef> {
        self.partitions.borrow().get(tp).cloned()
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
        self.run_on(owner, move |shard| async move {
            match shard.partition(&tp) {
                Some(p) => f(&p),
                None => Err(Error::UnknownTopicOrPartition(tp.to_string())),
            }
        })
        .await?
    }

    /// Opens (creating if needed) a partition this shard owns.
    pub fn open_partition(&self, meta: &TopicMeta, partition: i32) -> Result<()> {
        let tp = TopicPartition::new(meta.name.clone(), partition);
        debug_assert_eq!(self.shared.owner(&tp), self.id, "opened on a shard that does not own it");
        if self.partitions.borrow().contains_key(&tp) {
            return Ok(());
        }
        let dir = self.shared.config.data_dir.join(tp.dir_name());
        let log = PartitionLog::open(&dir, meta.config.clone(), crate::now_ms())?;
        let report = log.recovery_report();
        if report.truncated_bytes > 0 || report.indexes_rebuilt > 0 {
            tracing::warn!(partition = %tp, truncated_bytes = report.truncated_bytes,
                indexes_rebuilt = report.indexes_rebuilt, "recovered partition");
        }
        let (p, rx) = Partition::new(tp.clone(), meta.id, log);
        self.shared.watches.write().expect("watch lock").insert(tp.clone(), rx);
        self.partitions.borrow_mut().insert(tp, Rc::new(RefCell::new(p)));
        Ok(())
    }

    /// Opens every partition of `meta` that this shard owns.
    pub fn open_topic(&self, meta: &TopicMeta) -> Result<()> {
        for p in 0..meta.partitions {
            if self.shared.owner(&TopicPartition::new(meta.name.clone(), p)) == self.id {
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

    /// Applies new configs to this shard's partitions of `meta`.
    pub fn reconfigure_topic(&self, meta: &TopicMeta) {
        for p in self.partitions.borrow().values() {
            let mut p = p.borrow_mut();
            if p.tp.topic == meta.name {
                p.log.set_config(meta.config.clone());
            }
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
