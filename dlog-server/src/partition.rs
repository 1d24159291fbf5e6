//! A partition as its owning shard holds it: the log, its leader epoch, the watch that
//! wakes waiting fetches, and group commit.
//!
//! Group commit: at most one fsync per partition is in flight. Appends keep landing in
//! the page cache while it runs; when it completes, every waiter whose records it
//! covered is released and, if more waiters arrived meanwhile, the next fsync starts and
//! covers all of them at once. So a burst of flush-every-write produces costs one fsync
//! per round trip to the disk, never one per record.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use dlog_core::{Error, LeaderEpoch, Offset, Result, TopicId, TopicPartition};
use dlog_storage::{AppendInfo, PartitionLog};
use tokio::sync::{oneshot, watch};

/// Resolves once the records it waits for are fsynced (or the fsync failed).
pub type DurableReceiver = oneshot::Receiver<Result<()>>;

pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: TopicId,
    pub log: PartitionLog,
    pub leader_epoch: LeaderEpoch,
    /// Whether this node leads the partition (always, on a single node). A partition
    /// held but not led answers NOT_LEADER_OR_FOLLOWER.
    pub leader: bool,
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
        let p = Partition {
            tp,
            topic_id,
            log,
            leader_epoch: LeaderEpoch(0),
            leader: true,
            watch,
            flushing: false,
            deleted: false,
            flush_waiters: VecDeque::new(),
        };
        (p, rx)
    }

    /// The high watermark: with one replica, every appended record is committed.
    pub fn high_watermark(&self) -> Offset {
        self.log.log_end_offset()
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
        let info = p.log.append(batches, epoch, now_ms)?;
        if !info.duplicate {
            debug_assert_eq!(p.log.log_end_offset(), info.last_offset.plus(1));
            let hw = p.high_watermark();
            p.watch.send_replace(hw);
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
                }
                p.release_waiters(error);
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
