//! The leader-epoch cache: for every leader epoch that wrote to the log, the offset of
//! its first record (Kafka's `leader-epoch-checkpoint`, KIP-101 and KIP-279).
//!
//! A replica that comes back after a leadership change cannot tell from offsets alone
//! whether its tail is still the leader's: two leaders may have written different
//! records at the same offsets. Asking the leader where the replica's last epoch ends
//! (OffsetForLeaderEpoch, [`EpochCache::end_offset_for`]) and truncating there removes
//! exactly the divergent tail.
//!
//! Entries are strictly increasing in both epoch and start offset. The
//! [`PartitionLog`](crate::PartitionLog) keeps every entry's start between its log start
//! and its log end: it trims the cache when the log is truncated or its start moves.
//!
//! # On disk
//!
//! The file `leader-epochs` in the partition directory, replaced atomically (write,
//! fsync, rename, fsync the directory) whenever the cache changes. It is written *before*
//! the first batch of a new epoch, so that after a crash the file never lacks an epoch
//! present in the log; an entry it has beyond the recovered log end is dropped at open.
//!
//! Format (big-endian): magic `DLLE`, u16 version, u32 entry count, per entry i32 epoch
//! and i64 start offset, u32 CRC-32C of all the bytes before it. Not the checkpoint
//! module's framing: that one caps payloads at a size a long-lived partition's epochs
//! can outgrow.

use crate::checkpoint;
use crate::error::{Result, StorageError};
use dlog_core::{LeaderEpoch, Offset};
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

/// Name of the cache's file in the partition directory.
pub(crate) const EPOCHS_FILE: &str = "leader-epochs";

const MAGIC: &[u8; 4] = b"DLLE";
const VERSION: u16 = 1;
/// Bytes of one encoded entry: i32 epoch, i64 start offset.
const ENTRY_BYTES: usize = 12;
/// Magic, version and entry count.
const HEADER_BYTES: usize = 10;
const CRC_BYTES: usize = 4;

/// One leader epoch and the offset of its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: LeaderEpoch,
    pub start_offset: Offset,
}

/// The epochs of one partition log, oldest first. Pure: the log persists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    /// Strictly increasing in epoch and in start offset; every epoch >= 0.
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    /// A cache holding `entries`, or `None` if they are not strictly increasing in both
    /// epoch and start offset, or hold a negative epoch or offset.
    pub fn from_entries(entries: Vec<EpochEntry>) -> Option<EpochCache> {
        let valid = entries.iter().all(|e| e.epoch.0 >= 0 && e.start_offset.0 >= 0)
            && entries.windows(2).all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset);
        valid.then_some(EpochCache { entries })
    }

    /// Oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.latest().map(|e| e.epoch)
    }

    /// Whether batches of `epoch` may be appended at the log end: the epoch must be a
    /// real one (Kafka's `-1` means "none") and not older than the latest, since a
    /// leader of an older epoch has been replaced and its writes would fork the log.
    pub fn check_append(&self, epoch: LeaderEpoch) -> Result<()> {
        if epoch.0 < 0 {
            return Err(StorageError::InvalidLeaderEpoch(epoch));
        }
        match self.latest_epoch() {
            Some(latest) if epoch < latest => Err(StorageError::StaleLeaderEpoch { epoch, latest }),
            _ => Ok(()),
        }
    }

    /// Records that `epoch` starts at `start` (the log end, where its first batch goes).
    /// Returns whether the cache changed: not when `epoch` is already the latest.
    ///
    /// A latest entry starting at or after `start` is replaced: it can hold no record
    /// (the log end is `start`), which happens when DeleteRecords moved the log start
    /// to the log end and the kept entry's start with it.
    pub fn assign(&mut self, epoch: LeaderEpoch, start: Offset) -> Result<bool> {
        self.check_append(epoch)?;
        assert!(start.0 >= 0, "epoch {epoch} assigned at negative offset {start}");
        if self.latest_epoch() == Some(epoch) {
            return Ok(false);
        }
        // Bounded by the entries; at most one can start at the log end.
        while self.entries.last().is_some_and(|e| e.start_offset >= start) {
            self.entries.pop();
        }
        self.entries.push(EpochEntry { epoch, start_offset: start });
        self.check_invariants();
        Ok(true)
    }

    /// OffsetForLeaderEpoch, as Kafka answers it for a log ending at `log_end`:
    ///
    /// - `epoch` is the latest: `(epoch, log_end)` (it is still being written);
    /// - otherwise the largest cached epoch at or below `epoch`, and the start of the
    ///   next cached epoch, where it ended;
    /// - `epoch` is below every cached epoch (its records were removed from the log
    ///   start): `(epoch, start of the first cached epoch)`, so that a follower
    ///   truncates to no more than what this log still holds;
    /// - `None` (Kafka's `UNDEFINED_EPOCH_OFFSET`) for a negative `epoch`, one newer
    ///   than the latest, or an empty cache.
    pub fn end_offset_for(&self, epoch: LeaderEpoch, log_end: Offset) -> Option<(LeaderEpoch, Offset)> {
        let latest = self.latest()?;
        debug_assert!(latest.start_offset <= log_end, "epoch {} starts past the log end {log_end}", latest.epoch);
        if epoch.0 < 0 || epoch > latest.epoch {
            return None;
        }
        if epoch == latest.epoch {
            return Some((epoch, log_end));
        }
        // The first entry with a greater epoch exists: `epoch` is below the latest.
        let higher = self.entries.partition_point(|e| e.epoch <= epoch);
        let end = self.entries[higher].start_offset;
        match higher.checked_sub(1) {
            Some(floor) => Some((self.entries[floor].epoch, end)),
            None => Some((epoch, end)),
        }
    }

    /// Start offset of the first cached epoch greater than `epoch`: where a follower
    /// must cut its log to drop the epochs its leader never had.
    pub fn start_after(&self, epoch: LeaderEpoch) -> Option<Offset> {
        let i = self.entries.partition_point(|e| e.epoch <= epoch);
        self.entries.get(i).map(|e| e.start_offset)
    }

    /// Drops the entries starting at or after `end` (the log was truncated to end
    /// there). Returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end: Offset) -> bool {
        let keep = self.entries.partition_point(|e| e.start_offset < end);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        self.check_invariants();
        changed
    }

    /// Drops the entries wholly below `start` (the new log start): of those starting at
    /// or before it, only the latest stays, starting at `start` now (Kafka's
    /// `truncateFromStart`: the records before `start` are gone, their epoch is not).
    /// Returns whether the cache changed.
    pub fn truncate_from_start(&mut self, start: Offset) -> bool {
        let at_or_before = self.entries.partition_point(|e| e.start_offset <= start);
        let Some(kept) = at_or_before.checked_sub(1) else { return false };
        let changed = kept > 0 || self.entries[kept].start_offset < start;
        self.entries.drain(..kept);
        self.entries[0].start_offset = start;
        self.check_invariants();
        changed
    }

    /// The file bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.entries.len() * ENTRY_BYTES + CRC_BYTES);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        let count = u32::try_from(self.entries.len()).expect("fewer epochs than i32 values");
        out.extend_from_slice(&count.to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.epoch.0.to_be_bytes());
            out.extend_from_slice(&e.start_offset.0.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses file bytes; `None` if damaged or not a valid cache.
    pub fn decode(bytes: &[u8]) -> Option<EpochCache> {
        let body_len = bytes.len().checked_sub(CRC_BYTES)?;
        let (body, crc) = bytes.split_at(body_len);
        if body.len() < HEADER_BYTES || crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        if &body[..4] != MAGIC || u16::from_be_bytes([body[4], body[5]]) != VERSION {
            return None;
        }
        let count = u32::from_be_bytes(body[6..10].try_into().ok()?) as usize;
        let rest = &body[HEADER_BYTES..];
        // The length check bounds the allocation by the file's size.
        if rest.len() != count.checked_mul(ENTRY_BYTES)? {
            return None;
        }
        let entries = rest
            .chunks_exact(ENTRY_BYTES)
            .map(|c| EpochEntry {
                epoch: LeaderEpoch(i32::from_be_bytes([c[0], c[1], c[2], c[3]])),
                start_offset: Offset(i64::from_be_bytes([c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]])),
            })
            .collect();
        EpochCache::from_entries(entries)
    }

    fn check_invariants(&self) {
        debug_assert!(self.entries.iter().all(|e| e.epoch.0 >= 0 && e.start_offset.0 >= 0), "{self:?}");
        debug_assert!(
            self.entries.windows(2).all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset),
            "{self:?}"
        );
    }
}

/// The cache saved in `dir`; `None` when the file is missing or damaged (logged: the
/// caller rebuilds it from the log).
pub(crate) fn read(dir: &Path) -> Result<Option<EpochCache>> {
    let path = dir.join(EPOCHS_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(&path, e)),
    };
    let cache = EpochCache::decode(&bytes);
    if cache.is_none() {
        tracing::warn!(path = %path.display(), "ignoring damaged leader-epoch file");
    }
    Ok(cache)
}

/// Atomically replaces the cache's file in `dir`.
pub(crate) fn write(dir: &Path, cache: &EpochCache) -> Result<()> {
    checkpoint::replace(dir, EPOCHS_FILE, &cache.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        EpochCache::from_entries(
            entries.iter().map(|&(e, o)| EpochEntry { epoch: LeaderEpoch(e), start_offset: Offset(o) }).collect(),
        )
        .expect("valid entries")
    }

    fn pairs(c: &EpochCache) -> Vec<(i32, i64)> {
        c.entries().iter().map(|e| (e.epoch.0, e.start_offset.0)).collect()
    }

    #[test]
    fn assign_adds_newer_epochs_only() {
        let mut c = EpochCache::default();
        assert_eq!(c.latest_epoch(), None);
        assert!(c.assign(LeaderEpoch(1), Offset(0)).unwrap());
        assert!(!c.assign(LeaderEpoch(1), Offset(5)).unwrap(), "the latest epoch continues");
        assert!(c.assign(LeaderEpoch(4), Offset(10)).unwrap());
        assert_eq!(pairs(&c), [(1, 0), (4, 10)]);
        assert!(matches!(
            c.assign(LeaderEpoch(3), Offset(12)),
            Err(StorageError::StaleLeaderEpoch { epoch: LeaderEpoch(3), latest: LeaderEpoch(4) })
        ));
        assert!(matches!(c.assign(LeaderEpoch(-1), Offset(12)), Err(StorageError::InvalidLeaderEpoch(_))));
        assert_eq!(pairs(&c), [(1, 0), (4, 10)], "refusals change nothing");
        // An entry holding no record (start at the log end) gives way to a newer epoch.
        assert!(c.assign(LeaderEpoch(5), Offset(10)).unwrap());
        assert_eq!(pairs(&c), [(1, 0), (5, 10)]);
    }

    #[test]
    fn from_entries_refuses_unordered_entries() {
        let e = |epoch, start| EpochEntry { epoch: LeaderEpoch(epoch), start_offset: Offset(start) };
        assert!(EpochCache::from_entries(vec![e(1, 0), e(1, 5)]).is_none());
        assert!(EpochCache::from_entries(vec![e(1, 5), e(2, 5)]).is_none());
        assert!(EpochCache::from_entries(vec![e(2, 0), e(1, 5)]).is_none());
        assert!(EpochCache::from_entries(vec![e(-1, 0)]).is_none());
        assert!(EpochCache::from_entries(vec![]).is_some());
    }

    #[test]
    fn end_offset_for_answers_as_kafka_does() {
        let c = cache(&[(2, 10), (4, 20), (7, 35)]);
        let leo = Offset(50);
        let at = |e| c.end_offset_for(LeaderEpoch(e), leo).map(|(e, o)| (e.0, o.0));
        // Below every cached epoch: the requested epoch, ending where the first starts.
        assert_eq!(at(1), Some((1, 10)));
        assert_eq!(at(0), Some((0, 10)));
        // A cached epoch ends where the next starts.
        assert_eq!(at(2), Some((2, 20)));
        assert_eq!(at(4), Some((4, 35)));
        // An epoch this log never had: the largest below it, and where that one ended.
        assert_eq!(at(3), Some((2, 20)));
        assert_eq!(at(6), Some((4, 35)));
        // The latest epoch is still being written: it ends at the log end.
        assert_eq!(at(7), Some((7, 50)));
        // Undefined: newer than the latest, negative, or nothing cached.
        assert_eq!(at(8), None);
        assert_eq!(at(-1), None);
        assert_eq!(EpochCache::default().end_offset_for(LeaderEpoch(0), leo), None);
    }

    #[test]
    fn start_after_names_the_first_newer_epoch() {
        let c = cache(&[(2, 10), (4, 20), (7, 35)]);
        assert_eq!(c.start_after(LeaderEpoch(0)), Some(Offset(10)));
        assert_eq!(c.start_after(LeaderEpoch(2)), Some(Offset(20)));
        assert_eq!(c.start_after(LeaderEpoch(5)), Some(Offset(35)));
        assert_eq!(c.start_after(LeaderEpoch(7)), None);
        assert_eq!(EpochCache::default().start_after(LeaderEpoch(0)), None);
    }

    #[test]
    fn truncation_from_the_end_drops_entries_at_or_past_it() {
        let mut c = cache(&[(2, 10), (4, 20), (7, 35)]);
        assert!(!c.truncate_from_end(Offset(36)));
        assert!(c.truncate_from_end(Offset(35)));
        assert_eq!(pairs(&c), [(2, 10), (4, 20)]);
        assert!(c.truncate_from_end(Offset(10)));
        assert!(c.is_empty());
    }

    #[test]
    fn truncation_from_the_start_keeps_the_epoch_of_the_new_start() {
        let mut c = cache(&[(2, 10), (4, 20), (7, 35)]);
        assert!(!c.truncate_from_start(Offset(5)), "below the first entry: nothing to drop");
        assert!(!c.truncate_from_start(Offset(10)));
        assert!(c.truncate_from_start(Offset(25)));
        assert_eq!(pairs(&c), [(4, 25), (7, 35)]);
        assert!(c.truncate_from_start(Offset(35)));
        assert_eq!(pairs(&c), [(7, 35)]);
        assert!(c.truncate_from_start(Offset(60)));
        assert_eq!(pairs(&c), [(7, 60)]);
    }

    #[test]
    fn encoding_round_trips_and_rejects_damage() {
        for c in [EpochCache::default(), cache(&[(0, 0)]), cache(&[(2, 10), (4, 20), (i32::MAX, i64::MAX)])] {
            assert_eq!(EpochCache::decode(&c.encode()), Some(c));
        }
        let good = cache(&[(2, 10), (4, 20)]).encode();
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x40;
            assert_eq!(EpochCache::decode(&b), None, "flipped byte {i}");
        }
        assert_eq!(EpochCache::decode(&good[..good.len() - 1]), None);
        assert_eq!(EpochCache::decode(&[]), None);
        // A well-framed file whose entries are out of order is refused too.
        let mut bad = cache(&[(2, 10), (4, 20)]).encode();
        bad[10..14].copy_from_slice(&9i32.to_be_bytes());
        let crc = crc32c::crc32c(&bad[..bad.len() - 4]);
        let at = bad.len() - 4;
        bad[at..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(EpochCache::decode(&bad), None);
    }

    #[test]
    fn the_file_is_replaced_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let c = cache(&[(1, 0), (3, 7)]);
        write(dir.path(), &c).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(c));
        let mut grown = cache(&[(1, 0), (3, 7)]);
        // More entries than a checkpoint payload could hold.
        for e in 4..200 {
            grown.assign(LeaderEpoch(e), Offset(i64::from(e) * 10)).unwrap();
        }
        write(dir.path(), &grown).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(grown));
        fs::write(dir.path().join(EPOCHS_FILE), b"garbage").unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }
}
