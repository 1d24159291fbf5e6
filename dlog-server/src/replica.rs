//! Partition replication in a cluster: the server's side of `dlog-replication`.
//!
//! The engine decides; this module moves bytes and touches logs. Everything about a
//! partition runs on its owner shard, so the engine state lives in the partition
//! ([`Role`]) behind the shard's `RefCell`, never across threads.
//!
//! - **Leading.** When the metadata names this node leader at epoch `e`, it seals `e`
//!   on the replicas ([`kind::SEAL`]), waits for R answers (its own included; one in an
//!   AP topic), catches up from the most advanced ([`kind::EPOCH_END`] to cut its own
//!   divergent tail, [`kind::READ`] for the records), appends a LeaderChange control
//!   batch that opens `e`, and only then leads: one push loop per follower sends the
//!   log from where that follower ends ([`kind::PUSH`]), one request in flight,
//!   carrying the high watermark; an idle loop sends an empty push as a heartbeat.
//! - **Following.** A push from a new epoch is answered "reconcile"; the leader sends
//!   where the follower's last epoch ends in its log ([`kind::RECONCILE`]), the follower
//!   truncates there (and before any epoch the leader lacks) and answers its new end.
//!   With write caching a follower answers once the batch is in its log (the page
//!   cache); without, once it is fsynced.
//! - **Restarts.** A leader never writes an epoch twice across lives: a node told to
//!   lead an epoch it was already sealed at (it restarted within its session) asks the
//!   controller for a new epoch first.
//!
//! Messages are protobuf (prost derives, no `.proto` file): one request and one reply
//! type with a `kind`, on the internal RPC channel [`CHANNEL`].

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dlog_core::{Error, LeaderEpoch, NodeId, Offset, TopicPartition};
use dlog_replication::{Leader, LogPosition, Push, PushAnswer, Quorums, Recovery};
use dlog_storage::batch::validate_batches;
use prost::Message;

use crate::partition::{Leading, Partition, PartitionRef, Role};
use crate::shard::{Shard, ShardMsg, Shared};
use crate::topics::TopicMeta;

/// The internal RPC channel of partition replication.
pub const CHANNEL: &str = "replicate";
/// The most bytes one push or read carries.
const PUSH_BYTES_MAX: usize = 1024 * 1024;
/// How long a replication call may take before it is retried.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// An idle leader sends an empty push this often: the followers learn the high
/// watermark and the leader learns who is still there.
const HEARTBEAT: Duration = Duration::from_millis(100);
/// A follower silent for this long no longer counts as in the quorum (as ISR).
pub const CONTACT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a leader that cannot gather its read quorum asks again.
const SEAL_RETRY: Duration = Duration::from_millis(200);
/// At most this many rounds of "where does my last epoch end" (one per epoch a log
/// holds that the other lacks; more means something is wrong).
const RECONCILE_ROUNDS: usize = 64;
/// The first and longest pause after repeated gap answers at one offset.
const GAP_BACKOFF_MIN: Duration = Duration::from_millis(10);
const GAP_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a new leader of an available topic listens for its replicas' positions.
const AP_LISTEN: Duration = Duration::from_millis(300);

/// Request kinds.
pub mod kind {
    /// Leader to follower: records from `offset` (`count` records, maybe none).
    pub const PUSH: i32 = 1;
    /// Leader to follower: its end of epoch `answer_epoch` is `answer_offset`.
    pub const RECONCILE: i32 = 2;
    /// New leader to replica: seal `epoch`, answer where your log ends.
    pub const SEAL: i32 = 3;
    /// Where does epoch `epoch` end in your log (OffsetForLeaderEpoch)?
    pub const EPOCH_END: i32 = 4;
    /// Send your records from `offset` (a new leader catching up).
    pub const READ: i32 = 5;
}

/// Reply kinds.
pub mod reply {
    /// Done: `offset` is the replica's position (log end), `epoch` its last epoch
    /// where that matters, `records` for a read.
    pub const OK: i32 = 1;
    /// The push started past the follower's end: resend from `offset`.
    pub const GAP: i32 = 2;
    /// The follower must reconcile first; `epoch` is its last epoch.
    pub const RECONCILE: i32 = 3;
    /// The replica was sealed at the newer `epoch`.
    pub const FENCED: i32 = 4;
    /// The replica cannot answer now (`error` says why); retry later.
    pub const UNAVAILABLE: i32 = 5;
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReplicaRequest {
    #[prost(int32, tag = "1")]
    pub kind: i32,
    #[prost(string, tag = "2")]
    pub topic: String,
    #[prost(int32, tag = "3")]
    pub partition: i32,
    #[prost(bytes = "bytes", tag = "4")]
    pub topic_id: Bytes,
    #[prost(int32, tag = "5")]
    pub epoch: i32,
    #[prost(int64, tag = "6")]
    pub offset: i64,
    #[prost(int64, tag = "7")]
    pub count: i64,
    #[prost(int64, tag = "8")]
    pub high_watermark: i64,
    #[prost(int32, tag = "9")]
    pub answer_epoch: i32,
    #[prost(int64, tag = "10")]
    pub answer_offset: i64,
    #[prost(bytes = "bytes", tag = "11")]
    pub records: Bytes,
    /// For a reconcile: the follower's last epoch that `answer_*` answers. A follower
    /// whose last epoch changed since (it restarted) asks again.
    #[prost(int32, tag = "12")]
    pub asked_epoch: i32,
    /// For a push: the leader's log start offset (DeleteRecords moves it; followers
    /// follow, so that a later leader does not bring deleted records back).
    #[prost(int64, tag = "13")]
    pub log_start: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReplicaReply {
    #[prost(int32, tag = "1")]
    pub kind: i32,
    #[prost(int32, tag = "2")]
    pub epoch: i32,
    #[prost(int64, tag = "3")]
    pub offset: i64,
    #[prost(bytes = "bytes", tag = "4")]
    pub records: Bytes,
    #[prost(string, tag = "5")]
    pub error: String,
    /// For a read: the replica's log start offset (a reader whose log ends below it
    /// starts its log over there).
    #[prost(int64, tag = "6")]
    pub log_start: i64,
}

impl ReplicaRequest {
    /// The request as it travels on [`CHANNEL`] (protobuf).
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(self.encode_to_vec())
    }

    /// The request in `bytes`, as a replica receives it; an error for anything else.
    pub fn from_bytes(bytes: Bytes) -> Result<ReplicaRequest, String> {
        ReplicaRequest::decode(bytes).map_err(|e| format!("bad replication request: {e}"))
    }
}

impl ReplicaReply {
    /// The reply as it travels on [`CHANNEL`] (protobuf).
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(self.encode_to_vec())
    }

    /// The reply in `bytes`, as the asking node receives it; an error for anything else.
    pub fn from_bytes(bytes: Bytes) -> Result<ReplicaReply, String> {
        ReplicaReply::decode(bytes).map_err(|e| format!("bad replication reply: {e}"))
    }

    fn ok(epoch: i32, offset: Offset) -> ReplicaReply {
        ReplicaReply { kind: reply::OK, epoch, offset: offset.0, ..Default::default() }
    }

    fn unavailable(why: impl Into<String>) -> ReplicaReply {
        ReplicaReply { kind: reply::UNAVAILABLE, error: why.into(), ..Default::default() }
    }

    fn fenced(sealed: LeaderEpoch) -> ReplicaReply {
        ReplicaReply { kind: reply::FENCED, epoch: sealed.0, ..Default::default() }
    }
}

/// Serves a replication call from another node: decodes it and runs it on the shard
/// that owns the partition.
pub async fn serve_call(shared: Arc<Shared>, from: NodeId, payload: Bytes) -> Result<Bytes, String> {
    let request = ReplicaRequest::from_bytes(payload)?;
    let tp = TopicPartition::new(request.topic.clone(), request.partition);
    let owner = shared.owner(&tp);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: crate::shard::Job = Box::new(move |shard: Rc<Shard>| {
        Box::pin(async move {
            let _ = tx.send(serve(&shard, from, tp, request).await);
        })
    });
    shared.senders[owner.0].send(ShardMsg::Run(job)).await.map_err(|_| "shutting down".to_string())?;
    let answer = rx.await.map_err(|_| "shutting down".to_string())?;
    Ok(answer.to_bytes())
}

async fn serve(shard: &Rc<Shard>, from: NodeId, tp: TopicPartition, request: ReplicaRequest) -> ReplicaReply {
    let Some(p) = shard.partition(&tp) else {
        return ReplicaReply::unavailable(format!("{tp} is not open on this node"));
    };
    if p.borrow().topic_id.0[..] != request.topic_id[..] {
        return ReplicaReply::unavailable(format!("{tp} is another topic of that name here"));
    }
    if let Role::Offline(why) = &p.borrow().role {
        return ReplicaReply::unavailable(format!("{tp} is offline on this node after a disk error: {why}"));
    }
    let epoch = LeaderEpoch(request.epoch);
    match request.kind {
        kind::SEAL => seal(&p, epoch),
        kind::EPOCH_END => {
            let p = p.borrow();
            match p.log.epoch_end(epoch) {
                Some((e, end)) => ReplicaReply::ok(e.0, end),
                None => ReplicaReply::ok(-1, Offset(-1)),
            }
        }
        kind::READ => {
            let p = p.borrow();
            let end = p.log.log_end_offset();
            let start = p.log.log_start_offset();
            match p.log.read(Offset(request.offset).max(start), PUSH_BYTES_MAX, end) {
                Ok(read) => ReplicaReply { records: read.bytes, log_start: start.0, ..ReplicaReply::ok(-1, end) },
                Err(e) => ReplicaReply::unavailable(e.to_string()),
            }
        }
        kind::PUSH => push(&p, from, epoch, request).await,
        kind::RECONCILE => reconcile(&p, epoch, request),
        other => ReplicaReply::unavailable(format!("unknown replication request kind {other}")),
    }
}

/// Makes sure this replica is following (not leading) once a newer epoch speaks.
fn follow(p: &mut Partition, epoch: LeaderEpoch) {
    let leading_older = match &p.role {
        Role::Leading(l) => l.engine.epoch() < epoch,
        Role::Recovering(e) => *e < epoch,
        _ => false,
    };
    if leading_older {
        p.step_down(&format!("epoch {epoch} has a new leader"));
    } else if matches!(p.role, Role::Idle) {
        p.role = Role::Following(p.new_follower());
    }
}

/// Persists a seal at `epoch` (a newer epoch only).
fn persist_seal(p: &mut Partition, epoch: LeaderEpoch) -> Result<(), String> {
    if epoch > p.sealed {
        if let Err(e) = persist_sealed(p.log.dir(), epoch) {
            let e = p.on_storage_error(e);
            return Err(format!("cannot persist the seal of {}: {e}", p.tp));
        }
        p.sealed = epoch;
        if let Role::Following(f) = &mut p.role {
            f.seal(epoch).expect("sealing at a newer epoch");
        }
    }
    Ok(())
}

/// Writes the sealed-epoch file of a partition directory (atomically, fsynced).
pub fn persist_sealed(dir: &std::path::Path, epoch: LeaderEpoch) -> Result<(), dlog_storage::StorageError> {
    dlog_storage::replace_file_atomically(dir, SEALED_FILE, epoch.0.to_string().as_bytes())
}

/// The file in a partition's directory recording the newest sealed epoch.
pub const SEALED_FILE: &str = "sealed-epoch";

/// Reads the sealed epoch of a partition directory: -1 when never sealed (no file); an
/// error when the file exists but cannot be read or parsed, which must never be taken
/// for "never sealed" (that would let a deposed leader's pushes in again).
pub fn read_sealed(dir: &std::path::Path) -> Result<LeaderEpoch, String> {
    let path = dir.join(SEALED_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(LeaderEpoch)
            .map_err(|e| format!("{}: not an epoch ({e}): {:?}", path.display(), text.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NEVER_SEALED),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The seal of a replica whose sealed-epoch file is damaged, rebuilt to fail closed:
/// at least every epoch its log holds and the epoch the metadata names now. Every
/// leader that could have sealed it got its epoch from the metadata, so no epoch above
/// the current one was ever sealed; sealing higher than before only fences more.
pub fn rebuilt_seal(log_latest: Option<LeaderEpoch>, metadata_epoch: LeaderEpoch) -> LeaderEpoch {
    log_latest.unwrap_or(NEVER_SEALED).max(metadata_epoch)
}

/// The seal of a replica that never answered a leader.
pub const NEVER_SEALED: LeaderEpoch = LeaderEpoch(-1);

/// The file in a partition's directory saying whether this replica lost its data
/// (`1`: its node came back without the data it held, and it has not caught up with a
/// leader since; `0`: caught up). See [`Partition::lost_data`].
pub const LOST_DATA_FILE: &str = "lost-data";

/// Records whether the replica in `dir` lacks data it once held (atomically, fsynced).
pub fn persist_lost_data(dir: &std::path::Path, lost: bool) -> Result<(), dlog_storage::StorageError> {
    dlog_storage::replace_file_atomically(dir, LOST_DATA_FILE, if lost { b"1" } else { b"0" })
}

/// Whether the replica in `dir` lacks data it once held. A file that cannot be read
/// says it does: failing closed keeps its answer out of read quorums until it has
/// caught up again.
pub fn read_lost_data(dir: &std::path::Path) -> bool {
    match std::fs::read(dir.join(LOST_DATA_FILE)) {
        Ok(bytes) => bytes != b"0",
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// A replica that lost its data has caught up once it holds its leader's epoch-opening
/// batch and everything up to a high watermark past it: every record acknowledged
/// before this epoch, and in it up to that high watermark, is in its log again.
fn caught_up_after_losing_data(p: &Partition, epoch: LeaderEpoch, hw: Offset) -> bool {
    let end = p.log.log_end_offset();
    let opened_at = p.log.epoch_cache().entries().iter().find(|e| e.epoch == epoch).map(|e| e.start_offset);
    opened_at.is_some_and(|start| hw > start && end >= hw)
}

/// Clears the lost-data mark of a replica that caught up (see
/// [`caught_up_after_losing_data`]); it counts in read quorums and may lead again.
fn note_caught_up(p: &mut Partition, epoch: LeaderEpoch, hw: Offset) {
    if !p.lost_data || !caught_up_after_losing_data(p, epoch, hw) {
        return;
    }
    if let Err(e) = persist_lost_data(p.log.dir(), false) {
        let e = p.on_storage_error(e);
        tracing::error!(partition = %p.tp, error = %e, "cannot record that the replica caught up");
        return;
    }
    p.lost_data = false;
    tracing::info!(partition = %p.tp, epoch = %epoch, high_watermark = %hw, log_end = %p.log.log_end_offset(),
        "caught up after losing its data: counts in read quorums again");
}

fn seal(p: &PartitionRef, epoch: LeaderEpoch) -> ReplicaReply {
    let mut p = p.borrow_mut();
    if epoch < p.sealed {
        return ReplicaReply::fenced(p.sealed);
    }
    let own = match &p.role {
        Role::Leading(l) => l.engine.epoch() == epoch,
        Role::Recovering(e) => *e == epoch,
        _ => false,
    };
    if !own {
        follow(&mut p, epoch);
    }
    if let Err(e) = persist_seal(&mut p, epoch) {
        tracing::error!(error = %e);
        return ReplicaReply::unavailable(e);
    }
    if p.lost_data {
        // Sealed (so older leaders are fenced), but not counted: this log lacks
        // records it once held, which a read quorum must not miss.
        return ReplicaReply::unavailable(format!("{} lost its data and is catching up", p.tp));
    }
    let last = p.log.latest_epoch().unwrap_or(LeaderEpoch(-1));
    ReplicaReply::ok(last.0, p.log.log_end_offset())
}

/// Whole batches of `records` from the one starting at `from` (a follower skipping
/// what it holds); `None` when `from` falls inside a batch (the logs disagree).
fn batches_from(records: &Bytes, from: Offset) -> Option<Bytes> {
    let batches = validate_batches(records).ok()?;
    for (range, h) in &batches {
        if h.base_offset >= from {
            return Some(records.slice(range.start..));
        }
        if h.next_offset() > from {
            return None;
        }
    }
    Some(Bytes::new())
}

/// Moves this replica's log start up to its leader's (or, for a new leader, its
/// recovery source's), never past what it holds. Below it every record is committed and
/// deleted, and this log's copy may even differ there: OffsetForLeaderEpoch cannot
/// judge below the other log's start (found by the replication simulation).
fn follow_log_start(p: &mut Partition, leader_start: Offset) {
    let start = leader_start.min(p.log.log_end_offset());
    if start > p.log.log_start_offset() {
        if let Err(e) = p.log.delete_records_before(start) {
            tracing::warn!(partition = %p.tp, error = %e, "cannot follow the leader's log start");
        }
    }
}

/// Appends the pushed batches from the one at `start` (what this follower lacks), then
/// follows the leader's log start and high watermark `hw`; the new log end.
fn append_pushed(
    part: &mut Partition,
    epoch: LeaderEpoch,
    records: &Bytes,
    start: Offset,
    hw: Offset,
) -> Result<Offset, ReplicaReply> {
    let Some(records) = batches_from(records, start) else {
        return Err(ReplicaReply::unavailable(format!("{}: offset {start} is inside a pushed batch", part.tp)));
    };
    if let Err(e) = part.log.append_replicated(&records, crate::now_ms()) {
        let e = part.on_storage_error(e);
        tracing::error!(partition = %part.tp, error = %e, "replicated append failed");
        return Err(ReplicaReply::unavailable(e.to_string()));
    }
    let end = part.log.log_end_offset();
    let Role::Following(f) = &mut part.role else { unreachable!("appending while following") };
    f.appended(epoch, end);
    part.log_end.send_replace(end);
    part.set_high_watermark(hw.min(end));
    note_caught_up(part, epoch, hw);
    Ok(end)
}

async fn push(p: &PartitionRef, from: NodeId, epoch: LeaderEpoch, request: ReplicaRequest) -> ReplicaReply {
    let durable = {
        let mut part = p.borrow_mut();
        let own = match &part.role {
            Role::Leading(l) => Some(l.engine.epoch()),
            Role::Recovering(e) => Some(*e),
            _ => None,
        };
        if own.is_some_and(|own| own >= epoch) {
            tracing::warn!(partition = %part.tp, from = %from, epoch = %epoch, "push from an older leader refused");
            return ReplicaReply::fenced(part.sealed.max(own.unwrap_or(epoch)));
        }
        follow(&mut part, epoch);
        let push = Push {
            epoch,
            base: Offset(request.offset),
            count: request.count,
            high_watermark: Offset(request.high_watermark),
            log_start: Offset(request.log_start),
        };
        let Role::Following(f) = &mut part.role else { unreachable!("following after follow()") };
        let answer = f.on_push(push);
        let hw = f.high_watermark();
        let caching = part.log.config().write_caching;
        if !matches!(answer, PushAnswer::Fenced(_) | PushAnswer::Reconcile { .. }) {
            follow_log_start(&mut part, Offset(request.log_start));
        }
        match answer {
            PushAnswer::Fenced(fenced) => return ReplicaReply::fenced(fenced.sealed),
            PushAnswer::Reconcile { .. } => {
                // Asked about the log's own last epoch (the engine's may be the epoch
                // that pushed older records).
                let last = part.log.latest_epoch().unwrap_or(LeaderEpoch(-1));
                return ReplicaReply { kind: reply::RECONCILE, epoch: last.0, ..Default::default() };
            }
            PushAnswer::Gap { from } => return ReplicaReply { kind: reply::GAP, offset: from.0, ..Default::default() },
            PushAnswer::Held { .. } => {
                part.set_high_watermark(hw);
                note_caught_up(&mut part, epoch, hw);
                return ReplicaReply::ok(-1, part.position());
            }
            PushAnswer::StartOver { at } => {
                tracing::warn!(partition = %part.tp, log_end = %part.log.log_end_offset(), at = %at,
                    leader_log_start = request.log_start, "the log ends below the leader's log start; starting it over");
                if let Err(e) = part.log.restart_at(at) {
                    let e = part.on_storage_error(e);
                    tracing::error!(partition = %part.tp, error = %e, "cannot start the log over");
                    return ReplicaReply::unavailable(e.to_string());
                }
                let Role::Following(f) = &mut part.role else { unreachable!() };
                f.started_over(at);
                part.log_end.send_replace(at);
                match append_pushed(&mut part, epoch, &request.records, at, hw) {
                    Ok(end) if caching => return ReplicaReply::ok(-1, end),
                    Ok(end) => end,
                    Err(reply) => return reply,
                }
            }
            PushAnswer::Append { skip } => {
                let start = Offset(request.offset).plus(skip);
                match append_pushed(&mut part, epoch, &request.records, start, hw) {
                    Ok(end) if caching => return ReplicaReply::ok(-1, end),
                    Ok(end) => end,
                    Err(reply) => return reply,
                }
            }
        }
    };
    match Partition::wait_durable(p, durable).await {
        Ok(Ok(())) => ReplicaReply::ok(-1, durable),
        Ok(Err(e)) => ReplicaReply::unavailable(e.to_string()),
        Err(_) => ReplicaReply::unavailable("shutting down"),
    }
}

fn reconcile(p: &PartitionRef, epoch: LeaderEpoch, request: ReplicaRequest) -> ReplicaReply {
    let mut part = p.borrow_mut();
    if epoch < part.sealed {
        return ReplicaReply::fenced(part.sealed);
    }
    follow(&mut part, epoch);
    if !matches!(part.role, Role::Following(_)) {
        return ReplicaReply::unavailable("not following");
    }
    let last = part.log.latest_epoch().unwrap_or(LeaderEpoch(-1));
    if last.0 != request.asked_epoch {
        // The answer is to another question (this log changed since it was asked).
        return ReplicaReply { kind: reply::RECONCILE, epoch: last.0, ..Default::default() };
    }
    let answer =
        (request.answer_epoch >= 0).then_some((LeaderEpoch(request.answer_epoch), Offset(request.answer_offset)));
    let leader_start = Offset(request.log_start);
    if answer.is_none() && last.0 < 0 && part.log.log_end_offset() != leader_start {
        // This log holds no record (no epoch): wherever it ends, it moves to the
        // leader's log start (found by the replication simulation: one left past the
        // leader's end was counted there and never caught up).
        tracing::info!(partition = %part.tp, log_end = %part.log.log_end_offset(), at = %leader_start,
            "holding nothing; starting the log over at the leader's log start");
        if let Err(e) = part.log.restart_at(leader_start) {
            return ReplicaReply::unavailable(part.on_storage_error(e).to_string());
        }
    }
    if let Err(e) = cut_divergent_tail(&mut part.log, answer) {
        let e = part.on_storage_error(e);
        tracing::error!(partition = %part.tp, error = %e, "truncation failed");
        return ReplicaReply::unavailable(e.to_string());
    }
    let last = part.log.latest_epoch().unwrap_or(LeaderEpoch(-1));
    if let Some((answered, _)) = answer {
        if last.0 >= 0 && last != answered {
            // This log's last epoch is one the leader lacks below the answer (KIP-279):
            // ask again about the new last epoch before following.
            return ReplicaReply { kind: reply::RECONCILE, epoch: last.0, ..Default::default() };
        }
    }
    let end = part.log.log_end_offset();
    if let Err(e) = persist_seal(&mut part, epoch) {
        return ReplicaReply::unavailable(e);
    }
    let hw = part.high_watermark();
    if hw > end {
        report_truncation_below_high_watermark(&part, hw, end, epoch);
        part.set_high_watermark(end);
    }
    let sealed = part.sealed;
    let hw = part.high_watermark();
    let Role::Following(f) = &mut part.role else { unreachable!() };
    *f = dlog_replication::Follower::new(dlog_replication::Replica::new(sealed), end, last, hw);
    // Rebuilt with the high watermark at most the new end: nothing is lost here twice.
    let _ = f.reconciled(epoch, end, last);
    part.log_end.send_replace(end);
    ReplicaReply::ok(last.0, part.position())
}

/// Reports a truncation below the high watermark: acknowledged records are gone from
/// this replica. A consistent topic never gets here (what the leader committed, it
/// holds, and a replica truncates only what the leader lacks), so there it is an error;
/// an available topic's new leader may lack acknowledged records (its contract). Both
/// count in `dlog_truncations_below_high_watermark_total`, by mode.
fn report_truncation_below_high_watermark(part: &Partition, hw: Offset, end: Offset, epoch: LeaderEpoch) {
    let mode = if part.quorums.is_consistent() { "cp" } else { "ap" };
    metrics::counter!("dlog_truncations_below_high_watermark_total", "mode" => mode).increment(1);
    if part.quorums.is_consistent() {
        tracing::error!(partition = %part.tp, high_watermark = %hw, log_end = %end, epoch = %epoch,
            "a consistent topic truncated below its high watermark: acknowledged records are lost here");
    } else {
        tracing::warn!(partition = %part.tp, high_watermark = %hw, log_end = %end, epoch = %epoch,
            "truncated below the high watermark: the new leader lacks acknowledged records");
    }
}

/// Cuts what this log holds past the leader's (or recovery source's) end of the
/// epoch asked about, `answer` = (the largest epoch it has at or below the asked one,
/// where that epoch ends there), and everything from any later epoch of this log
/// (KIP-279): the cut is `min(their end, where this log's records of that epoch end)`.
/// `None` (they have no epoch at or below it): nothing can be judged; keep the log.
fn cut_divergent_tail(
    log: &mut dlog_storage::PartitionLog,
    answer: Option<(LeaderEpoch, Offset)>,
) -> Result<(), dlog_storage::StorageError> {
    let Some((epoch, their_end)) = answer else { return Ok(()) };
    let end = log.log_end_offset();
    let mut cut = end.min(their_end);
    if let Some(start) = log.epoch_start_after(epoch) {
        cut = cut.min(start);
    }
    if cut < end {
        log.truncate_to(cut)?;
    }
    Ok(())
}

/// Brings a partition in line with its assignment in `meta` (called whenever the
/// image changes and when the partition opens): starts leading a new epoch, or
/// follows.
pub fn apply_assignment(shared: &Arc<Shared>, p: &PartitionRef, meta: &TopicMeta) {
    let me = shared.config.node_id;
    let mut part = p.borrow_mut();
    let Some(a) = meta.assignment(part.tp.partition.0) else { return };
    part.replicas = a.replicas.clone();
    part.quorums = partition_quorums(&part.tp, meta, a.replicas.len());
    part.recorded_fit = !a.cannot_lead.contains(&me);
    let epoch = a.leader_epoch;
    part.leader_epoch = part.leader_epoch.max(epoch);
    if part.is_offline() {
        // Until the node reopens it: the controller moves the leadership elsewhere.
        return;
    }
    if a.leader == Some(me) {
        let current = match &part.role {
            Role::Leading(l) => Some(l.engine.epoch()),
            Role::Recovering(e) => Some(*e),
            _ => None,
        };
        if current == Some(epoch) {
            return;
        }
        if current.is_some() {
            part.step_down("a newer epoch");
        }
        part.role = Role::Recovering(epoch);
        part.leader = true;
        drop(part);
        tokio::task::spawn_local(recover(shared.clone(), p.clone(), meta.name.clone(), epoch));
    } else {
        match &part.role {
            Role::Leading(_) | Role::Recovering(_) => part.step_down("another node leads now"),
            Role::Idle | Role::Solo => {
                part.leader = false;
                part.role = Role::Following(part.new_follower());
            }
            Role::Following(_) | Role::Offline(_) => part.leader = false,
        }
    }
}

/// The quorums of a partition with `replicas` replicas. A configuration that does not
/// give valid quorums (a quorum above the replica count) fails closed: every replica
/// writes and every replica answers a new leader (W = R = RF), never the weakest
/// quorums, which would turn a consistent topic into an available one.
pub fn partition_quorums(tp: &TopicPartition, meta: &TopicMeta, replicas: usize) -> Quorums {
    let rf = u16::try_from(replicas.max(1)).unwrap_or(u16::MAX);
    let strictest = Quorums::new(rf, rf, rf).expect("W = R = RF is valid");
    match meta.config.quorums(replicas) {
        Ok((w, r)) => Quorums::new(rf, w, r).unwrap_or_else(|e| {
            tracing::error!(partition = %tp, error = %e, "invalid quorums; every replica must write and answer");
            strictest
        }),
        Err(e) => {
            tracing::error!(partition = %tp, error = %e, "invalid quorums; every replica must write and answer");
            strictest
        }
    }
}

fn still_recovering(p: &PartitionRef, epoch: LeaderEpoch) -> bool {
    matches!(p.borrow().role, Role::Recovering(e) if e == epoch)
}

async fn call(shared: &Shared, node: NodeId, request: &ReplicaRequest) -> Result<ReplicaReply, String> {
    let cluster = shared.cluster.as_ref().ok_or("not a cluster")?;
    let answer = cluster.call(node, CHANNEL, request.to_bytes(), CALL_TIMEOUT).await.map_err(|e| e.to_string())?;
    ReplicaReply::from_bytes(answer)
}

fn request(p: &Partition, kind: i32, epoch: LeaderEpoch) -> ReplicaRequest {
    ReplicaRequest {
        kind,
        topic: p.tp.topic.to_string(),
        partition: p.tp.partition.0,
        topic_id: Bytes::copy_from_slice(&p.topic_id.0),
        epoch: epoch.0,
        ..Default::default()
    }
}

/// Opens epoch `epoch` as its leader: seal on a read quorum, catch up, append the
/// epoch's control batch, then lead.
async fn recover(shared: Arc<Shared>, p: PartitionRef, topic: Arc<str>, epoch: LeaderEpoch) {
    let me = shared.config.node_id;
    let started = Instant::now();
    // A leader never writes one epoch in two lives.
    let reused = p.borrow().sealed >= epoch;
    if reused {
        let partition = p.borrow().tp.partition.0;
        tracing::info!(topic = %topic, partition, epoch = %epoch, "asking for a new epoch: this one was used before");
        while still_recovering(&p, epoch) {
            let bump = crate::controller::ControllerRequest::BumpEpoch {
                name: topic.to_string(),
                partition,
                epoch: epoch.0,
                node: me.0,
            };
            let Some(cluster) = shared.cluster.clone() else { return };
            match cluster.forward(bump, None).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(topic = %topic, partition, error = %e, "cannot get a new epoch; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        return;
    }
    {
        let mut part = p.borrow_mut();
        if let Err(e) = persist_seal(&mut part, epoch) {
            tracing::error!(error = %e, "cannot open the epoch");
            return;
        }
    }
    while still_recovering(&p, epoch) {
        match gather_and_catch_up(&shared, &p, epoch).await {
            Ok(true) => return open_epoch(&shared, &p, epoch, started),
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(topic = %topic, epoch = %epoch, error = %e, "catching up failed; trying again");
                tokio::time::sleep(SEAL_RETRY).await;
            }
        }
    }
}

/// Seals `epoch` on a read quorum and catches up from its most advanced member.
/// `Ok(false)`: a newer epoch exists, or this node no longer leads `epoch`.
async fn gather_and_catch_up(shared: &Arc<Shared>, p: &PartitionRef, epoch: LeaderEpoch) -> Result<bool, String> {
    let me = shared.config.node_id;
    let (replicas, quorums, mine) = {
        let part = p.borrow();
        let mine = LogPosition {
            last_epoch: part.log.latest_epoch().unwrap_or(LeaderEpoch(-1)),
            log_end: part.log.log_end_offset(),
        };
        // A replica that lost its data does not count itself toward the read quorum.
        (part.replicas.clone(), part.quorums, (!part.lost_data).then_some(mine))
    };
    let mut recovery = match mine {
        Some(mine) => Recovery::start(me, &replicas, epoch, quorums, mine),
        None => Recovery::start_lacking_data(me, &replicas, epoch, quorums),
    };
    // An available topic needs only its own answer, but listens briefly for the
    // others so that a plain failover loses nothing that a live replica holds.
    let listen_until = tokio::time::Instant::now() + AP_LISTEN;
    let plan = loop {
        if !still_recovering(p, epoch) {
            return Ok(false);
        }
        let seal = request(&p.borrow(), kind::SEAL, epoch);
        let mut calls: futures_util::stream::FuturesUnordered<_> = recovery
            .waiting_for()
            .into_iter()
            .map(|node| {
                let seal = seal.clone();
                async move { (node, call(shared, node, &seal).await) }
            })
            .collect();
        let round_end = tokio::time::Instant::now() + SEAL_RETRY;
        loop {
            let ready = recovery.plan().is_some();
            let everyone = recovery.waiting_for().is_empty();
            if everyone || (ready && (quorums.is_consistent() || tokio::time::Instant::now() >= listen_until)) {
                break;
            }
            let deadline = if ready { listen_until } else { round_end.max(tokio::time::Instant::now()) };
            let next = tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut calls)).await;
            let (node, answer) = match next {
                Ok(Some(answered)) => answered,
                // Every call returned, or the round is over: ask the silent ones again.
                Ok(None) | Err(_) => break,
            };
            match answer {
                Ok(r) if r.kind == reply::OK => {
                    let position = LogPosition { last_epoch: LeaderEpoch(r.epoch), log_end: Offset(r.offset) };
                    recovery.answered(node, epoch, position);
                }
                Ok(r) if r.kind == reply::FENCED => {
                    tracing::info!(partition = %p.borrow().tp, epoch = %epoch, newer = r.epoch,
                        "a newer epoch exists; not opening this one");
                    return Ok(false);
                }
                Ok(r) => tracing::debug!(node = %node, error = %r.error, "seal not answered"),
                Err(e) => tracing::debug!(node = %node, error = %e, "seal not answered"),
            }
        }
        if let Some(plan) = recovery.plan() {
            if recovery.waiting_for().is_empty()
                || quorums.is_consistent()
                || tokio::time::Instant::now() >= listen_until
            {
                break plan;
            }
        }
        tokio::time::sleep_until(round_end).await;
    };
    if plan.source != me {
        catch_up(shared, p, epoch, plan.source, plan.target.log_end).await?;
    }
    Ok(still_recovering(p, epoch))
}

/// Makes this (new leader's) log equal to `source`'s up to `target`: cut what the
/// source lacks, then copy its records.
async fn catch_up(
    shared: &Shared,
    p: &PartitionRef,
    epoch: LeaderEpoch,
    source: NodeId,
    target: Offset,
) -> Result<(), String> {
    // Agree with the source on where the logs part (KIP-279, a round per epoch this
    // log has that the source lacks).
    for _ in 0..RECONCILE_ROUNDS {
        let (ask, last) = {
            let part = p.borrow();
            let last = part.log.latest_epoch().unwrap_or(LeaderEpoch(-1));
            (ReplicaRequest { epoch: last.0, ..request(&part, kind::EPOCH_END, epoch) }, last)
        };
        if last.0 < 0 {
            break;
        }
        let answer = call(shared, source, &ask).await?;
        if answer.kind != reply::OK {
            return Err(format!("epoch end not answered: {}", answer.error));
        }
        let answer = (answer.epoch >= 0).then_some((LeaderEpoch(answer.epoch), Offset(answer.offset)));
        let mut part = p.borrow_mut();
        if let Err(e) = cut_divergent_tail(&mut part.log, answer) {
            return Err(part.on_storage_error(e).to_string());
        }
        let now_last = part.log.latest_epoch().unwrap_or(LeaderEpoch(-1));
        if answer.is_none_or(|(e, _)| now_last.0 < 0 || now_last == e) {
            break;
        }
    }
    loop {
        if !still_recovering(p, epoch) {
            return Err("no longer recovering".into());
        }
        let (read, holds_nothing) = {
            let part = p.borrow();
            // A log holding no record reads once to learn the source's log start.
            let holds_nothing = part.log.latest_epoch().is_none();
            if part.log.log_end_offset() >= target && !holds_nothing {
                return Ok(());
            }
            (ReplicaRequest { offset: part.log.log_end_offset().0, ..request(&part, kind::READ, epoch) }, holds_nothing)
        };
        let answer = call(shared, source, &read).await?;
        if answer.kind != reply::OK {
            return Err(format!("read from {source} at {} failed: {}", read.offset, answer.error));
        }
        if holds_nothing && read.offset != answer.log_start {
            let mut part = p.borrow_mut();
            tracing::info!(partition = %part.tp, log_end = read.offset, at = answer.log_start, source = %source,
                "catching up while holding nothing: starting the log over at the source's log start");
            if let Err(e) = part.log.restart_at(Offset(answer.log_start)) {
                return Err(part.on_storage_error(e).to_string());
            }
            continue;
        }
        if p.borrow().log.log_end_offset() >= target {
            return Ok(());
        }
        if answer.records.is_empty() {
            return Err(format!("read from {source} at {} returned nothing", read.offset));
        }
        let mut part = p.borrow_mut();
        let end = part.log.log_end_offset();
        let first = validate_batches(&answer.records).ok().and_then(|b| b.first().map(|(_, h)| h.base_offset));
        if let Some(first) = first.filter(|&first| first > end && answer.log_start > end.0) {
            // This log ends below the source's log start: it can only start over there.
            tracing::warn!(partition = %part.tp, log_end = %end, at = %first, source = %source,
                "catching up: the log ends below the source's log start; starting it over");
            if let Err(e) = part.log.restart_at(first) {
                return Err(part.on_storage_error(e).to_string());
            }
        }
        let end = part.log.log_end_offset();
        let records = batches_from(&answer.records, end).ok_or("the source's batches do not line up")?;
        if let Err(e) = part.log.append_replicated(&records, crate::now_ms()) {
            return Err(part.on_storage_error(e).to_string());
        }
        let end = part.log.log_end_offset();
        part.log_end.send_replace(end);
        follow_log_start(&mut part, Offset(answer.log_start));
    }
}

/// Appends the epoch-opening control batch and starts leading.
fn open_epoch(shared: &Arc<Shared>, p: &PartitionRef, epoch: LeaderEpoch, started: Instant) {
    let me = shared.config.node_id;
    let followers = {
        let mut part = p.borrow_mut();
        if !matches!(part.role, Role::Recovering(e) if e == epoch) {
            return;
        }
        if part.lost_data {
            // It caught up from the most advanced of R other replicas: it holds every
            // acknowledged record again.
            if let Err(e) = persist_lost_data(part.log.dir(), false) {
                let e = part.on_storage_error(e);
                tracing::error!(partition = %part.tp, error = %e, "cannot record that the replica caught up");
                return;
            }
            part.lost_data = false;
            tracing::info!(partition = %part.tp, epoch = %epoch, "caught up from a read quorum after losing its data");
        }
        let voters: Vec<i32> = part.replicas.iter().map(|n| n.0).collect();
        let mut control =
            bytes::BytesMut::from(&dlog_protocol::control::leader_change_batch(me.0, &voters, crate::now_ms())[..]);
        let info = match part.log.append(&mut control, epoch, crate::now_ms()) {
            Ok(info) => info,
            Err(e) => {
                let e = part.on_storage_error(e);
                tracing::error!(partition = %part.tp, error = %e, "cannot open the epoch");
                return;
            }
        };
        let start = info.first_offset;
        let hw = part.high_watermark().min(start);
        let engine = Leader::new(me, &part.replicas.clone(), epoch, part.quorums, start, hw);
        let now = Instant::now();
        let contact = part.replicas.iter().filter(|&&r| r != me).map(|&r| (r, now)).collect();
        part.role = Role::Leading(Box::new(Leading { engine, contact, caught_up: Default::default() }));
        part.leader = true;
        let end = part.log.log_end_offset();
        part.log_end.send_replace(end);
        part.leader_appended();
        tracing::info!(partition = %part.tp, epoch = %epoch, epoch_start = %start,
            took_ms = started.elapsed().as_millis() as u64, "leading");
        part.replicas.iter().copied().filter(|&r| r != me).collect::<Vec<_>>()
    };
    if !matches!(p.borrow().role, Role::Leading(_)) {
        return;
    }
    for node in followers {
        tokio::task::spawn_local(push_loop(shared.clone(), p.clone(), epoch, node));
    }
}

fn leading_epoch(p: &PartitionRef, epoch: LeaderEpoch) -> bool {
    matches!(&p.borrow().role, Role::Leading(l) if l.engine.epoch() == epoch)
}

/// Sends the log to one follower for as long as this node leads `epoch`.
async fn push_loop(shared: Arc<Shared>, p: PartitionRef, epoch: LeaderEpoch, node: NodeId) {
    let mut log_end = p.borrow().log_end.subscribe();
    // Optimistic, as Raft's nextIndex: the follower reconciles first and answers its end.
    let mut next = p.borrow().log.log_end_offset();
    let mut backoff = Duration::from_millis(20);
    // Repeated gaps at one offset back off (a follower that cannot take what is sent
    // must not be sent it in a tight loop).
    let mut last_gap: Option<Offset> = None;
    let mut gap_backoff = GAP_BACKOFF_MIN;
    while leading_epoch(&p, epoch) {
        let sent_at = Instant::now();
        let (push, leader_end) = {
            let part = p.borrow();
            let end = part.log.log_end_offset();
            let read = if next < end {
                match part.log.read(next.max(part.log.log_start_offset()), PUSH_BYTES_MAX, end) {
                    Ok(read) => read.bytes,
                    Err(e) => {
                        tracing::error!(partition = %part.tp, follower = %node, error = %e, "cannot read for a push");
                        Bytes::new()
                    }
                }
            } else {
                Bytes::new()
            };
            let (base, count) = match validate_batches(&read) {
                Ok(batches) if !batches.is_empty() => {
                    let first = batches[0].1.base_offset;
                    let last = batches[batches.len() - 1].1.next_offset();
                    (first, last.0 - first.0)
                }
                _ => (next, 0),
            };
            let push = ReplicaRequest {
                offset: base.0,
                count,
                high_watermark: part.high_watermark().0,
                records: read,
                log_start: part.log.log_start_offset().0,
                ..request(&part, kind::PUSH, epoch)
            };
            (push, end)
        };
        let idle = push.count == 0;
        let answer = call(&shared, node, &push).await;
        if !leading_epoch(&p, epoch) {
            return;
        }
        match answer {
            Ok(r) if r.kind == reply::OK => {
                backoff = Duration::from_millis(20);
                last_gap = None;
                next = Offset(r.offset);
                let caught_up = {
                    let mut part = p.borrow_mut();
                    let moved = match &mut part.role {
                        Role::Leading(l) => {
                            l.contact.insert(node, Instant::now());
                            if next >= leader_end {
                                // It held all this leader had when the push was read.
                                l.caught_up.insert(node, sent_at);
                            }
                            l.engine.acknowledged(node, epoch, next)
                        }
                        _ => return,
                    };
                    match moved {
                        Ok(Some(hw)) => part.set_high_watermark(hw),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(partition = %part.tp, follower = %node, error = %e, "acknowledgement refused")
                        }
                    }
                    idle || next >= part.log.log_end_offset()
                };
                if caught_up {
                    let _ = tokio::time::timeout(HEARTBEAT, log_end.changed()).await;
                }
            }
            Ok(r) if r.kind == reply::GAP => {
                next = Offset(r.offset);
                if last_gap == Some(next) {
                    tracing::debug!(partition = %p.borrow().tp, follower = %node, at = %next, "repeated gap; backing off");
                    tokio::time::sleep(gap_backoff).await;
                    gap_backoff = (gap_backoff * 2).min(GAP_BACKOFF_MAX);
                } else {
                    gap_backoff = GAP_BACKOFF_MIN;
                }
                last_gap = Some(next);
                continue;
            }
            Ok(r) if r.kind == reply::RECONCILE => {
                let mut asked = r.epoch;
                for _ in 0..RECONCILE_ROUNDS {
                    if !leading_epoch(&p, epoch) {
                        return;
                    }
                    let mut ask = ReplicaRequest {
                        asked_epoch: asked,
                        log_start: p.borrow().log.log_start_offset().0,
                        ..request(&p.borrow(), kind::RECONCILE, epoch)
                    };
                    let (e, end) =
                        p.borrow().log.epoch_end(LeaderEpoch(asked)).unwrap_or((LeaderEpoch(-1), Offset(-1)));
                    (ask.answer_epoch, ask.answer_offset) = (e.0, end.0);
                    match call(&shared, node, &ask).await {
                        Ok(r) if r.kind == reply::OK => {
                            next = Offset(r.offset);
                            if let Role::Leading(l) = &mut p.borrow_mut().role {
                                // It may hold less than it once acknowledged (a restart).
                                let _ = l.engine.reconciled(node, next);
                            }
                            break;
                        }
                        Ok(r) if r.kind == reply::RECONCILE => asked = r.epoch,
                        Ok(r) if r.kind == reply::FENCED => {
                            fenced(&p, epoch, node, r.epoch);
                            return;
                        }
                        _ => {
                            tokio::time::sleep(backoff).await;
                            break;
                        }
                    }
                }
            }
            Ok(r) if r.kind == reply::FENCED => {
                fenced(&p, epoch, node, r.epoch);
                return;
            }
            Ok(r) => {
                tracing::debug!(follower = %node, error = %r.error, "push not taken");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                tracing::debug!(follower = %node, error = %e, "push failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// A follower was sealed at a newer epoch: this leader's epoch is over.
fn fenced(p: &PartitionRef, epoch: LeaderEpoch, node: NodeId, newer: i32) {
    let mut part = p.borrow_mut();
    if leading_epoch_of(&part, epoch) {
        part.step_down(&format!("follower {node} is sealed at the newer epoch {newer}"));
    }
}

fn leading_epoch_of(p: &Partition, epoch: LeaderEpoch) -> bool {
    matches!(&p.role, Role::Leading(l) if l.engine.epoch() == epoch)
}

/// The replicas a leader counts as in the quorum (Kafka's ISR): itself and the
/// followers that hold its epoch's first batch and, within the contact timeout, held
/// everything it had sent them. A follower that only answers (one catching up from far
/// behind, or one started over below this leader's log start) is not in sync, so it is
/// neither elected nor made preferred leader before it holds the log.
pub fn in_sync(p: &Partition, me: NodeId) -> Option<Vec<NodeId>> {
    let Role::Leading(l) = &p.role else { return None };
    let recent = |n: &NodeId| l.caught_up.get(n).is_some_and(|t| t.elapsed() < CONTACT_TIMEOUT);
    Some(l.engine.in_quorum().into_iter().filter(|n| *n == me || recent(n)).collect())
}

/// Refuses an acks=all write up front when fewer than W replicas answer (as Kafka
/// does when the ISR is smaller than `min.insync.replicas`).
pub fn check_write_quorum(p: &Partition) -> dlog_core::Result<()> {
    let Role::Leading(l) = &p.role else { return Ok(()) };
    let reachable = 1 + l.contact.values().filter(|t| t.elapsed() < CONTACT_TIMEOUT).count();
    let w = usize::from(p.quorums.write());
    if reachable < w {
        return Err(Error::NotEnoughReplicas(format!(
            "{}: {reachable} of {} replicas answer, the write quorum is {w}",
            p.tp,
            p.replicas.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_seal_is_an_error_never_never_sealed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_sealed(dir.path()), Ok(NEVER_SEALED), "no file: never sealed");
        persist_sealed(dir.path(), LeaderEpoch(7)).unwrap();
        assert_eq!(read_sealed(dir.path()), Ok(LeaderEpoch(7)));
        std::fs::write(dir.path().join(SEALED_FILE), b"\x00garbage").unwrap();
        assert!(read_sealed(dir.path()).is_err(), "a damaged file is not 'never sealed'");
        std::fs::remove_file(dir.path().join(SEALED_FILE)).unwrap();
        std::fs::create_dir(dir.path().join(SEALED_FILE)).unwrap();
        assert!(read_sealed(dir.path()).is_err(), "an unreadable file is not 'never sealed'");
        assert_eq!(rebuilt_seal(Some(LeaderEpoch(3)), LeaderEpoch(5)), LeaderEpoch(5));
        assert_eq!(rebuilt_seal(Some(LeaderEpoch(6)), LeaderEpoch(5)), LeaderEpoch(6));
        assert_eq!(rebuilt_seal(None, LeaderEpoch(0)), LeaderEpoch(0));
    }

    #[test]
    fn invalid_quorums_fail_closed_to_every_replica() {
        let tp = TopicPartition::new("t", 0);
        let mut meta = TopicMeta {
            name: "t".into(),
            id: dlog_core::TopicId::NONE,
            partitions: 1,
            overrides: Default::default(),
            config: Default::default(),
            assignments: Arc::from(vec![]),
        };
        meta.config.write_quorum = Some(2);
        meta.config.read_quorum = Some(2);
        let q = partition_quorums(&tp, &meta, 3);
        assert_eq!((q.write(), q.read()), (2, 2));
        meta.config.write_quorum = Some(4);
        let q = partition_quorums(&tp, &meta, 3);
        assert_eq!((q.replication_factor(), q.write(), q.read()), (3, 3, 3), "never W 1, R 1");
        assert!(q.is_consistent());
    }
}
