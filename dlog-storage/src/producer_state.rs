//! Idempotent producers' state in one partition: for each producer id, its current
//! epoch and the sequence numbers and offsets of its last [`BATCHES_KEPT`] batches.
//! [`PartitionLog::append`](crate::PartitionLog::append) checks every batch that carries
//! a producer id against it, as Kafka does:
//!
//! - an epoch older than the producer's current one is fenced ([`ProducerError::InvalidEpoch`]);
//! - a newer epoch starts over at sequence 0 (else [`ProducerError::OutOfOrder`]);
//! - in the same epoch, a batch whose first and last sequence equal one of the last five
//!   is a retry: it is not appended, and the original's offsets are returned;
//! - otherwise the batch must continue the last one's sequence (wrapping from
//!   `i32::MAX` to 0), else [`ProducerError::OutOfOrder`];
//! - an unknown producer id (never seen, or forgotten) may start at any sequence.
//!
//! # Snapshots
//!
//! The state is saved in `<20-digit offset>.producer-snapshot` files, each holding the
//! state of every batch below its offset: one when a segment is rolled (at the new
//! segment's base) and one at a clean close (at the log end). Opening the log loads the
//! newest snapshot not past the log end and replays batch headers from there, which is
//! nothing after a clean close and at most the active segment otherwise. Snapshots at
//! segment bases are kept while their segment is (truncation rebuilds from them);
//! other older ones are removed when a newer one is written.
//!
//! Format (big-endian): magic `DLPS`, u16 version, i64 covered offset, u32 producer
//! count, then per producer i64 id, i16 epoch, u8 batch count and per batch i32 first
//! sequence, i32 last sequence, i64 first offset, i64 last offset; u32 CRC-32C of all the
//! bytes before it.

use crate::checkpoint;
use crate::error::{Result, StorageError};
use dlog_core::Offset;
use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

/// Batches remembered per producer, as Kafka (and as clients' in-flight limit of 5).
pub const BATCHES_KEPT: usize = 5;

/// Suffix of snapshot files; the name before it is the covered offset in 20 digits.
pub(crate) const SNAPSHOT_SUFFIX: &str = ".producer-snapshot";

const MAGIC: &[u8; 4] = b"DLPS";
const VERSION: u16 = 1;

/// Where one appended batch of a producer sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: Offset,
    pub last_offset: Offset,
}

/// One producer's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first; at most [`BATCHES_KEPT`], all of `epoch`.
    pub batches: VecDeque<BatchMeta>,
}

/// What a batch that passed the checks is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New: append it.
    Append,
    /// A retry of this already-appended batch.
    Duplicate(BatchMeta),
}

/// Why a producer's batch is refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ProducerError {
    #[error("producer {producer_id}: epoch {epoch} is older than the current epoch {current}")]
    InvalidEpoch { producer_id: i64, epoch: i16, current: i16 },
    #[error("producer {producer_id} epoch {epoch}: sequence {first_seq} where {expected} was expected")]
    OutOfOrder { producer_id: i64, epoch: i16, first_seq: i32, expected: i32 },
}

/// The sequence number after `seq` (Kafka's wrap: `i32::MAX` is followed by 0).
pub fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// The last sequence of a batch starting at `base` with `last_offset_delta` more records.
pub fn last_sequence(base: i32, last_offset_delta: i32) -> i32 {
    debug_assert!(base >= 0 && last_offset_delta >= 0);
    if base > i32::MAX - last_offset_delta {
        last_offset_delta - (i32::MAX - base) - 1
    } else {
        base + last_offset_delta
    }
}

/// The state of every producer seen in a partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateMap {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateMap {
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Checks a batch of `producer_id` (>= 0) against the producer's state.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<SequenceCheck, ProducerError> {
        check_entry(self.producers.get(&producer_id), producer_id, epoch, first_seq, last_seq)
    }

    /// Records an appended (checked, or replayed from the log) batch.
    pub fn record(&mut self, producer_id: i64, epoch: i16, meta: BatchMeta) {
        let entry =
            self.producers.entry(producer_id).or_insert_with(|| ProducerEntry { epoch, batches: VecDeque::new() });
        record_entry(entry, epoch, meta);
    }

    /// Replaces (or adds) a producer's whole entry.
    pub(crate) fn put(&mut self, producer_id: i64, entry: ProducerEntry) {
        self.producers.insert(producer_id, entry);
    }

    /// Forgets producers whose last batch ends below `offset` (the log start: their
    /// batches are gone, as Kafka forgets them).
    pub fn remove_ended_before(&mut self, offset: Offset) {
        self.producers.retain(|_, e| e.batches.back().is_some_and(|b| b.last_offset >= offset));
    }

    /// The snapshot file bytes for a state covering every batch below `covers`.
    pub fn encode(&self, covers: Offset) -> Vec<u8> {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort();
        let mut out = Vec::with_capacity(22 + ids.len() * (11 + BATCHES_KEPT * 24));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&covers.0.to_be_bytes());
        out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let e = &self.producers[id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.0.to_be_bytes());
                out.extend_from_slice(&b.last_offset.0.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses snapshot bytes: the covered offset and the state; `None` if damaged.
    pub fn decode(bytes: &[u8]) -> Option<(Offset, ProducerStateMap)> {
        let body_len = bytes.len().checked_sub(4)?;
        let (body, crc) = bytes.split_at(body_len);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut r = Reader(body);
        if r.take(4)? != MAGIC || u16::from_be_bytes(r.take(2)?.try_into().ok()?) != VERSION {
            return None;
        }
        let covers = Offset(r.i64()?);
        let count = r.i32()? as u32;
        let mut map = ProducerStateMap::default();
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = i16::from_be_bytes(r.take(2)?.try_into().ok()?);
            let n = r.take(1)?[0] as usize;
            if n > BATCHES_KEPT {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: Offset(r.i64()?),
                    last_offset: Offset(r.i64()?),
                });
            }
            map.producers.insert(id, ProducerEntry { epoch, batches });
        }
        r.0.is_empty().then_some((covers, map))
    }
}

fn check_entry(
    entry: Option<&ProducerEntry>,
    producer_id: i64,
    epoch: i16,
    first_seq: i32,
    last_seq: i32,
) -> Result<SequenceCheck, ProducerError> {
    let current = entry.map_or(0, |e| e.epoch);
    if epoch < 0 {
        return Err(ProducerError::InvalidEpoch { producer_id, epoch, current });
    }
    let out_of_order = |expected| ProducerError::OutOfOrder { producer_id, epoch, first_seq, expected };
    if first_seq < 0 {
        return Err(out_of_order(
            entry.filter(|e| e.epoch == epoch).and_then(|e| e.batches.back()).map_or(0, |b| next_sequence(b.last_seq)),
        ));
    }
    let Some(entry) = entry else { return Ok(SequenceCheck::Append) };
    if epoch < entry.epoch {
        return Err(ProducerError::InvalidEpoch { producer_id, epoch, current });
    }
    if epoch > entry.epoch {
        // A bumped epoch (KIP-360) starts its sequences over.
        return if first_seq == 0 { Ok(SequenceCheck::Append) } else { Err(out_of_order(0)) };
    }
    if let Some(b) = entry.batches.iter().find(|b| b.first_seq == first_seq && b.last_seq == last_seq) {
        return Ok(SequenceCheck::Duplicate(*b));
    }
    match entry.batches.back() {
        None => Ok(SequenceCheck::Append),
        Some(last) if first_seq == next_sequence(last.last_seq) => Ok(SequenceCheck::Append),
        Some(last) => Err(out_of_order(next_sequence(last.last_seq))),
    }
}

fn record_entry(entry: &mut ProducerEntry, epoch: i16, meta: BatchMeta) {
    if epoch != entry.epoch {
        entry.epoch = epoch;
        entry.batches.clear();
    }
    entry.batches.push_back(meta);
    while entry.batches.len() > BATCHES_KEPT {
        entry.batches.pop_front();
    }
}

/// Checks and records several batches in order without touching `base` until the
/// caller commits: later batches of one append see the earlier ones.
#[derive(Debug, Default)]
pub(crate) struct PendingProducers {
    entries: HashMap<i64, ProducerEntry>,
}

impl PendingProducers {
    pub(crate) fn check_and_record(
        &mut self,
        base: &ProducerStateMap,
        producer_id: i64,
        epoch: i16,
        meta: BatchMeta,
    ) -> Result<SequenceCheck, ProducerError> {
        let entry = self.entries.get(&producer_id).or_else(|| base.get(producer_id));
        let check = check_entry(entry, producer_id, epoch, meta.first_seq, meta.last_seq)?;
        if check == SequenceCheck::Append {
            let entry = match self.entries.entry(producer_id) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(
                    base.get(producer_id).cloned().unwrap_or(ProducerEntry { epoch, batches: VecDeque::new() }),
                ),
            };
            record_entry(entry, epoch, meta);
        }
        Ok(check)
    }

    pub(crate) fn commit(self, base: &mut ProducerStateMap) {
        for (id, entry) in self.entries {
            base.put(id, entry);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

fn snapshot_name(offset: Offset) -> String {
    format!("{:020}{SNAPSHOT_SUFFIX}", offset.0)
}

/// Offsets of the snapshot files in `dir`, ascending.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<Offset>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
        let entry = entry.map_err(|e| StorageError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(digits) = name.strip_suffix(SNAPSHOT_SUFFIX) {
            if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(o) = digits.parse::<i64>() {
                    out.push(Offset(o));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the snapshot of `state` covering every batch below `covers`, atomically.
pub(crate) fn write_snapshot(dir: &Path, covers: Offset, state: &ProducerStateMap) -> Result<()> {
    checkpoint::replace(dir, &snapshot_name(covers), &state.encode(covers))
}

/// The snapshot at `offset`; `None` if missing or damaged (logged).
pub(crate) fn read_snapshot(dir: &Path, offset: Offset) -> Result<Option<ProducerStateMap>> {
    let path = dir.join(snapshot_name(offset));
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(&path, e)),
    };
    match ProducerStateMap::decode(&bytes) {
        Some((covers, map)) if covers == offset => Ok(Some(map)),
        _ => {
            tracing::warn!(path = %path.display(), "ignoring damaged producer-state snapshot");
            Ok(None)
        }
    }
}

/// Removes the snapshot at `offset` if present (the caller syncs the directory).
pub(crate) fn remove_snapshot(dir: &Path, offset: Offset) -> Result<()> {
    let path = dir.join(snapshot_name(offset));
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: i64 = 7;

    fn meta(first_seq: i32, last_seq: i32, first_offset: i64) -> BatchMeta {
        BatchMeta {
            first_seq,
            last_seq,
            first_offset: Offset(first_offset),
            last_offset: Offset(first_offset + i64::from(last_seq.wrapping_sub(first_seq))),
        }
    }

    /// A map where PID at `epoch` appended batches of 2 records: sequences 0..2*n.
    fn with_batches(epoch: i16, n: i32) -> ProducerStateMap {
        let mut m = ProducerStateMap::default();
        for i in 0..n {
            m.record(PID, epoch, meta(2 * i, 2 * i + 1, 100 + 2 * i64::from(i)));
        }
        m
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(next_sequence(5), 6);
        assert_eq!(next_sequence(i32::MAX), 0);
        assert_eq!(last_sequence(0, 0), 0);
        assert_eq!(last_sequence(10, 4), 14);
        assert_eq!(last_sequence(i32::MAX, 0), i32::MAX);
        assert_eq!(last_sequence(i32::MAX, 1), 0);
        assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn an_unknown_producer_may_start_anywhere() {
        let m = ProducerStateMap::default();
        assert_eq!(m.check(PID, 0, 0, 4), Ok(SequenceCheck::Append));
        assert_eq!(m.check(PID, 3, 12345, 12350), Ok(SequenceCheck::Append));
    }

    #[test]
    fn the_next_sequence_appends_and_a_gap_is_out_of_order() {
        let m = with_batches(0, 2); // sequences 0..=3
        assert_eq!(m.check(PID, 0, 4, 4), Ok(SequenceCheck::Append));
        assert_eq!(
            m.check(PID, 0, 6, 6),
            Err(ProducerError::OutOfOrder { producer_id: PID, epoch: 0, first_seq: 6, expected: 4 })
        );
        // Overlapping but not equal to a known batch: out of order too.
        assert!(matches!(m.check(PID, 0, 1, 2), Err(ProducerError::OutOfOrder { .. })));
        assert!(matches!(m.check(PID, 0, 2, 2), Err(ProducerError::OutOfOrder { .. })));
    }

    #[test]
    fn any_of_the_last_five_batches_is_a_duplicate_and_older_ones_are_not() {
        let m = with_batches(0, 7); // batches (0,1) .. (12,13); the last five start at 4
        for i in 2..7 {
            assert_eq!(
                m.check(PID, 0, 2 * i, 2 * i + 1),
                Ok(SequenceCheck::Duplicate(meta(2 * i, 2 * i + 1, 100 + 2 * i64::from(i))))
            );
        }
        assert!(matches!(m.check(PID, 0, 0, 1), Err(ProducerError::OutOfOrder { expected: 14, .. })));
        assert!(matches!(m.check(PID, 0, 2, 3), Err(ProducerError::OutOfOrder { .. })));
        assert_eq!(m.get(PID).unwrap().batches.len(), BATCHES_KEPT);
    }

    #[test]
    fn an_older_epoch_is_fenced() {
        let m = with_batches(3, 1);
        assert_eq!(m.check(PID, 2, 2, 2), Err(ProducerError::InvalidEpoch { producer_id: PID, epoch: 2, current: 3 }));
        // Even a retry of a batch that matched in the old epoch.
        assert!(matches!(m.check(PID, 2, 0, 1), Err(ProducerError::InvalidEpoch { .. })));
        assert!(matches!(m.check(PID, -1, 0, 0), Err(ProducerError::InvalidEpoch { .. })));
    }

    #[test]
    fn a_newer_epoch_starts_at_sequence_zero_and_forgets_the_old_batches() {
        let mut m = with_batches(0, 2);
        assert_eq!(m.check(PID, 1, 0, 0), Ok(SequenceCheck::Append));
        assert_eq!(
            m.check(PID, 1, 4, 4),
            Err(ProducerError::OutOfOrder { producer_id: PID, epoch: 1, first_seq: 4, expected: 0 })
        );
        // Not a duplicate of epoch 0's (0, 1): a new epoch's first batch.
        assert_eq!(m.check(PID, 1, 0, 1), Ok(SequenceCheck::Append));
        m.record(PID, 1, meta(0, 1, 200));
        let e = m.get(PID).unwrap();
        assert_eq!((e.epoch, e.batches.len()), (1, 1));
        assert_eq!(m.check(PID, 1, 0, 1), Ok(SequenceCheck::Duplicate(meta(0, 1, 200))));
        assert!(matches!(m.check(PID, 0, 4, 4), Err(ProducerError::InvalidEpoch { current: 1, .. })));
    }

    #[test]
    fn negative_sequences_are_refused() {
        let m = ProducerStateMap::default();
        assert!(matches!(m.check(PID, 0, -1, -1), Err(ProducerError::OutOfOrder { .. })));
    }

    #[test]
    fn sequences_continue_across_the_wrap() {
        let mut m = ProducerStateMap::default();
        m.record(PID, 0, meta(i32::MAX - 1, i32::MAX, 0));
        assert_eq!(m.check(PID, 0, 0, 3), Ok(SequenceCheck::Append));
        assert!(matches!(m.check(PID, 0, 1, 3), Err(ProducerError::OutOfOrder { expected: 0, .. })));
        m.record(PID, 0, BatchMeta { first_seq: 0, last_seq: 3, first_offset: Offset(2), last_offset: Offset(5) });
        assert_eq!(m.check(PID, 0, 4, 4), Ok(SequenceCheck::Append));
    }

    #[test]
    fn pending_batches_of_one_append_see_each_other_and_commit_together() {
        let base = with_batches(0, 1); // (0, 1)
        let mut p = PendingProducers::default();
        assert_eq!(p.check_and_record(&base, PID, 0, meta(2, 3, 102)), Ok(SequenceCheck::Append));
        assert_eq!(p.check_and_record(&base, PID, 0, meta(4, 4, 104)), Ok(SequenceCheck::Append));
        assert!(p.check_and_record(&base, PID, 0, meta(9, 9, 105)).is_err());
        assert_eq!(base.get(PID).unwrap().batches.len(), 1, "base untouched before commit");
        let mut base = base;
        p.commit(&mut base);
        assert_eq!(base.get(PID).unwrap().batches.len(), 3);
        assert_eq!(base.check(PID, 0, 5, 5), Ok(SequenceCheck::Append));
    }

    #[test]
    fn producers_whose_batches_are_all_below_the_log_start_are_forgotten() {
        let mut m = with_batches(0, 2); // offsets 100..=103
        m.record(8, 0, meta(0, 0, 500));
        m.remove_ended_before(Offset(104));
        assert!(m.get(PID).is_none());
        assert!(m.get(8).is_some());
    }

    #[test]
    fn snapshots_round_trip_and_reject_damage() {
        let mut m = with_batches(4, 6);
        m.record(5, 0, meta(i32::MAX, 0, 9));
        let bytes = m.encode(Offset(777));
        assert_eq!(ProducerStateMap::decode(&bytes), Some((Offset(777), m.clone())));
        for i in [0, 5, 20, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert_eq!(ProducerStateMap::decode(&bad), None, "flipped byte {i}");
        }
        assert_eq!(ProducerStateMap::decode(&bytes[..bytes.len() - 1]), None);
        let empty = ProducerStateMap::default();
        assert_eq!(ProducerStateMap::decode(&empty.encode(Offset(0))), Some((Offset(0), empty)));

        let dir = tempfile::tempdir().unwrap();
        write_snapshot(dir.path(), Offset(777), &m).unwrap();
        write_snapshot(dir.path(), Offset(5), &ProducerStateMap::default()).unwrap();
        assert_eq!(list_snapshots(dir.path()).unwrap(), vec![Offset(5), Offset(777)]);
        assert_eq!(read_snapshot(dir.path(), Offset(777)).unwrap(), Some(m));
        assert_eq!(read_snapshot(dir.path(), Offset(6)).unwrap(), None);
        remove_snapshot(dir.path(), Offset(777)).unwrap();
        assert_eq!(list_snapshots(dir.path()).unwrap(), vec![Offset(5)]);
    }
}
