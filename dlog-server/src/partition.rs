//! A partition as its owning shard holds it: the log, its leader epoch, the watch that
//! wakes waiting fetches, and group commit.
//!
//! Group commit: at most one fsync per partition is in flight. Appends keep landing in
//! the page cache while it runs; when it completes, every waiter whose records it
//! covered is released and, if more waiters arrived meanwhile, the next fsync starts and
//! covers all of them at once. So a burst of flush-every-write produces costs one fsync
//! per round trip to the disk, never one per record.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Instant;

use dlog_core::{Error, LeaderEpoch, NodeId, Offset, Result, TopicId, TopicPartition};
use dlog_replication::{Follower, Leader, Quorums, Replica};
use dlog_storage::{AppendInfo, PartitionLog};
use tokio::sync::{oneshot, watch};

/// Resolves once the records it waits for are fsynced (or the fsync failed).
pub type DurableReceiver = oneshot::Receiver<Result<()>>;
/// Resolves once the high watermark passes the records it waits for (acks=all), or
/// fails when this node stops leading first.
pub type CommitReceiver = oneshot::Receiver<Result<()>>;

/// What this node does for a partition (see [`crate::replica`]).
#[derive(Debug)]
pub enum Role {
    /// A single node: every appended record is committed.
    Solo,
    /// A cluster member neither leading nor following an epoch yet.
    Idle,
    /// The leader of this epoch, sealing it and catching up before it opens it.
    Recovering(LeaderEpoch),
    /// The leader (sequencer) of an open epoch.
    Leading(Box<Leading>),
    /// A replica following the leader's pushes.
    Following(Follower),
    /// The log failed a write or an fsync on this node (a disk error): nothing more is
    /// appended, acknowledged or reported durable from it until the node reopens it
    /// (restarts). Other replicas lead.
    Offline(String),
}

/// A leader's state: the engine, when each follower last answered, and when each last
/// held everything this leader had sent it (Kafka's last caught-up time).
#[derive(Debug)]
pub struct Leading {
    pub engine: Leader,
    pub contact: BTreeMap<NodeId, Instant>,
    pub caught_up: BTreeMap<NodeId, Instant>,
}

pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: TopicId,
    pub log: PartitionLog,
    pub leader_epoch: LeaderEpoch,
    /// Whether this node leads the partition (always, on a single node): it serves
    /// fetches, and produces once its epoch is open. A partition held but not led
    /// answers NOT_LEADER_OR_FOLLOWER.
    pub leader: bool,
    pub role: Role,
    /// The replicas and quorums of a cluster's partition (this node alone on a single node).
    pub replicas: Vec<NodeId>,
    pub quorums: Quorums,
    /// The newest epoch this replica was sealed at (persisted before it is answered).
    pub sealed: LeaderEpoch,
    /// The in-sync replicas this leader last reported to the controller.
    pub reported_isr: Option<(LeaderEpoch, Vec<NodeId>)>,
    /// This replica's log lacks records it once held: the node lost its data (a wiped
    /// or replaced disk) and has not caught up with a leader since. Its answer to a
    /// seal does not count toward the read quorum (see [`crate::replica`]).
    pub lost_data: bool,
    /// Whether the metadata lets this replica lead (its node has not reported it
    /// unfit), as of the last image applied.
    pub recorded_fit: bool,
    /// What this node last reported to the controller about this replica's fitness to
    /// lead, while the metadata does not show it yet; `None`: nothing in flight.
    pub reported_fit: Option<bool>,
    /// The high watermark of a cluster's partition (a single node's is its log end).
    hw: Offset,
    /// acks=all produces waiting for the high watermark to pass their records.
    commit_waiters: VecDeque<(Offset, oneshot::Sender<Result<()>>)>,
    /// The log end offset, which wakes the leader's pushes to followers.
    pub log_end: watch::Sender<Offset>,
    /// The high watermark, published for fetches waiting on any shard.
    watch: watch::Sender<Offset>,
    flushing: bool,
    /// Set when the topic is deleted while an fsync is in flight: its completion must
    /// not write checkpoints into a directory that is gone.
    pub deleted: bool,
    flush_waiters: VecDeque<(Offset, oneshot::Sender<Result<()>>)>,
}

pub type PartitionRef = Rc<RefCell<Partition>>;

impl Partition {
    pub fn new(tp: TopicPartition, topic_id: TopicId, log: PartitionLog) -> (Partition, watch::Receiver<Offset>) {
        let (watch, rx) = watch::channel(log.log_end_offset());
        let log_end = watch::channel(log.log_end_offset()).0;
        let p = Partition {
            tp,
            topic_id,
            log,
            leader_epoch: LeaderEpoch(0),
            leader: true,
            role: Role::Solo,
            replicas: Vec::new(),
            quorums: Quorums::new(1, 1, 1).expect("one replica"),
            sealed: crate::replica::NEVER_SEALED,
            reported_isr: None,
            lost_data: false,
            recorded_fit: true,
            reported_fit: None,
            hw: Offset::ZERO,
            commit_waiters: VecDeque::new(),
            log_end,
            watch,
            flushing: false,
            deleted: false,
            flush_waiters: VecDeque::new(),
        };
        (p, rx)
    }

    /// The high watermark: consumers read below it. With one replica, every appended
    /// record is committed.
    pub fn high_watermark(&self) -> Offset {
        match self.role {
            Role::Solo => self.log.log_end_offset(),
            _ => self.hw,
        }
    }

    /// Whether produces are accepted: on a single node, or by the leader of an open epoch.
    pub fn accepts_writes(&self) -> Result<()> {
        match &self.role {
            Role::Solo | Role::Leading(_) => Ok(()),
            Role::Recovering(epoch) => Err(Error::NotEnoughReplicas(format!(
                "{}: leader epoch {epoch} is opening; it waits for a read quorum of {} replicas",
                self.tp,
                self.quorums.read()
            ))),
            Role::Idle | Role::Following(_) => Err(Error::NotLeader(self.tp.to_string())),
            Role::Offline(why) => Err(offline_error(&self.tp, why)),
        }
    }

    /// Whether a disk error took this replica offline.
    pub fn is_offline(&self) -> bool {
        matches!(self.role, Role::Offline(_))
    }

    /// The error a request to this replica gets while a disk error keeps it offline.
    pub fn offline(&self) -> Error {
        match &self.role {
            Role::Offline(why) => offline_error(&self.tp, why),
            _ => offline_error(&self.tp, "not offline"),
        }
    }

    /// Whether this replica may lead: not offline, and holding what it once held.
    pub fn fit_to_lead(&self) -> bool {
        !self.is_offline() && !self.lost_data
    }

    /// Takes this replica offline after a disk error (a failed write or fsync): fails
    /// every waiting produce and flush, stops the log (nothing written before may be
    /// reported durable now: fsyncgate), and stops leading or following until the
    /// node reopens it. The shard reports it unfit to the controller, which moves the
    /// leadership. Counted in `dlog_partition_disk_errors_total`.
    pub fn go_offline(&mut self, why: &str) {
        if self.is_offline() {
            return;
        }
        tracing::error!(partition = %self.tp, epoch = %self.leader_epoch, error = why,
            "disk error: the partition goes offline on this node until it is restarted");
        metrics::counter!("dlog_partition_disk_errors_total").increment(1);
        metrics::gauge!("dlog_partitions_offline").increment(1.0);
        self.log.fail_flush();
        let error = offline_error(&self.tp, why);
        for (_, tx) in self.commit_waiters.drain(..).chain(self.flush_waiters.drain(..)) {
            let _ = tx.send(Err(error.clone()));
        }
        self.leader = false;
        self.role = Role::Offline(why.to_string());
        self.reported_fit = None;
    }

    /// Takes this replica offline if `e` is a disk error; passes `e` on.
    pub fn on_storage_error(&mut self, e: dlog_storage::StorageError) -> Error {
        if is_disk_error(&e) {
            self.go_offline(&e.to_string());
            return offline_error(&self.tp, &e.to_string());
        }
        Error::from(e)
    }

    /// How far this replica holds the log for the quorum: its log end with write
    /// caching, else only what is fsynced.
    pub fn position(&self) -> Offset {
        if self.log.config().write_caching {
            self.log.log_end_offset()
        } else {
            self.log.flushed_offset().min(self.log.log_end_offset())
        }
    }

    /// Moves the high watermark (never back while leading an epoch), wakes fetches and
    /// completes the acks=all produces it covers.
    pub fn set_high_watermark(&mut self, hw: Offset) {
        let hw = hw.min(self.log.log_end_offset());
        if matches!(self.role, Role::Leading(_)) {
            assert!(hw >= self.hw, "the high watermark of {} moved back from {} to {hw}", self.tp, self.hw);
        }
        self.hw = hw;
        self.watch.send_replace(hw);
        while let Some((target, _)) = self.commit_waiters.front() {
            if *target > hw {
                break;
            }
            let (_, tx) = self.commit_waiters.pop_front().expect("front exists");
            let _ = tx.send(Ok(()));
        }
    }

    /// A receiver that resolves once the high watermark reaches `target`.
    pub fn wait_committed(&mut self, target: Offset) -> CommitReceiver {
        let (tx, rx) = oneshot::channel();
        if self.high_watermark() >= target {
            let _ = tx.send(Ok(()));
        } else {
            self.commit_waiters.push_back((target, tx));
        }
        rx
    }

    /// Gives up leading: fails waiting acks=all produces (their records may or may not
    /// survive under the next leader; the client retries) and follows from now on.
    pub fn step_down(&mut self, why: &str) {
        if self.is_offline() {
            return;
        }
        if matches!(self.role, Role::Leading(_) | Role::Recovering(_)) {
            tracing::info!(partition = %self.tp, epoch = %self.leader_epoch, why, "stepping down");
        }
        for (_, tx) in self.commit_waiters.drain(..) {
            let _ = tx.send(Err(Error::NotLeader(format!("{}: {why}", self.tp))));
        }
        self.leader = false;
        if !matches!(self.role, Role::Following(_)) {
            self.role = Role::Following(self.new_follower());
        }
    }

    /// A follower engine for this replica's log as it is now.
    pub fn new_follower(&self) -> Follower {
        let end = self.log.log_end_offset();
        let last = self.log.latest_epoch().unwrap_or(LeaderEpoch(-1));
        Follower::new(Replica::new(self.sealed), end, last, self.hw.min(end))
    }

    /// Tells the leader engine how far this replica holds the log; moves the high
    /// watermark when that completes a write quorum.
    pub fn leader_appended(&mut self) {
        let position = self.position();
        let end = self.log.log_end_offset();
        let moved = match &mut self.role {
            Role::Leading(l) => l.engine.appended_durably(end, position),
            _ => None,
        };
        if let Some(hw) = moved {
            self.set_high_watermark(hw);
        }
    }

    /// Appends validated batches (or recognises an idempotent producer's retry,
    /// `info.duplicate`). When the topic fsyncs every write, also returns a receiver
    /// that resolves once the batches are durable.
    pub fn append(
        this: &PartitionRef,
        batches: &mut [u8],
        now_ms: i64,
    ) -> Result<(AppendInfo, Option<DurableReceiver>)> {
        let mut p = this.borrow_mut();
        let epoch = p.leader_epoch;
        p.accepts_writes()?;
        let info = p.log.append(batches, epoch, now_ms).map_err(|e| p.on_storage_error(e))?;
        if !info.duplicate {
            debug_assert_eq!(p.log.log_end_offset(), info.last_offset.plus(1));
            let end = p.log.log_end_offset();
            p.log_end.send_replace(end);
            match p.role {
                Role::Solo => {
                    p.watch.send_replace(end);
                }
                _ => p.leader_appended(),
            }
        }
        // A retried batch is answered with the original's offsets, which may not be
        // durable yet: it waits for them like the original does.
        let durable = if p.log.config().flush_every_write() {
            let (tx, rx) = oneshot::channel();
            p.flush_waiters.push_back((info.last_offset.plus(1), tx));
            Some(rx)
        } else {
            None
        };
        let due = durable.is_some() || p.log.flush_due(now_ms);
        drop(p);
        if due {
            Partition::kick_flush(this);
        }
        Ok((info, durable))
    }

    /// A receiver that resolves once everything up to `target` is fsynced.
    pub fn wait_durable(this: &PartitionRef, target: Offset) -> DurableReceiver {
        let (tx, rx) = oneshot::channel();
        this.borrow_mut().flush_waiters.push_back((target, tx));
        Partition::kick_flush(this);
        rx
    }

    /// Starts an fsync unless one is running (that one's completion starts the next).
    pub fn kick_flush(this: &PartitionRef) {
        let job = {
            let mut p = this.borrow_mut();
            if p.flushing {
                return;
            }
            match p.log.begin_flush() {
                Some(job) => {
                    p.flushing = true;
                    job
                }
                None if p.log.is_failed() => {
                    p.go_offline("the log failed an earlier write or fsync");
                    let failed = Error::Storage(format!("{}: the log failed an fsync; it takes no writes", p.tp));
                    p.release_waiters(Some(failed));
                    return;
                }
                None => {
                    p.release_waiters(None);
                    return;
                }
            }
        };
        let this = this.clone();
        tokio::task::spawn_local(async move {
            let outcome = tokio::task::spawn_blocking(move || {
                let r = job.run();
                (job, r)
            })
            .await;
            let again = {
                let mut p = this.borrow_mut();
                p.flushing = false;
                if p.deleted {
                    let gone = Error::UnknownTopicOrPartition(p.tp.to_string());
                    p.release_waiters(Some(gone));
                    return;
                }
                let error = match outcome {
                    Ok((job, Ok(()))) => p.log.complete_flush(job).err().map(Error::from),
                    Ok((_, Err(e))) => Some(Error::Storage(format!("fsync of {}: {e}", p.tp))),
                    Err(e) => Some(Error::Storage(format!("fsync task of {}: {e}", p.tp))),
                };
                if let Some(e) = &error {
                    tracing::error!(partition = %p.tp, error = %e, "fsync failed");
                    // fsyncgate: nothing written before may be reported durable now.
                    p.go_offline(&e.to_string());
                }
                p.release_waiters(error);
                if !p.log.config().write_caching {
                    // Without write caching the leader counts only fsynced records.
                    p.leader_appended();
                }
                !p.flush_waiters.is_empty()
            };
            if again {
                Partition::kick_flush(&this);
            }
        });
    }

    /// Releases waiters covered by the flushed offset; on error, fails all of them.
    fn release_waiters(&mut self, error: Option<Error>) {
        let flushed = self.log.flushed_offset();
        while let Some((target, _)) = self.flush_waiters.front() {
            if error.is_none() && *target > flushed {
                break;
            }
            let (_, tx) = self.flush_waiters.pop_front().expect("front exists");
            let _ = tx.send(match &error {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            });
        }
    }

    /// Checks a client's view of the leader epoch (KIP-320); -1 means "not checked".
    pub fn check_epoch(&self, current_leader_epoch: i32) -> Result<()> {
        let current = self.leader_epoch.0;
        if current_leader_epoch < 0 || current_leader_epoch == current {
            Ok(())
        } else if current_leader_epoch < current {
            Err(Error::FencedLeaderEpoch { client: current_leader_epoch, current })
        } else {
            Err(Error::UnknownLeaderEpoch { client: current_leader_epoch, current })
        }
    }
}

/// What a produce or fetch to a replica taken offline by a disk error gets:
/// KAFKA_STORAGE_ERROR, which clients retry after refreshing their metadata.
fn offline_error(tp: &TopicPartition, why: &str) -> Error {
    Error::Storage(format!("{tp} is offline on this node after a disk error ({why}); another replica leads"))
}

/// Whether `e` is the disk failing (an I/O error, or a log stopped by one) rather than
/// the request's fault.
pub fn is_disk_error(e: &dlog_storage::StorageError) -> bool {
    matches!(e, dlog_storage::StorageError::Io { .. } | dlog_storage::StorageError::Failed(_))
}
