//! [`PartitionLog`]: the segments of one partition, with append, read, recovery,
//! group-commit flushing, truncation and retention.

use crate::batch::{self, BatchError, BatchHeader};
use crate::checkpoint::{self, Fields};
use crate::epochs::{self, EpochCache};
use crate::error::{Result, StorageError};
use crate::producer_state::{self, BatchMeta, PendingProducers, ProducerStateMap, SequenceCheck};
use crate::segment::{self, parse_segment_name, Segment, SegmentIndex, LOG_SUFFIX};
use bytes::Bytes;
use dlog_core::{LeaderEpoch, Offset, TimestampType, TopicConfig};
use std::cell::{Cell, OnceCell};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

mod restart;

/// Flushed offset, active segment base, byte position, max timestamp state.
const RECOVERY_POINT_FILE: &str = "recovery-point";
/// The log start offset (moved by DeleteRecords and retention).
const LOG_START_FILE: &str = "log-start-offset";
/// Present only after a clean close: log end offset, active base, active size.
const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

/// What [`PartitionLog::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: Offset,
    pub last_offset: Offset,
    /// `Some(now_ms)` when the topic uses LogAppendTime (the batches were stamped).
    pub log_append_time_ms: Option<i64>,
    pub log_start_offset: Offset,
    /// Largest max timestamp of the appended batches (after stamping); -1 for a duplicate.
    pub max_timestamp: i64,
    /// The batch was an idempotent producer's retry of one already in the log: nothing
    /// was appended and the offsets are the original batch's.
    pub duplicate: bool,
}

/// What [`PartitionLog::read`] returns: whole batches, and the log bounds at read time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    pub bytes: Bytes,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
}

/// What opening the log had to do. `bytes_scanned` is the start-up cost: it is 0 after
/// a clean close and at most the active segment's unflushed tail otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub bytes_scanned: u64,
    pub truncated_bytes: u64,
    pub indexes_rebuilt: usize,
    /// Batch headers read to rebuild the producer state past its newest snapshot: 0
    /// after a clean close, at most the active segment's batches otherwise.
    pub producer_batches_replayed: u64,
    /// Batch headers read to rebuild the leader-epoch cache: 0 unless its file was
    /// missing or damaged (then every segment is read).
    pub epoch_batches_scanned: u64,
}

/// What [`PartitionLog::apply_retention`] deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: Offset,
}

/// The durable state of the active segment at some offset: what the recovery
/// checkpoint records and what a flush job will make durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecoveryPoint {
    flushed: Offset,
    segment_base: Offset,
    position: u64,
    max_ts: Option<(i64, Offset)>,
}

impl RecoveryPoint {
    fn encode(&self) -> Vec<u8> {
        let (has, ts, off) = match self.max_ts {
            Some((ts, off)) => (1i64, ts, off.0),
            None => (0, 0, 0),
        };
        [self.flushed.0, self.segment_base.0, self.position as i64, has, ts, off]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect()
    }

    fn decode(buf: &[u8]) -> Option<RecoveryPoint> {
        let mut f = Fields::new(buf);
        let (flushed, base, pos, has, ts, off) = (f.i64()?, f.i64()?, f.i64()?, f.i64()?, f.i64()?, f.i64()?);
        if pos < 0 || flushed < base {
            return None;
        }
        // The max timestamp is a batch's of the flushed part of the segment.
        if has == 1 && !(base..flushed).contains(&off) {
            return None;
        }
        Some(RecoveryPoint {
            flushed: Offset(flushed),
            segment_base: Offset(base),
            position: pos as u64,
            max_ts: (has == 1).then_some((ts, Offset(off))),
        })
    }
}

/// A group-commit fsync: the files to sync and the offset they make durable. Built by
/// [`PartitionLog::begin_flush`], run on a blocking thread, handed back to
/// [`PartitionLog::complete_flush`].
///
/// Most jobs fsync only the active segment's log file: that is what makes records
/// durable. At most once per [`RECOVERY_POINT_INTERVAL`] a job also fsyncs the indexes
/// and persists the recovery point (where the next open starts scanning), off the
/// owning thread: a stale recovery point costs only a longer scan at open, while
/// writing it on every flush cost the owning shard two blocking fsyncs and a rename
/// per flush.
#[derive(Debug)]
pub struct FlushJob {
    files: Vec<Arc<File>>,
    point: RecoveryPoint,
    /// Jobs begun before a truncation or roll cover bytes that may have been replaced.
    generation: u64,
    /// Where to persist `point` once the files are durable.
    checkpoint: Option<(PathBuf, Arc<Mutex<u64>>)>,
}

/// How often a flush job also persists the recovery point.
pub const RECOVERY_POINT_INTERVAL: Duration = Duration::from_secs(1);

impl FlushJob {
    /// Blocking `fdatasync` of the segment's log file (and, for a checkpointing job,
    /// its index files and the recovery point).
    ///
    /// An error here must be treated as fatal for the partition (close it and reopen,
    /// which recovers): after a failed fsync the kernel may have dropped the dirty pages,
    /// so retrying cannot prove anything durable.
    pub fn run(&self) -> std::io::Result<()> {
        for f in &self.files {
            f.sync_data()?;
        }
        if let Some((dir, generation)) = &self.checkpoint {
            // Under the lock a truncation or roll holds while it changes the files and
            // writes its own point: a job begun before one must not write after it.
            let current = generation.lock().unwrap_or_else(PoisonError::into_inner);
            if *current == self.generation {
                checkpoint::write(dir, RECOVERY_POINT_FILE, &self.point.encode()).map_err(std::io::Error::other)?;
            }
        }
        Ok(())
    }

    /// Every offset below this is durable once [`FlushJob::run`] succeeded.
    pub fn target_offset(&self) -> Offset {
        self.point.flushed
    }
}

/// One partition's log. Owned by one thread; no internal locking (it is `Send`, not
/// `Sync`: closed segments load their indexes lazily through `&self`).
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: TopicConfig,
    /// Sorted by base offset; never empty; the last one is the active segment.
    segments: Vec<Segment>,
    /// Log end offset: the offset the next record gets.
    next_offset: Offset,
    log_start_offset: Offset,
    flushed_offset: Offset,
    /// Target of the latest begun flush job (`flushed_offset <= begun_offset <= LEO`).
    begun_offset: Offset,
    /// When the oldest append not covered by a begun flush job happened.
    unbegun_since_ms: Option<i64>,
    /// When the active segment got its first append (drives `segment.ms`).
    active_first_append_ms: Option<i64>,
    /// Bumped (under its lock) by every truncation and roll; flush jobs carry the value
    /// they were begun at.
    flush_generation: Arc<Mutex<u64>>,
    /// When a flush job last persisted the recovery point.
    last_recovery_point: Instant,
    /// Set when a failed write could not be undone; every later write is refused.
    failed: bool,
    report: RecoveryReport,
    lazy_index_rebuilds: Cell<usize>,
    /// Idempotent producers' epochs and last batches (see `producer_state`).
    producers: ProducerStateMap,
    /// Where each leader epoch starts; entries lie in `[log_start_offset, next_offset]`.
    epochs: EpochCache,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |e| StorageError::io(path, e)
}

impl PartitionLog {
    /// Opens (creating if missing) the log in `dir` and recovers it.
    ///
    /// Closed segments are only listed and stat-ed; their indexes load lazily. After a
    /// clean close nothing is scanned. Otherwise the active segment is scanned from the
    /// recovery checkpoint, validating every batch (CRC included), and cut at the first
    /// torn or corrupt batch.
    pub fn open(dir: &Path, config: TopicConfig, now_ms: i64) -> Result<PartitionLog> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(checkpoint::TMP_SUFFIX) {
                // A checkpoint write that crashed before its rename: the old file stands.
                fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            } else if let Some(base) = parse_segment_name(name, LOG_SUFFIX) {
                bases.push(base);
            }
        }
        bases.sort();
        remove_orphan_indexes(dir, &bases)?;

        let log_start_ckpt = checkpoint::read(dir, LOG_START_FILE)?.and_then(|b| Fields::new(&b).i64()).map(Offset);
        let clean = checkpoint::read(dir, CLEAN_SHUTDOWN_FILE)?;
        // Removed (durably) before any write: a crash from here on must recover.
        checkpoint::remove(dir, CLEAN_SHUTDOWN_FILE)?;

        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments: Vec::with_capacity(bases.len().max(1)),
            next_offset: Offset::ZERO,
            log_start_offset: Offset::ZERO,
            flushed_offset: Offset::ZERO,
            begun_offset: Offset::ZERO,
            unbegun_since_ms: None,
            active_first_append_ms: None,
            flush_generation: Arc::new(Mutex::new(0)),
            // The first flush persists the recovery point.
            last_recovery_point: Instant::now().checked_sub(RECOVERY_POINT_INTERVAL).unwrap_or_else(Instant::now),
            failed: false,
            report: RecoveryReport::default(),
            lazy_index_rebuilds: Cell::new(0),
            producers: ProducerStateMap::default(),
            epochs: EpochCache::default(),
        };

        if bases.is_empty() {
            let base = log_start_ckpt.unwrap_or(Offset::ZERO);
            log.segments.push(Segment::create(dir, base)?);
            checkpoint::sync_dir(dir)?;
            log.next_offset = base;
            log.flushed_offset = base;
        } else {
            for &base in &bases {
                log.segments.push(Segment::open_existing(dir, base)?);
            }
            let clean = clean.as_deref().and_then(|b| {
                let mut f = Fields::new(b);
                Some((Offset(f.i64()?), Offset(f.i64()?), f.i64()?))
            });
            log.recover_active(clean, now_ms)?;
        }

        let first_base = log.segments[0].base;
        log.log_start_offset = log_start_ckpt.unwrap_or(first_base).max(first_base).min(log.next_offset);
        log.begun_offset = log.flushed_offset;
        // Without any snapshot (a log written before producer state existed, or one whose
        // snapshots are all damaged) only the active segment is replayed: start-up stays
        // bounded, and producers seen only earlier count as unknown.
        let active_base = log.active().base;
        log.report.producer_batches_replayed = log.load_producer_state(active_base)?;
        log.report.epoch_batches_scanned = log.load_epochs()?;
        log.report.segments = log.segments.len();
        log.check_invariants();
        tracing::info!(
            dir = %dir.display(),
            segments = log.report.segments,
            log_start_offset = %log.log_start_offset,
            log_end_offset = %log.next_offset,
            bytes_scanned = log.report.bytes_scanned,
            producers = log.producers.len(),
            latest_epoch = ?log.epochs.latest_epoch(),
            producer_batches_replayed = log.report.producer_batches_replayed,
            truncated_bytes = log.report.truncated_bytes,
            "opened partition log"
        );
        Ok(log)
    }

    /// Brings the active segment to a known state: trusted after a clean close, scanned
    /// from the recovery checkpoint otherwise.
    fn recover_active(&mut self, clean: Option<(Offset, Offset, i64)>, now_ms: i64) -> Result<()> {
        let interval = self.config.index_interval_bytes;
        let active = self.segments.last_mut().expect("at least one segment");
        let base = active.base;

        if let Some((leo, clean_base, clean_size)) = clean {
            if clean_base == base && clean_size as u64 == active.size && leo >= base {
                let rebuilt = Cell::new(0);
                active.index(leo, interval, &rebuilt)?;
                self.report.indexes_rebuilt += rebuilt.get();
                self.next_offset = leo;
                self.flushed_offset = leo;
                if active.size > 0 {
                    self.active_first_append_ms = Some(now_ms);
                }
                return Ok(());
            }
            tracing::warn!(dir = %self.dir.display(), "clean-shutdown marker does not match the active segment; recovering");
        }

        let file_len = active.size;
        let point = checkpoint::read(&self.dir, RECOVERY_POINT_FILE)?.and_then(|b| RecoveryPoint::decode(&b));
        let usable = point.filter(|p| p.segment_base == base && p.position <= file_len);
        if point.is_some_and(|p| p.segment_base == base && p.position > file_len) {
            tracing::warn!(
                segment = %active.log_path.display(),
                file_len,
                "active segment is shorter than its recovery checkpoint: fsynced data was lost; rescanning it whole"
            );
        }
        let (start_pos, expected, mut index) = match usable {
            Some(p) => (p.position, p.flushed, active.load_index_prefix(p.position, p.flushed, p.max_ts)?),
            None => {
                let (index_file, time_file) = active.open_index_files()?;
                (0, base, SegmentIndex::empty(index_file, time_file))
            }
        };
        let scan = active.scan(start_pos, expected, true, |pos, h| {
            index.on_batch(base, pos, h, interval);
        })?;
        if let Some(reason) = &scan.stopped {
            let cut = file_len - scan.valid_end;
            tracing::warn!(
                segment = %active.log_path.display(),
                position = scan.valid_end,
                bytes = cut,
                %reason,
                "truncating torn or corrupt tail of the active segment"
            );
            active.log.set_len(scan.valid_end).map_err(io(&active.log_path))?;
            active.log.sync_data().map_err(io(&active.log_path))?;
            self.report.truncated_bytes = cut;
        }
        debug_assert!(scan.valid_end <= file_len);
        active.size = scan.valid_end;
        index.rewrite_files().map_err(io(&active.log_path))?;
        active.index = OnceCell::from(index);
        self.report.bytes_scanned = file_len - start_pos;
        self.report.indexes_rebuilt += 1;
        self.next_offset = scan.next_offset;
        self.flushed_offset = usable.map_or(base, |p| p.flushed).min(scan.next_offset);
        if active.size > 0 {
            self.active_first_append_ms = Some(now_ms);
        }
        if self.next_offset > self.flushed_offset {
            // The scanned tail may sit only in the page cache: flush it soon.
            self.unbegun_since_ms = Some(now_ms);
        }
        Ok(())
    }

    /// The work done by [`PartitionLog::open`].
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Idempotent producers' state as of the log end.
    pub fn producer_state(&self) -> &ProducerStateMap {
        &self.producers
    }

    /// Rebuilds the producer state at the log end: removes snapshots past it, loads the
    /// newest readable one at or below it (and not below the first segment), or starts
    /// empty at `fallback_from`, then replays batch headers up to the log end. Returns
    /// the number of batches replayed.
    fn load_producer_state(&mut self, fallback_from: Offset) -> Result<u64> {
        let upto = self.next_offset;
        let snapshots = producer_state::list_snapshots(&self.dir)?;
        let stale: Vec<Offset> = snapshots.iter().copied().filter(|&s| s > upto).collect();
        for &s in &stale {
            producer_state::remove_snapshot(&self.dir, s)?;
        }
        if !stale.is_empty() {
            checkpoint::sync_dir(&self.dir)?;
        }
        let first_base = self.segments[0].base;
        let mut loaded = None;
        for &s in snapshots.iter().rev().filter(|&&s| s <= upto && s >= first_base) {
            if let Some(map) = producer_state::read_snapshot(&self.dir, s)? {
                loaded = Some((s, map));
                break;
            }
        }
        let (from, mut state) = loaded.unwrap_or_else(|| (fallback_from, ProducerStateMap::default()));
        let replayed = self.replay_producers(from, &mut state)?;
        self.producers = state;
        Ok(replayed)
    }

    /// Records in `state` every producer batch from `from` (a batch boundary) to the
    /// log end, reading headers only.
    fn replay_producers(&self, from: Offset, state: &mut ProducerStateMap) -> Result<u64> {
        if from >= self.next_offset {
            return Ok(0);
        }
        let mut replayed = 0;
        let first = self.segment_for(from);
        for i in first..self.segments.len() {
            let seg = &self.segments[i];
            let found = if i == first {
                seg.find_batch(self.index_of(i)?, from.max(seg.base))?
            } else {
                seg.batch_at(0, seg.base)?.map(|h| (0, h))
            };
            let Some((mut pos, mut h)) = found else { continue };
            // Bounded by the batches of the segment: pos strictly grows.
            loop {
                if let Some(meta) = producer_batch(&h, h.base_offset) {
                    state.record(h.producer_id, h.producer_epoch, meta);
                }
                replayed += 1;
                pos += h.total_size() as u64;
                match seg.batch_at(pos, h.next_offset())? {
                    Some(next) => h = next,
                    None => break,
                }
            }
        }
        Ok(replayed)
    }

    /// Snapshots the producer state as of `covers` (the log end), then removes older
    /// snapshots that are neither at a segment base nor needed (truncation rebuilds
    /// from the segment-base ones).
    fn write_producer_snapshot(&self, covers: Offset) -> Result<()> {
        debug_assert_eq!(covers, self.next_offset);
        producer_state::write_snapshot(&self.dir, covers, &self.producers)?;
        for s in producer_state::list_snapshots(&self.dir)? {
            let at_base = self.segments.binary_search_by_key(&s, |seg| seg.base).is_ok();
            if s < covers && (!at_base || s < self.segments[0].base) {
                producer_state::remove_snapshot(&self.dir, s)?;
            }
        }
        Ok(())
    }

    /// Loads the leader-epoch cache, or rebuilds it from every segment's batch headers
    /// when its file is missing or damaged, then fits it to the recovered log: entries
    /// below the log start are trimmed, entries at or past the log end dropped (the file
    /// is written before the batches of a new epoch, so a crash may leave it ahead).
    /// Returns the number of batch headers read.
    fn load_epochs(&mut self) -> Result<u64> {
        let (mut cache, scanned, mut changed) = match epochs::read(&self.dir)? {
            Some(cache) => (cache, 0, false),
            None => {
                let (cache, scanned) = self.rebuild_epochs()?;
                if scanned > 0 {
                    tracing::warn!(
                        dir = %self.dir.display(),
                        batches = scanned,
                        epochs = cache.entries().len(),
                        "leader-epoch file missing or damaged; rebuilt it from the log"
                    );
                }
                (cache, scanned, true)
            }
        };
        // The start first, then the end: an entry that DeleteRecords moved up to a log
        // start equal to the log end holds no record, and goes too (as at Kafka's load).
        changed |= cache.truncate_from_start(self.log_start_offset);
        changed |= cache.truncate_from_end(self.next_offset);
        self.epochs = cache;
        if changed {
            epochs::write(&self.dir, &self.epochs)?;
        }
        Ok(scanned)
    }

    /// The epoch cache as the batch headers of every segment tell it: an entry at each
    /// batch whose epoch is newer than the previous ones (negative epochs, written by
    /// no leader, are skipped, as Kafka does). A segment that turns out corrupt is
    /// skipped from there on: the cache is best effort, the log is not rejected for it.
    fn rebuild_epochs(&self) -> Result<(EpochCache, u64)> {
        let mut cache = EpochCache::default();
        let mut scanned = 0u64;
        for seg in &self.segments {
            let (mut pos, mut expected) = (0u64, seg.base);
            // Bounded by the batches of the segment: pos strictly grows.
            loop {
                let h = match seg.batch_at(pos, expected) {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    Err(StorageError::Corrupt { path, position, reason }) => {
                        tracing::warn!(segment = %path.display(), position, %reason, "cannot read epochs past here");
                        break;
                    }
                    Err(e) => return Err(e),
                };
                scanned += 1;
                let epoch = LeaderEpoch(h.partition_leader_epoch);
                if epoch.0 >= 0 && cache.latest_epoch().is_none_or(|latest| epoch > latest) {
                    cache.assign(epoch, h.base_offset)?;
                }
                pos += h.total_size() as u64;
                expected = h.next_offset();
            }
        }
        Ok((cache, scanned))
    }

    /// The epoch of the newest entry of the leader-epoch cache; `None` when empty.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.latest_epoch()
    }

    /// OffsetForLeaderEpoch: the largest cached epoch at or below `epoch` and the
    /// offset where it ends (see [`EpochCache::end_offset_for`] for the edge cases,
    /// which follow Kafka). `None` is Kafka's `UNDEFINED_EPOCH_OFFSET`.
    pub fn epoch_end(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        self.epochs.end_offset_for(epoch, self.next_offset)
    }

    /// Start offset of the first cached epoch greater than `epoch`: a follower cuts
    /// its log there to drop the epochs its leader never had.
    pub fn epoch_start_after(&self, epoch: LeaderEpoch) -> Option<Offset> {
        self.epochs.start_after(epoch)
    }

    /// The whole leader-epoch cache.
    pub fn epoch_cache(&self) -> &EpochCache {
        &self.epochs
    }

    /// Closed-segment indexes found damaged or missing and rebuilt since open (they
    /// load lazily, so these are not in the [`RecoveryReport`]).
    pub fn lazy_index_rebuilds(&self) -> usize {
        self.lazy_index_rebuilds.get()
    }

    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    /// Takes effect from the next append, roll or retention pass.
    pub fn set_config(&mut self, config: TopicConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> Offset {
        self.log_start_offset
    }

    /// The next offset to assign.
    pub fn log_end_offset(&self) -> Offset {
        self.next_offset
    }

    /// Every record below it is fsynced.
    pub fn flushed_offset(&self) -> Offset {
        self.flushed_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// The directory holding the segment files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("at least one segment")
    }

    /// The offset after segment `i`'s last batch.
    fn segment_end(&self, i: usize) -> Offset {
        self.segments.get(i + 1).map_or(self.next_offset, |s| s.base)
    }

    /// Index of the segment holding `offset` (the last whose base is <= it).
    fn segment_for(&self, offset: Offset) -> usize {
        self.segments.partition_point(|s| s.base <= offset).saturating_sub(1)
    }

    fn index_of(&self, i: usize) -> Result<&SegmentIndex> {
        let end = self.segment_end(i);
        self.segments[i].index(end, self.config.index_interval_bytes, &self.lazy_index_rebuilds)
    }

    fn check_invariants(&self) {
        assert!(!self.segments.is_empty());
        debug_assert!(self.segments.windows(2).all(|w| w[0].base < w[1].base));
        assert!(self.active().base <= self.next_offset);
        assert!(self.segments[0].base <= self.log_start_offset || self.log_start_offset == self.next_offset);
        assert!(self.log_start_offset <= self.next_offset);
        assert!(self.flushed_offset <= self.begun_offset.max(self.flushed_offset));
        assert!(self.flushed_offset <= self.next_offset);
        let epochs = self.epochs.entries();
        assert!(epochs.first().is_none_or(|e| e.start_offset >= self.log_start_offset), "{epochs:?}");
        assert!(epochs.last().is_none_or(|e| e.start_offset <= self.next_offset), "{epochs:?}");
    }

    fn ensure_writable(&self) -> Result<()> {
        if self.failed {
            return Err(StorageError::Failed(self.dir.clone()));
        }
        Ok(())
    }

    /// Appends already-validated batches: assigns offsets from the log end offset,
    /// stamps the leader epoch (and LogAppendTime if configured), rolls first if the
    /// active segment is full or old, then `pwrite`s the bytes straight to the file: once
    /// this returns, a SIGKILL loses nothing (a power loss may, until flushed).
    ///
    /// This is the leader's path. An epoch older than the log's latest is refused
    /// ([`StorageError::StaleLeaderEpoch`]): a replaced leader must not write. A newer
    /// one opens an entry of the leader-epoch cache at the first offset.
    pub fn append(&mut self, batches: &mut [u8], leader_epoch: LeaderEpoch, now_ms: i64) -> Result<AppendInfo> {
        self.ensure_writable()?;
        let headers = frame_batches(batches, self.config.max_message_bytes)?;
        #[cfg(debug_assertions)]
        debug_assert!(batch::validate_batches(batches).is_ok(), "append takes validated batches");
        self.epochs.check_append(leader_epoch)?;

        // Idempotent producers: check every batch before anything is written. A retry
        // of a batch already in the log makes the whole append a no-op that answers
        // with the original's offsets (as Kafka; produce requests carry one batch).
        let mut pending = PendingProducers::default();
        let mut at = self.next_offset;
        for (_, h) in &headers {
            if let Some(meta) = producer_batch(h, at) {
                if let SequenceCheck::Duplicate(original) =
                    pending.check_and_record(&self.producers, h.producer_id, h.producer_epoch, meta)?
                {
                    return Ok(AppendInfo {
                        first_offset: original.first_offset,
                        last_offset: original.last_offset,
                        log_append_time_ms: None,
                        log_start_offset: self.log_start_offset,
                        max_timestamp: -1,
                        duplicate: true,
                    });
                }
            }
            at = at.plus(i64::from(h.record_count));
        }

        let first_offset = self.next_offset;
        let log_append = self.config.timestamp_type == TimestampType::LogAppendTime;
        let mut next = first_offset;
        let mut max_timestamp = i64::MIN;
        let mut stamped = Vec::with_capacity(headers.len());
        for (range, h) in &headers {
            let b = &mut batches[range.clone()];
            batch::set_base_offset(b, next);
            batch::set_leader_epoch(b, leader_epoch.0);
            if log_append {
                batch::stamp_log_append_time(b, now_ms);
            }
            let h2 = BatchHeader::parse(b)?;
            debug_assert_eq!(h2.record_count, h.record_count);
            max_timestamp = max_timestamp.max(h2.max_timestamp);
            next = h2.next_offset();
            stamped.push((range.start as u64, h2));
        }
        debug_assert_eq!(next, at);

        let epochs = self.stage_epochs(&stamped)?;
        self.write_batches(batches, &stamped, epochs, now_ms, |producers| pending.commit(producers))?;
        Ok(AppendInfo {
            first_offset,
            last_offset: Offset(next.0 - 1),
            log_append_time_ms: log_append.then_some(now_ms),
            log_start_offset: self.log_start_offset,
            max_timestamp,
            duplicate: false,
        })
    }

    /// Appends batches exactly as a leader wrote them: offsets, leader epochs and
    /// timestamps are kept, byte for byte, so that every replica holds the same log.
    ///
    /// Refused, with nothing written: a batch failing its header or CRC check
    /// ([`StorageError::InvalidBatch`]); batches not starting at the log end or not
    /// following each other ([`StorageError::NonContiguous`]); a negative epoch, or one
    /// older than the previous batch's or the log's latest
    /// ([`StorageError::StaleLeaderEpoch`]). `max.message.bytes` is not enforced: the
    /// leader accepted the batches, maybe under another setting.
    ///
    /// Producer state records every producer batch without checking its sequence: the
    /// leader accepted it, and a later leader must recognise its retries. Control
    /// batches are stored and leave producer state alone.
    pub fn append_replicated(&mut self, batches: &[u8], now_ms: i64) -> Result<AppendInfo> {
        self.ensure_writable()?;
        let validated = batch::validate_batches(batches)?;
        let first_offset = self.next_offset;
        let mut expected = first_offset;
        let mut max_timestamp = i64::MIN;
        let mut headers = Vec::with_capacity(validated.len());
        for (range, h) in validated {
            if h.base_offset != expected {
                return Err(StorageError::NonContiguous { expected, got: h.base_offset });
            }
            expected = h.next_offset();
            max_timestamp = max_timestamp.max(h.max_timestamp);
            headers.push((range.start as u64, h));
        }

        let epochs = self.stage_epochs(&headers)?;
        self.write_batches(batches, &headers, epochs, now_ms, |producers| {
            for (_, h) in &headers {
                if let Some(meta) = producer_batch(h, h.base_offset) {
                    producers.record(h.producer_id, h.producer_epoch, meta);
                }
            }
        })?;
        Ok(AppendInfo {
            first_offset,
            last_offset: Offset(expected.0 - 1),
            log_append_time_ms: None,
            log_start_offset: self.log_start_offset,
            max_timestamp,
            duplicate: false,
        })
    }

    /// The epoch cache after appending `batches` at the log end, or `None` if they open
    /// no new epoch. Refuses a negative epoch and one older than the cache's latest or
    /// an earlier batch's, before anything is written.
    fn stage_epochs(&self, batches: &[(u64, BatchHeader)]) -> Result<Option<EpochCache>> {
        let mut staged: Option<EpochCache> = None;
        for (_, h) in batches {
            let epoch = LeaderEpoch(h.partition_leader_epoch);
            let cache = staged.as_ref().unwrap_or(&self.epochs);
            cache.check_append(epoch)?;
            if cache.latest_epoch() != Some(epoch) {
                staged.get_or_insert_with(|| self.epochs.clone()).assign(epoch, h.base_offset)?;
            }
        }
        Ok(staged)
    }

    /// Writes batches that start at the log end and carry their final offsets, epochs
    /// and timestamps (`headers`: each batch's position in `batches` and header): rolls
    /// first if the active segment is full or old, persists `epochs` (the cache with the
    /// epochs these batches open) *before* the bytes so that the file never lacks an
    /// epoch present in the log, `pwrite`s, indexes, and then moves the log end and lets
    /// `commit_producers` update the producer state. Undoes what it can on failure.
    fn write_batches(
        &mut self,
        batches: &[u8],
        headers: &[(u64, BatchHeader)],
        epochs: Option<EpochCache>,
        now_ms: i64,
        commit_producers: impl FnOnce(&mut ProducerStateMap),
    ) -> Result<()> {
        let (Some(&(_, first)), Some(&(last_pos, last))) = (headers.first(), headers.last()) else {
            panic!("write_batches without batches");
        };
        assert_eq!(first.base_offset, self.next_offset, "batches are written at the log end");
        assert_eq!(last_pos + last.total_size() as u64, batches.len() as u64, "headers cover the buffer");
        let total = batches.len() as u64;
        let records = last.next_offset().0 - first.base_offset.0;
        if total > u64::from(u32::MAX) || records > i64::from(u32::MAX) {
            // A single append that cannot fit any segment (positions and relative offsets
            // are u32); produce requests are far smaller.
            return Err(StorageError::BatchTooLarge { size: batches.len(), max: u64::from(u32::MAX) });
        }

        let active = self.active();
        let rel_end = self.next_offset.0 - active.base.0 + records;
        let too_big = active.size + total > self.config.roll_bytes()
            || active.size + total > u64::from(u32::MAX)
            || rel_end > i64::from(u32::MAX);
        let too_old = self.active_first_append_ms.is_some_and(|t| now_ms.saturating_sub(t) >= self.roll_age_ms());
        if active.size > 0 && (too_big || too_old) {
            self.roll()?;
        }

        let previous_epochs = match epochs {
            Some(staged) => {
                epochs::write(&self.dir, &staged)?;
                Some(std::mem::replace(&mut self.epochs, staged))
            }
            None => None,
        };

        let active = self.segments.last_mut().expect("at least one segment");
        let pos = active.size;
        if let Err(e) = active.log.write_all_at(batches, pos) {
            self.undo_write(pos);
            self.undo_epochs(previous_epochs);
            return Err(StorageError::io(&self.active().log_path, e));
        }
        let base = active.base;
        let index = active.index.get_mut().expect("active segment index is loaded");
        let saved = (index.max_ts, index.bytes_since_entry);
        let mut added = segment::NewEntries::default();
        for (at, h) in headers {
            let n = index.on_batch(base, pos + at, h, self.config.index_interval_bytes);
            added.offsets += n.offsets;
            added.times += n.times;
        }
        if let Err(e) = index.write_tail(&added) {
            index.undo(&added);
            (index.max_ts, index.bytes_since_entry) = saved;
            self.undo_write(pos);
            self.undo_epochs(previous_epochs);
            return Err(StorageError::io(&self.active().log_path, e));
        }
        let active = self.segments.last_mut().expect("at least one segment");
        active.size = pos + total;
        self.next_offset = last.next_offset();
        commit_producers(&mut self.producers);
        self.active_first_append_ms.get_or_insert(now_ms);
        self.unbegun_since_ms.get_or_insert(now_ms);

        debug_assert_eq!(self.active().log.metadata().map(|m| m.len()).ok(), Some(self.active().size));
        self.check_invariants();
        Ok(())
    }

    /// Puts back the epoch cache of before a failed append. Its file named epochs that
    /// the log now lacks; left so, a later append of an older epoch could grow the log
    /// past them and a reopen would keep them. If it cannot be rewritten the log is
    /// failed: reopening drops the entries past the log end.
    fn undo_epochs(&mut self, previous: Option<EpochCache>) {
        let Some(previous) = previous else { return };
        self.epochs = previous;
        if let Err(e) = epochs::write(&self.dir, &self.epochs) {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot undo the leader-epoch file; log is failed");
            self.failed = true;
        }
    }

    /// Cuts the active log file back to `pos` after a failed append; if even that fails,
    /// the file no longer matches memory and the log refuses further writes.
    fn undo_write(&mut self, pos: u64) {
        let active = self.active();
        if let Err(e) = active.log.set_len(pos) {
            tracing::error!(segment = %active.log_path.display(), error = %e, "cannot undo a failed append; log is failed");
            self.failed = true;
        }
    }

    /// Closes the active segment (final time-index entry, fsync of log and indexes)
    /// and starts a new one at the log end offset. Because the closed segment is
    /// durable, the recovery point moves to the new segment's start.
    fn roll(&mut self) -> Result<()> {
        let next = self.next_offset;
        let active = self.segments.last_mut().expect("at least one segment");
        assert!(active.size > 0, "never roll an empty segment");
        assert!(next > active.base);
        let base = active.base;
        let index = active.index.get_mut().expect("active segment index is loaded");
        if index.push_time_entry_if_grown(base) {
            index.write_tail(&segment::NewEntries { offsets: 0, times: 1 }).map_err(io(&active.log_path))?;
        }
        active.log.sync_data().map_err(io(&active.log_path))?;
        index.sync().map_err(io(&active.log_path))?;
        let fresh = Segment::create(&self.dir, next)?;
        checkpoint::sync_dir(&self.dir)?;
        self.segments.push(fresh);
        self.flushed_offset = next;
        self.begun_offset = next;
        self.unbegun_since_ms = None;
        self.active_first_append_ms = None;
        self.replace_recovery_point(RecoveryPoint { flushed: next, segment_base: next, position: 0, max_ts: None })?;
        // Everything below `next` is durable now. A failed snapshot only costs a longer
        // replay at the next open (from an older snapshot): the roll stands.
        if let Err(e) = self.write_producer_snapshot(next) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the producer-state snapshot");
        }
        tracing::debug!(dir = %self.dir.display(), base = %next, "rolled segment");
        self.check_invariants();
        Ok(())
    }

    /// Persists `p` as the recovery point after a truncation or roll changed the files:
    /// flush jobs begun before no longer write theirs (see [`FlushJob::run`]).
    fn replace_recovery_point(&mut self, p: RecoveryPoint) -> Result<()> {
        let mut generation = self.flush_generation.lock().unwrap_or_else(PoisonError::into_inner);
        *generation += 1;
        checkpoint::write(&self.dir, RECOVERY_POINT_FILE, &p.encode())?;
        drop(generation);
        self.last_recovery_point = Instant::now();
        Ok(())
    }

    fn generation(&self) -> u64 {
        *self.flush_generation.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn out_of_range(&self, offset: Offset) -> StorageError {
        StorageError::OffsetOutOfRange { offset, start: self.log_start_offset, end: self.next_offset }
    }

    /// Reads whole batches from the one containing `start`, adding batches while the
    /// total stays within `max_bytes` but always at least one (KIP-74), and never a batch
    /// whose base offset is >= `max_offset`. `start == log_end_offset` reads nothing.
    pub fn read(&self, start: Offset, max_bytes: usize, max_offset: Offset) -> Result<ReadResult> {
        self.read_within(start, max_bytes, max_offset, true)
    }

    /// As [`PartitionLog::read`], but with `min_one` false a first batch larger than
    /// `max_bytes` is not read at all: the result is empty. A fetch uses this for every
    /// partition after the first that returned data, so its reads stay within its budget.
    pub fn read_within(
        &self,
        start: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one: bool,
    ) -> Result<ReadResult> {
        if start < self.log_start_offset || start > self.next_offset {
            return Err(self.out_of_range(start));
        }
        let mut out = Vec::new();
        if start < self.next_offset {
            self.read_batches(start, max_bytes, max_offset, min_one, &mut out)?;
        }
        Ok(ReadResult {
            bytes: Bytes::from(out),
            log_start_offset: self.log_start_offset,
            log_end_offset: self.next_offset,
        })
    }

    fn read_batches(
        &self,
        start: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one: bool,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        debug_assert!(start >= self.log_start_offset && start < self.next_offset);
        let first = self.segment_for(start);
        // One pass per segment at most; inside a segment, pos strictly grows.
        for i in first..self.segments.len() {
            let seg = &self.segments[i];
            let found = if i == first {
                seg.find_batch(self.index_of(i)?, start)?
            } else {
                seg.batch_at(0, seg.base)?.map(|h| (0, h))
            };
            let Some((run_start, mut h)) = found else {
                if i == first {
                    return Err(StorageError::Corrupt {
                        path: seg.log_path.clone(),
                        position: seg.size,
                        reason: format!("offset {start} missing from its segment"),
                    });
                }
                continue;
            };
            let mut pos = run_start;
            let mut done = false;
            loop {
                let size = h.total_size();
                let nothing_yet = min_one && out.is_empty() && pos == run_start;
                if h.base_offset >= max_offset
                    || (!nothing_yet && out.len() + (pos - run_start) as usize + size > max_bytes)
                {
                    done = true;
                    break;
                }
                pos += size as u64;
                match seg.batch_at(pos, h.next_offset())? {
                    Some(next) => h = next,
                    None => break,
                }
            }
            if pos > run_start {
                seg.read_into(run_start, (pos - run_start) as usize, out)?;
            }
            if done {
                break;
            }
        }
        Ok(())
    }

    /// The bytes of the first batch (from log start) whose max timestamp is >= `ts`.
    /// Skips whole segments by their max timestamp, then uses the sparse time index,
    /// then scans headers. The caller decodes its records for the exact offset.
    pub fn find_batch_by_timestamp(&self, ts: i64) -> Result<Option<Bytes>> {
        if self.log_start_offset == self.next_offset {
            return Ok(None);
        }
        let first = self.segment_for(self.log_start_offset);
        for i in first..self.segments.len() {
            let seg = &self.segments[i];
            let index = self.index_of(i)?;
            if index.max_ts.is_none_or(|(max, _)| max < ts) {
                continue;
            }
            let from = seg.time_floor(index, ts).max(if i == first { self.log_start_offset } else { seg.base });
            let Some((mut pos, mut h)) = seg.find_batch(index, from)? else { continue };
            // Bounded by the batches of the segment.
            loop {
                if h.max_timestamp >= ts && h.last_offset() >= self.log_start_offset {
                    let mut out = Vec::with_capacity(h.total_size());
                    seg.read_into(pos, h.total_size(), &mut out)?;
                    return Ok(Some(Bytes::from(out)));
                }
                pos += h.total_size() as u64;
                match seg.batch_at(pos, h.next_offset())? {
                    Some(next) => h = next,
                    None => break,
                }
            }
        }
        Ok(None)
    }

    /// The batch holding the largest max timestamp (the first such on ties) with that
    /// timestamp; `None` if the log is empty.
    pub fn max_timestamp_batch(&self) -> Result<Option<(i64, Bytes)>> {
        if self.log_start_offset == self.next_offset {
            return Ok(None);
        }
        let first = self.segment_for(self.log_start_offset);
        let mut best: Option<(i64, usize, Offset)> = None;
        for i in first..self.segments.len() {
            let seg = &self.segments[i];
            let index = self.index_of(i)?;
            let Some((mut max, mut at)) = index.max_ts else { continue };
            if i == first {
                // The segment's max may sit in a batch below the log start: rescan the
                // part of the segment that is still in the log.
                let Some((mut pos, mut h)) = seg.find_batch(index, self.log_start_offset)? else { continue };
                if at < h.base_offset {
                    (max, at) = (h.max_timestamp, h.base_offset);
                    loop {
                        if h.max_timestamp > max {
                            (max, at) = (h.max_timestamp, h.base_offset);
                        }
                        pos += h.total_size() as u64;
                        match seg.batch_at(pos, h.next_offset())? {
                            Some(next) => h = next,
                            None => break,
                        }
                    }
                }
            }
            if best.is_none_or(|(b, _, _)| max > b) {
                best = Some((max, i, at));
            }
        }
        let Some((max, i, at)) = best else { return Ok(None) };
        let seg = &self.segments[i];
        let Some((pos, h)) = seg.find_batch(self.index_of(i)?, at)? else {
            return Err(StorageError::Corrupt {
                path: seg.log_path.clone(),
                position: 0,
                reason: format!("max-timestamp batch at offset {at} not found"),
            });
        };
        if h.max_timestamp != max {
            // The index was built from these bytes: they changed under it.
            return Err(StorageError::Corrupt {
                path: seg.log_path.clone(),
                position: pos,
                reason: format!("the batch at offset {at} has max timestamp {}, its index says {max}", h.max_timestamp),
            });
        }
        let mut out = Vec::with_capacity(h.total_size());
        seg.read_into(pos, h.total_size(), &mut out)?;
        Ok(Some((max, Bytes::from(out))))
    }

    /// Removes every batch at or after `offset` (rounded down to the start of the batch
    /// containing it): deletes later segments, truncates the file, rebuilds its index
    /// and makes it all durable. Flush jobs begun before are void.
    pub fn truncate_to(&mut self, offset: Offset) -> Result<()> {
        self.ensure_writable()?;
        if offset >= self.next_offset {
            return Ok(());
        }
        let offset = offset.max(self.segments[0].base);
        let i = self.segment_for(offset);
        let (cut_pos, new_end) = match self.segments[i].find_batch(self.index_of(i)?, offset)? {
            Some((pos, h)) => (pos, h.base_offset),
            None => (self.segments[i].size, self.segment_end(i)),
        };
        // Snapshots past the new end go first (durably): a crash part-way must not leave
        // one describing batches that are gone once appends pass its offset again.
        let mut removed = false;
        for s in producer_state::list_snapshots(&self.dir)? {
            if s > new_end {
                producer_state::remove_snapshot(&self.dir, s)?;
                removed = true;
            }
        }
        if removed {
            checkpoint::sync_dir(&self.dir)?;
        }
        // Newest first, so a crash part-way leaves a log that is a prefix of this one.
        while self.segments.len() > i + 1 {
            let seg = self.segments.pop().expect("len > i + 1");
            seg.delete_files()?;
        }
        let seg = self.segments.last_mut().expect("segment i remains");
        seg.log.set_len(cut_pos).map_err(io(&seg.log_path))?;
        seg.log.sync_data().map_err(io(&seg.log_path))?;
        seg.size = cut_pos;
        let (index_file, time_file) = seg.open_index_files()?;
        let (index, scan) = seg.build_index(index_file, time_file, self.config.index_interval_bytes)?;
        if scan.next_offset != new_end || scan.stopped.is_some() {
            return Err(StorageError::Corrupt {
                path: seg.log_path.clone(),
                position: scan.valid_end,
                reason: format!("after truncation the segment ends at {} not {new_end}", scan.next_offset),
            });
        }
        let point = RecoveryPoint { flushed: new_end, segment_base: seg.base, position: cut_pos, max_ts: index.max_ts };
        seg.index = OnceCell::from(index);
        checkpoint::sync_dir(&self.dir)?;
        let empty = cut_pos == 0;
        self.next_offset = new_end;
        // After the log is cut and durable, never before: a crash in between leaves
        // entries past the log end, which open drops, rather than batches of an epoch
        // the file lacks.
        if self.epochs.truncate_from_end(new_end) {
            if let Err(e) = epochs::write(&self.dir, &self.epochs) {
                // The file keeps epochs the log no longer has, and appends of an older
                // epoch could grow the log past them. Reopening drops them.
                self.failed = true;
                return Err(e);
            }
        }
        // The truncated file and its index were just fsynced: all of it is durable.
        self.flushed_offset = new_end;
        self.begun_offset = new_end;
        self.unbegun_since_ms = None;
        if empty {
            self.active_first_append_ms = None;
        }
        self.replace_recovery_point(point)?;
        if self.log_start_offset > new_end {
            self.set_log_start(new_end)?;
        }
        // Rebuilt from the newest snapshot at or below the new end; without one, from the
        // first segment (truncation is rare, and correctness beats speed here).
        let first_base = self.segments[0].base;
        self.load_producer_state(first_base)?;
        tracing::info!(dir = %self.dir.display(), log_end_offset = %new_end, "truncated log");
        self.check_invariants();
        Ok(())
    }

    /// Moves the log start offset and persists it, then the epoch cache trimmed to it
    /// (in memory at once, so the invariants hold whatever fails). In that order: a
    /// crash in between leaves entries below the log start, which open trims.
    fn set_log_start(&mut self, offset: Offset) -> Result<()> {
        assert!(offset <= self.next_offset);
        self.log_start_offset = offset;
        let trimmed = self.epochs.truncate_from_start(offset);
        checkpoint::write(&self.dir, LOG_START_FILE, &self.log_start_offset.0.to_be_bytes())?;
        if trimmed {
            epochs::write(&self.dir, &self.epochs)?;
        }
        Ok(())
    }

    /// DeleteRecords: moves the log start offset up to `offset` (never down), persists
    /// it, and deletes closed segments wholly below it. Returns the new log start.
    pub fn delete_records_before(&mut self, offset: Offset) -> Result<Offset> {
        self.ensure_writable()?;
        if offset > self.next_offset {
            return Err(self.out_of_range(offset));
        }
        if offset > self.log_start_offset {
            self.set_log_start(offset)?;
            // Bounded by the number of segments.
            while self.segments.len() > 1 && self.segments[1].base <= self.log_start_offset {
                self.delete_oldest_segment()?;
            }
            self.producers.remove_ended_before(self.log_start_offset);
        }
        self.check_invariants();
        Ok(self.log_start_offset)
    }

    /// Deletes the oldest (closed) segment, moving the log start offset past it first
    /// so a crash part-way never exposes a hole.
    fn delete_oldest_segment(&mut self) -> Result<u64> {
        assert!(self.segments.len() > 1, "the active segment is never deleted");
        let next_base = self.segments[1].base;
        if self.log_start_offset < next_base {
            self.set_log_start(next_base)?;
        }
        let seg = self.segments.remove(0);
        seg.delete_files()?;
        for s in producer_state::list_snapshots(&self.dir)? {
            if s < next_base {
                producer_state::remove_snapshot(&self.dir, s)?;
            }
        }
        checkpoint::sync_dir(&self.dir)?;
        tracing::debug!(segment = %seg.log_path.display(), bytes = seg.size, "deleted segment");
        Ok(seg.size)
    }

    /// Deletes whole closed segments (never the active one), oldest first: those whose
    /// max timestamp is older than `now_ms - retention_ms`, then while the log without
    /// its oldest segment is still at least `retention_bytes`.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome> {
        self.ensure_writable()?;
        let mut outcome =
            RetentionOutcome { segments_deleted: 0, bytes_deleted: 0, log_start_offset: self.log_start_offset };
        if self.config.retention_ms >= 0 {
            let cutoff = now_ms.saturating_sub(self.config.retention_ms);
            while self.segments.len() > 1 {
                let expired = self.index_of(0)?.max_ts.is_none_or(|(ts, _)| ts < cutoff);
                if !expired {
                    break;
                }
                outcome.bytes_deleted += self.delete_oldest_segment()?;
                outcome.segments_deleted += 1;
            }
        }
        if self.config.retention_bytes >= 0 {
            let limit = self.config.retention_bytes as u64;
            while self.segments.len() > 1 && self.size_bytes() - self.segments[0].size >= limit {
                outcome.bytes_deleted += self.delete_oldest_segment()?;
                outcome.segments_deleted += 1;
            }
        }
        outcome.log_start_offset = self.log_start_offset;
        if outcome.segments_deleted > 0 {
            self.producers.remove_ended_before(self.log_start_offset);
        }
        self.check_invariants();
        Ok(outcome)
    }

    /// How old the active segment may grow: `segment.ms` less a jitter below
    /// `segment.jitter.ms`, drawn (as Kafka draws one per segment) from a hash of this
    /// log's directory and the segment's base offset, so that it is the same on every
    /// replay and different across partitions and segments.
    fn roll_age_ms(&self) -> i64 {
        use std::hash::{Hash, Hasher};
        let c = &self.config;
        if c.segment_jitter_ms <= 0 {
            return c.segment_ms;
        }
        let bound = c.segment_jitter_ms.min(c.segment_ms).max(1) as u64;
        // SipHash with fixed keys: deterministic across runs.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.dir.hash(&mut h);
        self.active().base.0.hash(&mut h);
        c.segment_ms - (h.finish() % bound) as i64
    }

    /// Rolls the active segment if `segment.ms` has passed since its first append.
    pub fn maybe_roll(&mut self, now_ms: i64) -> Result<()> {
        self.ensure_writable()?;
        let old = self.active_first_append_ms.is_some_and(|t| now_ms.saturating_sub(t) >= self.roll_age_ms());
        if old && self.active().size > 0 {
            self.roll()?;
        }
        Ok(())
    }

    /// Whether an fsync is due: `flush.messages` records not yet covered by a flush
    /// job, or the oldest of them older than `flush.ms`.
    pub fn flush_due(&self, now_ms: i64) -> bool {
        let pending = self.next_offset.0 - self.begun_offset.0;
        pending > 0
            && (pending >= self.config.flush_messages
                || self.unbegun_since_ms.is_some_and(|t| now_ms.saturating_sub(t) >= self.config.flush_ms))
    }

    /// Group commit: a job covering everything appended so far, `None` if all of it is
    /// already durable. Appends may continue while the job runs.
    pub fn begin_flush(&mut self) -> Option<FlushJob> {
        if self.failed {
            return None;
        }
        let checkpoint = self.last_recovery_point.elapsed() >= RECOVERY_POINT_INTERVAL;
        self.begin_flush_job(checkpoint)
    }

    fn begin_flush_job(&mut self, checkpoint: bool) -> Option<FlushJob> {
        if self.next_offset <= self.flushed_offset {
            return None;
        }
        let generation = self.generation();
        let active = self.active();
        let index = active.index.get().expect("active segment index is loaded");
        let files = if checkpoint {
            vec![active.log.clone(), index.index_file.clone(), index.time_file.clone()]
        } else {
            vec![active.log.clone()]
        };
        let job = FlushJob {
            files,
            point: RecoveryPoint {
                flushed: self.next_offset,
                segment_base: active.base,
                position: active.size,
                max_ts: index.max_ts,
            },
            generation,
            checkpoint: checkpoint.then(|| (self.dir.clone(), self.flush_generation.clone())),
        };
        if checkpoint {
            self.last_recovery_point = Instant::now();
        }
        self.begun_offset = self.next_offset;
        self.unbegun_since_ms = None;
        Some(job)
    }

    /// Marks a run job's target durable and persists the recovery checkpoint. Stale
    /// jobs (overtaken by a later flush or roll, or begun before a truncation) are
    /// ignored: the flushed offset only moves forward.
    pub fn complete_flush(&mut self, job: FlushJob) -> Result<()> {
        if job.generation != self.generation() || job.point.flushed <= self.flushed_offset {
            return Ok(());
        }
        // A roll since begin_flush would have moved flushed_offset past the target.
        assert_eq!(job.point.segment_base, self.active().base);
        assert!(job.point.flushed <= self.next_offset);
        self.flushed_offset = job.point.flushed;
        self.check_invariants();
        Ok(())
    }

    /// A flush job failed ([`FlushJob::run`] returned an error). After a failed fsync
    /// the kernel may have dropped the dirty pages while marking them clean
    /// ("fsyncgate"), so no later fsync can prove them durable: the log refuses every
    /// write and flush from now on ([`StorageError::Failed`]) and its flushed offset
    /// never moves again. Reopening it (a restart) recovers from what is on disk.
    pub fn fail_flush(&mut self) {
        if !self.failed {
            tracing::error!(dir = %self.dir.display(), flushed = %self.flushed_offset, log_end = %self.next_offset,
                "an fsync failed: the log takes no more writes until it is reopened");
        }
        self.failed = true;
    }

    /// Whether a failed write or fsync stopped this log ([`PartitionLog::fail_flush`]).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// [`begin_flush`](Self::begin_flush), [`FlushJob::run`] and
    /// [`complete_flush`](Self::complete_flush) inline.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(job) = self.begin_flush_job(true) {
            job.run().map_err(io(&self.active().log_path))?;
            self.complete_flush(job)?;
        }
        debug_assert_eq!(self.flushed_offset, self.next_offset);
        Ok(())
    }

    /// Clean shutdown: flushes everything, closes the active segment's time index, and
    /// writes the clean-shutdown marker so the next open scans nothing.
    pub fn close(mut self) -> Result<()> {
        self.ensure_writable()?;
        self.flush()?;
        let leo = self.next_offset;
        let active = self.segments.last_mut().expect("at least one segment");
        let base = active.base;
        let size = active.size;
        let index = active.index.get_mut().expect("active segment index is loaded");
        if index.push_time_entry_if_grown(base) {
            index.write_tail(&segment::NewEntries { offsets: 0, times: 1 }).map_err(io(&active.log_path))?;
        }
        index.sync().map_err(io(&active.log_path))?;
        self.write_producer_snapshot(leo)?;
        let marker: Vec<u8> = [leo.0, base.0, size as i64].iter().flat_map(|v| v.to_be_bytes()).collect();
        checkpoint::write(&self.dir, CLEAN_SHUTDOWN_FILE, &marker)?;
        tracing::info!(dir = %self.dir.display(), log_end_offset = %leo, "closed partition log");
        Ok(())
    }

    /// Deletes the partition's directory and everything in it.
    pub fn delete(self) -> Result<()> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir).map_err(io(&dir))
    }
}

/// Splits `buf` into its batches (headers checked, sizes within `max_message_bytes`,
/// exactly covering the buffer). No CRC check: the caller validated the batches.
fn frame_batches(buf: &[u8], max_message_bytes: u64) -> Result<Vec<(std::ops::Range<usize>, BatchHeader)>> {
    if buf.is_empty() {
        return Err(BatchError::Empty.into());
    }
    let mut out = Vec::new();
    let mut pos = 0;
    // Each iteration consumes at least a header.
    while pos < buf.len() {
        let h = BatchHeader::parse(&buf[pos..])?;
        h.check()?;
        let size = h.total_size();
        if size as u64 > max_message_bytes {
            return Err(StorageError::BatchTooLarge { size, max: max_message_bytes });
        }
        if pos + size > buf.len() {
            return Err(BatchError::Truncated { needed: size, available: buf.len() - pos }.into());
        }
        out.push((pos..pos + size, h));
        pos += size;
    }
    Ok(out)
}

/// The producer metadata of a batch placed at `first_offset`, if it carries a producer
/// id (control batches only mark transactions and carry no sequence).
fn producer_batch(h: &BatchHeader, first_offset: Offset) -> Option<BatchMeta> {
    if h.producer_id < 0 || h.is_control() {
        return None;
    }
    let last_seq =
        if h.base_sequence >= 0 { producer_state::last_sequence(h.base_sequence, h.last_offset_delta) } else { -1 };
    Some(BatchMeta {
        first_seq: h.base_sequence,
        last_seq,
        first_offset,
        last_offset: first_offset.plus(i64::from(h.last_offset_delta)),
    })
}

/// Removes index files whose log file is gone (a crash while deleting a segment).
fn remove_orphan_indexes(dir: &Path, bases: &[Offset]) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let base = parse_segment_name(name, segment::INDEX_SUFFIX)
            .or_else(|| parse_segment_name(name, segment::TIME_INDEX_SUFFIX));
        if base.is_some_and(|b| bases.binary_search(&b).is_err()) {
            fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
        }
    }
    Ok(())
}

#[allow(dead_code)]
fn assert_send() {
    fn is_send<T: Send>() {}
    is_send::<PartitionLog>();
    is_send::<FlushJob>();
    fn is_static<T: 'static>() {}
    is_static::<FlushJob>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{batch, batches, BatchSpec};

    #[test]
    fn recovery_point_round_trips() {
        for max_ts in [None, Some((-1, Offset(4))), Some((i64::MAX, Offset(9)))] {
            let p = RecoveryPoint { flushed: Offset(10), segment_base: Offset(4), position: 999, max_ts };
            assert_eq!(RecoveryPoint::decode(&p.encode()), Some(p));
        }
        assert_eq!(RecoveryPoint::decode(&[0u8; 7]), None);
        let bad = RecoveryPoint { flushed: Offset(1), segment_base: Offset(4), position: 0, max_ts: None };
        assert_eq!(RecoveryPoint::decode(&bad.encode()), None, "flushed below the segment base");
        for outside in [Offset(3), Offset(10), Offset(77)] {
            let p =
                RecoveryPoint { flushed: Offset(10), segment_base: Offset(4), position: 9, max_ts: Some((5, outside)) };
            assert_eq!(RecoveryPoint::decode(&p.encode()), None, "a max timestamp outside the flushed part");
        }
    }

    #[test]
    fn framing_splits_batches_and_enforces_the_size_limit() {
        let buf = batches(&[BatchSpec::records(2), BatchSpec::records(1)]);
        let framed = frame_batches(&buf, 1 << 20).unwrap();
        assert_eq!(framed.len(), 2);
        assert_eq!(framed[1].0.end, buf.len());
        assert!(matches!(frame_batches(&buf, 50), Err(StorageError::BatchTooLarge { .. })));
        assert!(matches!(frame_batches(&buf[..buf.len() - 1], 1 << 20), Err(StorageError::InvalidBatch(_))));
    }

    #[test]
    fn an_empty_log_opens_at_its_checkpointed_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), TopicConfig::default(), 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset(), log.size_bytes()), (Offset(0), Offset(0), 0));
        assert!(log.read(Offset(0), 100, Offset(0)).unwrap().bytes.is_empty());
        log.close().unwrap();
        let log = PartitionLog::open(dir.path(), TopicConfig::default(), 0).unwrap();
        assert_eq!(log.recovery_report(), &RecoveryReport { segments: 1, ..RecoveryReport::default() });
    }

    #[test]
    fn segment_jitter_takes_a_different_bit_off_segment_ms_per_partition() {
        let config = TopicConfig { segment_ms: 10_000, segment_jitter_ms: 4_000, ..TopicConfig::default() };
        let root = tempfile::tempdir().unwrap();
        let ages: Vec<i64> = (0..8)
            .map(|i| {
                let dir = root.path().join(format!("t-{i}"));
                let age = PartitionLog::open(&dir, config.clone(), 0).unwrap().roll_age_ms();
                assert_eq!(age, PartitionLog::open(&dir, config.clone(), 0).unwrap().roll_age_ms(), "replayable");
                age
            })
            .collect();
        assert!(ages.iter().all(|a| (6_001..=10_000).contains(a)), "{ages:?}");
        assert!(ages.iter().collect::<std::collections::BTreeSet<_>>().len() > 1, "spread: {ages:?}");
        let none = TopicConfig { segment_ms: 10_000, ..TopicConfig::default() };
        assert_eq!(PartitionLog::open(&root.path().join("x"), none, 0).unwrap().roll_age_ms(), 10_000);
    }

    /// Segments of a few batches, so that the epoch tests cross segment boundaries.
    pub(super) fn small() -> TopicConfig {
        TopicConfig { segment_bytes: 300, index_interval_bytes: 64, retention_ms: -1, ..TopicConfig::default() }
    }

    pub(super) fn open(dir: &Path) -> PartitionLog {
        PartitionLog::open(dir, small(), 0).unwrap()
    }

    /// Appends, as the leader of `epoch`, one batch of `records` records.
    fn lead(log: &mut PartitionLog, epoch: i32, records: i32) -> Result<AppendInfo> {
        let mut b = batch(&BatchSpec { base_timestamp: 50, max_timestamp: 60, ..BatchSpec::records(records) });
        log.append(&mut b, LeaderEpoch(epoch), 0)
    }

    /// A batch of `records` records as the leader of `epoch` stored it at `base`.
    pub(super) fn stored(base: i64, records: i32, epoch: i32) -> Vec<u8> {
        let mut b = batch(&BatchSpec { base_offset: base, ..BatchSpec::records(records) });
        batch::set_leader_epoch(&mut b, epoch);
        b
    }

    /// A transaction marker of `producer_id`: a control batch (attribute bit 5).
    fn control(base: i64, producer_id: i64, epoch: i32) -> Vec<u8> {
        let mut b = crate::testing::idempotent_batch(&BatchSpec::records(1), producer_id, 0, -1);
        let attributes = i16::from_be_bytes([b[batch::field::ATTRIBUTES], b[batch::field::ATTRIBUTES + 1]]) | 0x20;
        b[batch::field::ATTRIBUTES..batch::field::ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        let crc = batch::compute_crc(&b);
        b[batch::field::CRC..batch::field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
        batch::set_base_offset(&mut b, Offset(base));
        batch::set_leader_epoch(&mut b, epoch);
        b
    }

    fn recovery_point(dir: &Path) -> Option<RecoveryPoint> {
        checkpoint::read(dir, RECOVERY_POINT_FILE).unwrap().and_then(|b| RecoveryPoint::decode(&b))
    }

    /// fsyncgate: after a failed fsync a later successful one proves nothing, so the
    /// log must not report anything durable or take writes again.
    #[test]
    fn a_failed_fsync_stops_the_log_until_it_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        lead(&mut log, 1, 3).unwrap();
        log.flush().unwrap();
        let flushed = log.flushed_offset();
        lead(&mut log, 1, 2).unwrap();
        let job = log.begin_flush().expect("unflushed records");
        // The job's fsync fails (EIO); the caller reports it.
        drop(job);
        log.fail_flush();
        assert!(log.is_failed());
        assert!(log.begin_flush().is_none(), "no later flush can prove anything");
        assert_eq!(log.flushed_offset(), flushed);
        assert!(matches!(lead(&mut log, 1, 1), Err(StorageError::Failed(_))));
        assert!(matches!(log.append_replicated(&stored(5, 1, 1), 0), Err(StorageError::Failed(_))));
        drop(log);
        let log = PartitionLog::open(dir.path(), small(), 0).unwrap();
        assert!(!log.is_failed(), "reopening recovers");
        assert_eq!(log.log_end_offset(), Offset(5));
    }

    #[test]
    fn flush_jobs_persist_the_recovery_point_at_most_once_an_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), TopicConfig::default(), 0).unwrap();
        lead(&mut log, 0, 3).unwrap();
        let first = log.begin_flush().unwrap();
        assert!(first.checkpoint.is_some(), "the first flush after open persists the point");
        assert_eq!(first.files.len(), 3, "log and both indexes");
        first.run().unwrap();
        log.complete_flush(first).unwrap();
        assert_eq!(recovery_point(dir.path()).map(|p| p.flushed), Some(Offset(3)));

        lead(&mut log, 0, 2).unwrap();
        let second = log.begin_flush().unwrap();
        assert!(second.checkpoint.is_none(), "within the interval only the log file is fsynced");
        assert_eq!(second.files.len(), 1);
        second.run().unwrap();
        log.complete_flush(second).unwrap();
        assert_eq!(log.flushed_offset(), Offset(5), "durable all the same");
        assert_eq!(recovery_point(dir.path()).map(|p| p.flushed), Some(Offset(3)), "a stale point, safe");

        // A crash now scans from the stale point and keeps every record.
        drop(log);
        let log = PartitionLog::open(dir.path(), TopicConfig::default(), 0).unwrap();
        assert_eq!(log.log_end_offset(), Offset(5));
    }

    #[test]
    fn a_flush_job_begun_before_a_truncation_does_not_write_its_point_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), TopicConfig::default(), 0).unwrap();
        lead(&mut log, 0, 2).unwrap();
        lead(&mut log, 0, 3).unwrap();
        let stale = log.begin_flush().unwrap();
        assert!(stale.checkpoint.is_some());
        log.truncate_to(Offset(2)).unwrap();
        assert_eq!(recovery_point(dir.path()).map(|p| p.flushed), Some(Offset(2)));
        stale.run().unwrap();
        log.complete_flush(stale).unwrap();
        assert_eq!(recovery_point(dir.path()).map(|p| p.flushed), Some(Offset(2)), "the truncation's point stands");
        assert_eq!(log.flushed_offset(), Offset(2));
    }

    pub(super) fn epochs_of(log: &PartitionLog) -> Vec<(i32, i64)> {
        log.epoch_cache().entries().iter().map(|e| (e.epoch.0, e.start_offset.0)).collect()
    }

    fn epochs_on_disk(dir: &Path) -> Vec<(i32, i64)> {
        let cache = epochs::read(dir).unwrap().expect("a readable leader-epoch file");
        cache.entries().iter().map(|e| (e.epoch.0, e.start_offset.0)).collect()
    }

    pub(super) fn read_everything(log: &PartitionLog) -> Vec<u8> {
        log.read(log.log_start_offset(), usize::MAX, log.log_end_offset()).unwrap().bytes.to_vec()
    }

    /// Epochs 2 over [0, 5), 3 over [5, 10), 6 over [10, 12).
    fn three_epochs(log: &mut PartitionLog) {
        for (epoch, records) in [(2, 3), (2, 2), (3, 5), (6, 1), (6, 1)] {
            lead(log, epoch, records).unwrap();
        }
        assert_eq!(epochs_of(log), [(2, 0), (3, 5), (6, 10)]);
    }

    #[test]
    fn the_epoch_cache_is_persisted_at_each_new_epoch_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        assert_eq!(log.latest_epoch(), None);
        three_epochs(&mut log);
        assert_eq!(epochs_on_disk(dir.path()), [(2, 0), (3, 5), (6, 10)]);
        assert!(log.segment_count() > 1);
        log.close().unwrap();

        let log = open(dir.path());
        assert_eq!(epochs_of(&log), [(2, 0), (3, 5), (6, 10)]);
        assert_eq!(log.latest_epoch(), Some(LeaderEpoch(6)));
        assert_eq!(log.recovery_report().epoch_batches_scanned, 0, "loaded, not rebuilt");
    }

    #[test]
    fn a_missing_or_damaged_epoch_file_is_rebuilt_from_the_batches() {
        for damage in ["delete", "garble"] {
            let dir = tempfile::tempdir().unwrap();
            let mut log = open(dir.path());
            three_epochs(&mut log);
            log.close().unwrap();
            let path = dir.path().join(epochs::EPOCHS_FILE);
            match damage {
                "delete" => fs::remove_file(&path).unwrap(),
                _ => fs::write(&path, b"DLLE not really").unwrap(),
            }

            let log = open(dir.path());
            assert_eq!(epochs_of(&log), [(2, 0), (3, 5), (6, 10)], "{damage}");
            assert_eq!(log.recovery_report().epoch_batches_scanned, 5, "{damage}: every batch of every segment");
            assert_eq!(epochs_on_disk(dir.path()), [(2, 0), (3, 5), (6, 10)], "{damage}: written back");
            drop(log);
            let log = open(dir.path());
            assert_eq!(log.recovery_report().epoch_batches_scanned, 0, "{damage}");
        }
    }

    #[test]
    fn epoch_end_answers_offset_for_leader_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        assert_eq!(log.epoch_end(LeaderEpoch(0)), None, "an empty cache knows no epoch");
        three_epochs(&mut log);
        let end = |e| log.epoch_end(LeaderEpoch(e)).map(|(e, o)| (e.0, o.0));
        // Below the first cached epoch: Kafka answers with the first epoch's start.
        assert_eq!(end(1), Some((1, 0)));
        // A middle epoch ends where the next starts; an epoch the log never had is
        // answered with the largest below it.
        assert_eq!(end(2), Some((2, 5)));
        assert_eq!(end(3), Some((3, 10)));
        assert_eq!(end(5), Some((3, 10)));
        // The latest epoch ends at the log end.
        assert_eq!(end(6), Some((6, 12)));
        assert_eq!(end(7), None);
        assert_eq!(end(-1), None);

        assert_eq!(log.epoch_start_after(LeaderEpoch(1)), Some(Offset(0)));
        assert_eq!(log.epoch_start_after(LeaderEpoch(2)), Some(Offset(5)));
        assert_eq!(log.epoch_start_after(LeaderEpoch(4)), Some(Offset(10)));
        assert_eq!(log.epoch_start_after(LeaderEpoch(6)), None);
    }

    #[test]
    fn truncation_drops_the_epochs_past_the_new_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        three_epochs(&mut log);
        log.truncate_to(Offset(10)).unwrap();
        assert_eq!(epochs_of(&log), [(2, 0), (3, 5)]);
        assert_eq!(log.epoch_end(LeaderEpoch(3)), Some((LeaderEpoch(3), Offset(10))));
        assert_eq!(epochs_on_disk(dir.path()), [(2, 0), (3, 5)]);
        // Offset 7 is inside epoch 3's only batch [5, 10): the whole batch goes, and
        // the epoch with it.
        log.truncate_to(Offset(7)).unwrap();
        assert_eq!(log.log_end_offset(), Offset(5));
        assert_eq!(epochs_of(&log), [(2, 0)]);
        drop(log);
        let mut log = open(dir.path());
        assert_eq!(epochs_of(&log), [(2, 0)]);
        // A follower that truncated goes on with whatever its new leader sends.
        log.append_replicated(&stored(5, 2, 4), 0).unwrap();
        assert_eq!(epochs_of(&log), [(2, 0), (4, 5)]);
        log.truncate_to(Offset(0)).unwrap();
        assert_eq!(epochs_of(&log), []);
        assert_eq!(epochs_on_disk(dir.path()), []);
    }

    #[test]
    fn moving_the_log_start_trims_the_epochs_below_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        three_epochs(&mut log);
        log.delete_records_before(Offset(7)).unwrap();
        assert_eq!(epochs_of(&log), [(3, 7), (6, 10)]);
        assert_eq!(epochs_on_disk(dir.path()), [(3, 7), (6, 10)]);
        assert_eq!(log.epoch_end(LeaderEpoch(2)), Some((LeaderEpoch(2), Offset(7))));
        drop(log);
        let mut log = open(dir.path());
        assert_eq!(epochs_of(&log), [(3, 7), (6, 10)]);

        // Retention moves the log start by whole segments, and trims the same way.
        log.set_config(TopicConfig { retention_bytes: 0, ..small() });
        let outcome = log.apply_retention(0).unwrap();
        assert!(outcome.segments_deleted > 0);
        let start = log.log_start_offset().0;
        assert_eq!(epochs_of(&log)[0], (if start >= 10 { 6 } else { 3 }, start));
        assert_eq!(epochs_on_disk(dir.path()), epochs_of(&log));

        // Deleting every record keeps the latest epoch, at the log end, until a reopen
        // (as Kafka, where an entry at the log end holds nothing and is dropped at load).
        log.delete_records_before(Offset(12)).unwrap();
        assert_eq!(epochs_of(&log), [(6, 12)]);
        drop(log);
        let mut log = open(dir.path());
        assert_eq!(epochs_of(&log), []);
        lead(&mut log, 6, 1).unwrap();
        assert_eq!(epochs_of(&log), [(6, 12)]);
    }

    #[test]
    fn the_leader_append_refuses_an_epoch_older_than_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        lead(&mut log, 5, 2).unwrap();
        let before = read_everything(&log);
        assert!(matches!(
            lead(&mut log, 4, 1),
            Err(StorageError::StaleLeaderEpoch { epoch: LeaderEpoch(4), latest: LeaderEpoch(5) })
        ));
        assert!(matches!(lead(&mut log, -1, 1), Err(StorageError::InvalidLeaderEpoch(LeaderEpoch(-1)))));
        assert_eq!(log.log_end_offset(), Offset(2));
        assert_eq!(read_everything(&log), before, "nothing written");
        assert_eq!(epochs_of(&log), [(5, 0)]);
        // The same epoch goes on; a newer one opens an entry.
        lead(&mut log, 5, 1).unwrap();
        lead(&mut log, 8, 1).unwrap();
        assert_eq!(epochs_of(&log), [(5, 0), (8, 3)]);
    }

    #[test]
    fn a_replicated_append_stores_the_leaders_batches_byte_for_byte() {
        let leader_dir = tempfile::tempdir().unwrap();
        let config = TopicConfig { timestamp_type: TimestampType::LogAppendTime, ..small() };
        let mut leader = PartitionLog::open(leader_dir.path(), config.clone(), 0).unwrap();
        for (epoch, records, now_ms) in [(1, 3, 100), (1, 1, 110), (2, 4, 120), (4, 2, 130), (4, 1, 140)] {
            let mut b = batch(&BatchSpec::records(records));
            leader.append(&mut b, LeaderEpoch(epoch), now_ms).unwrap();
        }
        let leader_bytes = read_everything(&leader);
        let framed = batch::validate_batches(&leader_bytes).unwrap();
        assert_eq!(framed.len(), 5);

        // The follower's topic uses CreateTime: nothing may be restamped anyway.
        let follower_dir = tempfile::tempdir().unwrap();
        let mut follower = open(follower_dir.path());
        // One push with the first two batches, then one batch per push.
        let info = follower.append_replicated(&leader_bytes[..framed[1].0.end], 999).unwrap();
        assert_eq!((info.first_offset, info.last_offset, info.max_timestamp), (Offset(0), Offset(3), 110));
        assert!(!info.duplicate && info.log_append_time_ms.is_none());
        for (range, _) in &framed[2..] {
            follower.append_replicated(&leader_bytes[range.clone()], 999).unwrap();
        }
        assert_eq!(read_everything(&follower), leader_bytes);
        assert_eq!(follower.log_end_offset(), leader.log_end_offset());
        assert_eq!(epochs_of(&follower), epochs_of(&leader));
        assert_eq!(epochs_of(&follower), [(1, 0), (2, 4), (4, 8)]);
        assert!(follower.segment_count() > 1, "rolled as the leader's append does");
        // Reads through the index find every batch.
        for (range, h) in &framed {
            let r = follower.read(h.base_offset, 1, follower.log_end_offset()).unwrap();
            assert_eq!(&r.bytes[..], &leader_bytes[range.clone()]);
        }
        follower.close().unwrap();
        let follower = open(follower_dir.path());
        assert_eq!(read_everything(&follower), leader_bytes);
        assert_eq!(epochs_of(&follower), [(1, 0), (2, 4), (4, 8)]);
    }

    #[test]
    fn a_replicated_append_refuses_gaps_overlaps_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        assert!(matches!(
            log.append_replicated(&stored(5, 1, 0), 0),
            Err(StorageError::NonContiguous { expected: Offset(0), got: Offset(5) })
        ));
        log.append_replicated(&stored(0, 3, 0), 0).unwrap();
        assert!(matches!(
            log.append_replicated(&stored(1, 1, 0), 0),
            Err(StorageError::NonContiguous { expected: Offset(3), got: Offset(1) })
        ));
        // A gap between two batches of one push refuses the whole push.
        let push = [stored(3, 2, 0), stored(6, 1, 0)].concat();
        assert!(matches!(
            log.append_replicated(&push, 0),
            Err(StorageError::NonContiguous { expected: Offset(5), got: Offset(6) })
        ));
        let mut damaged = stored(3, 2, 0);
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(matches!(log.append_replicated(&damaged, 0), Err(StorageError::InvalidBatch(_))));
        assert!(matches!(log.append_replicated(&[], 0), Err(StorageError::InvalidBatch(_))));
        assert_eq!(log.log_end_offset(), Offset(3));
        assert_eq!(read_everything(&log), stored(0, 3, 0));
    }

    #[test]
    fn a_replicated_append_refuses_older_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        log.append_replicated(&stored(0, 2, 3), 0).unwrap();
        assert!(matches!(
            log.append_replicated(&stored(2, 1, 2), 0),
            Err(StorageError::StaleLeaderEpoch { epoch: LeaderEpoch(2), latest: LeaderEpoch(3) })
        ));
        // Epochs must not go back inside one push either.
        let push = [stored(2, 1, 5), stored(3, 1, 4)].concat();
        assert!(matches!(
            log.append_replicated(&push, 0),
            Err(StorageError::StaleLeaderEpoch { epoch: LeaderEpoch(4), latest: LeaderEpoch(5) })
        ));
        assert!(matches!(log.append_replicated(&stored(2, 1, -1), 0), Err(StorageError::InvalidLeaderEpoch(_))));
        assert_eq!(log.log_end_offset(), Offset(2));
        assert_eq!(epochs_of(&log), [(3, 0)]);
        assert_eq!(epochs_on_disk(dir.path()), [(3, 0)], "refused pushes leave the file alone");
        // Several new epochs in one push each get their entry.
        let push = [stored(2, 1, 3), stored(3, 2, 4), stored(5, 1, 4), stored(6, 1, 7)].concat();
        log.append_replicated(&push, 0).unwrap();
        assert_eq!(epochs_of(&log), [(3, 0), (4, 3), (7, 6)]);
        assert_eq!(epochs_on_disk(dir.path()), [(3, 0), (4, 3), (7, 6)]);
        // The leader path on a former follower: its epoch must be at least the latest.
        assert!(matches!(lead(&mut log, 6, 1), Err(StorageError::StaleLeaderEpoch { .. })));
        lead(&mut log, 7, 1).unwrap();
    }

    #[test]
    fn a_replicated_append_records_producers_unchecked_and_keeps_control_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let pid = 42;
        let producer = |base: i64, seq: i32| {
            let spec = BatchSpec { base_offset: base, ..BatchSpec::records(2) };
            let mut b = crate::testing::idempotent_batch(&spec, pid, 0, seq);
            batch::set_leader_epoch(&mut b, 1);
            b
        };
        // Sequences 0-1 then 7-8: the leader's own check would refuse the gap, but the
        // leader accepted it (say, after a producer reset), so the follower records it.
        let push = [producer(0, 0), producer(2, 7), control(4, pid, 1)].concat();
        let info = log.append_replicated(&push, 0).unwrap();
        assert_eq!(info.last_offset, Offset(4));
        assert_eq!(read_everything(&log), push, "the control batch is stored too");
        let entry = log.producer_state().get(pid).expect("the producer is known");
        let seqs: Vec<(i32, i32, i64)> =
            entry.batches.iter().map(|b| (b.first_seq, b.last_seq, b.first_offset.0)).collect();
        assert_eq!(seqs, [(0, 1, 0), (7, 8, 2)], "the control batch leaves producer state alone");

        // Become the leader: a producer's retry of what the old leader appended is
        // recognised, not appended twice.
        let mut retry = crate::testing::idempotent_batch(&BatchSpec::records(2), pid, 0, 7);
        let info = log.append(&mut retry, LeaderEpoch(2), 0).unwrap();
        assert!(info.duplicate);
        assert_eq!((info.first_offset, info.last_offset), (Offset(2), Offset(3)));
        assert_eq!(log.log_end_offset(), Offset(5));
    }

    #[test]
    fn a_crash_keeps_the_epoch_cache_consistent_with_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        three_epochs(&mut log);
        drop(log); // no close: a crash
        let log = open(dir.path());
        assert_eq!(epochs_of(&log), [(2, 0), (3, 5), (6, 10)]);
        assert_eq!(log.log_end_offset(), Offset(12));

        // A crash after the file got a new epoch but before its first batch was written.
        let mut ahead = log.epoch_cache().clone();
        ahead.assign(LeaderEpoch(9), Offset(12)).unwrap();
        epochs::write(dir.path(), &ahead).unwrap();
        drop(log);
        let mut log = open(dir.path());
        assert_eq!(epochs_of(&log), [(2, 0), (3, 5), (6, 10)]);
        assert_eq!(epochs_on_disk(dir.path()), [(2, 0), (3, 5), (6, 10)], "the entry past the log end is gone");

        // A crash that tears the first batch of a new epoch: recovery cuts the batch,
        // and its epoch goes with it.
        lead(&mut log, 7, 3).unwrap();
        assert_eq!(epochs_on_disk(dir.path()), [(2, 0), (3, 5), (6, 10), (7, 12)]);
        let active = log.active().log_path.clone();
        drop(log);
        let f = fs::OpenOptions::new().write(true).open(&active).unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len - 5).unwrap();
        drop(f);
        let mut log = open(dir.path());
        assert!(log.recovery_report().truncated_bytes > 0);
        assert_eq!(log.log_end_offset(), Offset(12));
        assert_eq!(epochs_of(&log), [(2, 0), (3, 5), (6, 10)]);
        assert_eq!(epochs_on_disk(dir.path()), [(2, 0), (3, 5), (6, 10)]);
        // The log goes on in epoch 6 as if epoch 7 had never written.
        lead(&mut log, 6, 1).unwrap();
        assert_eq!(log.epoch_end(LeaderEpoch(6)), Some((LeaderEpoch(6), Offset(13))));
    }
}
