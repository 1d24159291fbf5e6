//! One segment: a `.log` file of RecordBatch v2 bytes named by its base offset, with a
//! sparse offset index (`.index`) and a sparse time index (`.timeindex`).
//!
//! Index formats (big-endian):
//! - `.index`: entries of `u32` offset relative to the segment base, `u32` byte position
//!   of the batch starting at that offset. One entry every `index.interval.bytes` of log.
//! - `.timeindex`: entries of `i64` max timestamp so far, `u32` relative base offset of
//!   the first batch that reached it. Appended beside an offset-index entry when the max
//!   timestamp grew, and once more when the segment is closed, so the last entry of a
//!   closed segment is its max timestamp. Because an entry names the *first* batch that
//!   reached its timestamp, every batch before that offset is strictly older, which is
//!   what makes the lookup in [`Segment::time_floor`] safe.
//!
//! Both indexes are kept in memory (a few MB for a 1 GiB segment) and written with
//! `pwrite`. Closed segments load them lazily on first access, validating them; a
//! missing or damaged index is rebuilt by scanning the segment's batch headers.

use crate::batch::{check_batch, BatchError, BatchHeader};
use crate::error::{Result, StorageError};
use dlog_core::limits::RECORD_BATCH_HEADER_BYTES;
use dlog_core::Offset;
use std::cell::{Cell, OnceCell};
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";
const INDEX_ENTRY_BYTES: usize = 8;
const TIME_ENTRY_BYTES: usize = 12;

/// `dir/00000000000000000042.log` and friends.
pub(crate) fn segment_path(dir: &Path, base: Offset, suffix: &str) -> PathBuf {
    dir.join(format!("{:020}{suffix}", base.0))
}

/// The base offset named by a segment file name, if it is one of ours.
pub(crate) fn parse_segment_name(name: &str, suffix: &str) -> Option<Offset> {
    let stem = name.strip_suffix(suffix)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse::<i64>().ok().map(Offset)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub rel: u32,
    pub pos: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub ts: i64,
    pub rel: u32,
}

/// The in-memory copy of a segment's two indexes plus what they summarise.
#[derive(Debug)]
pub(crate) struct SegmentIndex {
    pub index_file: Arc<File>,
    pub time_file: Arc<File>,
    pub offsets: Vec<IndexEntry>,
    pub times: Vec<TimeEntry>,
    /// Largest batch max timestamp in the segment and the base offset of the first
    /// batch holding it; `None` for an empty segment.
    pub max_ts: Option<(i64, Offset)>,
    /// Log bytes appended since the last offset-index entry (drives the next entry).
    pub bytes_since_entry: u64,
}

/// Index entries produced by one append, to be written after the log bytes.
#[derive(Debug, Default)]
pub(crate) struct NewEntries {
    pub offsets: usize,
    pub times: usize,
}

impl SegmentIndex {
    /// An index with no entries over the given (already truncated or empty) files.
    pub(crate) fn empty(index_file: Arc<File>, time_file: Arc<File>) -> SegmentIndex {
        SegmentIndex {
            index_file,
            time_file,
            offsets: Vec::new(),
            times: Vec::new(),
            max_ts: None,
            bytes_since_entry: 0,
        }
    }

    /// Accounts for one batch appended at `pos`: adds the sparse entries it triggers.
    pub(crate) fn on_batch(&mut self, base: Offset, pos: u64, h: &BatchHeader, interval_bytes: u64) -> NewEntries {
        let mut added = NewEntries::default();
        let rel = rel_offset(base, h.base_offset);
        let pos32 = u32::try_from(pos).expect("segment positions fit in u32 (rolls enforce it)");
        if self.bytes_since_entry >= interval_bytes {
            debug_assert!(self.offsets.last().is_none_or(|e| e.rel < rel && e.pos < pos32));
            self.offsets.push(IndexEntry { rel, pos: pos32 });
            self.bytes_since_entry = 0;
            added.offsets = 1;
        }
        if self.max_ts.is_none_or(|(ts, _)| h.max_timestamp > ts) {
            self.max_ts = Some((h.max_timestamp, h.base_offset));
        }
        if added.offsets == 1 && self.push_time_entry_if_grown(base) {
            added.times = 1;
        }
        self.bytes_since_entry += h.total_size() as u64;
        added
    }

    /// Appends a time entry for the current max timestamp if it grew since the last one.
    pub(crate) fn push_time_entry_if_grown(&mut self, base: Offset) -> bool {
        match self.max_ts {
            Some((ts, off)) if self.times.last().is_none_or(|t| ts > t.ts) => {
                self.times.push(TimeEntry { ts, rel: rel_offset(base, off) });
                true
            }
            _ => false,
        }
    }

    /// Writes the last `n.offsets` / `n.times` entries at their places in the files.
    pub(crate) fn write_tail(&self, n: &NewEntries) -> std::io::Result<()> {
        for i in self.offsets.len() - n.offsets..self.offsets.len() {
            let e = self.offsets[i];
            let mut buf = [0u8; INDEX_ENTRY_BYTES];
            buf[..4].copy_from_slice(&e.rel.to_be_bytes());
            buf[4..].copy_from_slice(&e.pos.to_be_bytes());
            self.index_file.write_all_at(&buf, (i * INDEX_ENTRY_BYTES) as u64)?;
        }
        for i in self.times.len() - n.times..self.times.len() {
            let e = self.times[i];
            let mut buf = [0u8; TIME_ENTRY_BYTES];
            buf[..8].copy_from_slice(&e.ts.to_be_bytes());
            buf[8..].copy_from_slice(&e.rel.to_be_bytes());
            self.time_file.write_all_at(&buf, (i * TIME_ENTRY_BYTES) as u64)?;
        }
        Ok(())
    }

    /// Forgets the last `n` entries (an append that failed after updating them).
    pub(crate) fn undo(&mut self, n: &NewEntries) {
        self.offsets.truncate(self.offsets.len() - n.offsets);
        self.times.truncate(self.times.len() - n.times);
    }

    /// Replaces both files' contents with the in-memory entries.
    pub(crate) fn rewrite_files(&self) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(self.offsets.len() * INDEX_ENTRY_BYTES);
        for e in &self.offsets {
            buf.extend_from_slice(&e.rel.to_be_bytes());
            buf.extend_from_slice(&e.pos.to_be_bytes());
        }
        self.index_file.set_len(0)?;
        self.index_file.write_all_at(&buf, 0)?;
        let mut buf = Vec::with_capacity(self.times.len() * TIME_ENTRY_BYTES);
        for e in &self.times {
            buf.extend_from_slice(&e.ts.to_be_bytes());
            buf.extend_from_slice(&e.rel.to_be_bytes());
        }
        self.time_file.set_len(0)?;
        self.time_file.write_all_at(&buf, 0)
    }

    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.index_file.sync_data()?;
        self.time_file.sync_data()
    }
}

fn rel_offset(base: Offset, offset: Offset) -> u32 {
    u32::try_from(offset.0 - base.0).expect("relative offsets fit in u32 (rolls enforce it)")
}

/// How a scan of batches ended.
#[derive(Debug)]
pub(crate) struct ScanEnd {
    /// Byte position just after the last valid batch.
    pub valid_end: u64,
    /// Offset after the last valid batch.
    pub next_offset: Offset,
    /// Why the scan stopped before the end of the file, if it did.
    pub stopped: Option<String>,
}

/// One segment of the log.
#[derive(Debug)]
pub(crate) struct Segment {
    pub base: Offset,
    pub log_path: PathBuf,
    pub log: Arc<File>,
    /// Valid bytes in `.log` (== the file size outside an append).
    pub size: u64,
    /// Loaded eagerly for the active segment, lazily for closed ones.
    pub index: OnceCell<SegmentIndex>,
}

fn open_rw(path: &Path, truncate: bool) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
        .map_err(|e| StorageError::io(path, e))
}

impl Segment {
    /// Creates a new, empty segment (files truncated if they existed).
    pub(crate) fn create(dir: &Path, base: Offset) -> Result<Segment> {
        let log_path = segment_path(dir, base, LOG_SUFFIX);
        let log = open_rw(&log_path, true)?;
        let index = SegmentIndex::empty(
            Arc::new(open_rw(&segment_path(dir, base, INDEX_SUFFIX), true)?),
            Arc::new(open_rw(&segment_path(dir, base, TIME_INDEX_SUFFIX), true)?),
        );
        Ok(Segment { base, log_path, log: Arc::new(log), size: 0, index: OnceCell::from(index) })
    }

    /// Opens an existing segment without reading its log: only its size is known.
    pub(crate) fn open_existing(dir: &Path, base: Offset) -> Result<Segment> {
        let log_path = segment_path(dir, base, LOG_SUFFIX);
        let log = open_rw(&log_path, false)?;
        let size = log.metadata().map_err(|e| StorageError::io(&log_path, e))?.len();
        Ok(Segment { base, log_path, log: Arc::new(log), size, index: OnceCell::new() })
    }

    pub(crate) fn dir(&self) -> &Path {
        self.log_path.parent().unwrap_or(Path::new("."))
    }

    fn corrupt(&self, position: u64, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupt { path: self.log_path.clone(), position, reason: reason.into() }
    }

    /// The indexes, loading (and if need be rebuilding) them on first access. `end` is
    /// the offset after the segment's last batch. `rebuilt` counts rebuilds.
    pub(crate) fn index(&self, end: Offset, interval_bytes: u64, rebuilt: &Cell<usize>) -> Result<&SegmentIndex> {
        if let Some(index) = self.index.get() {
            return Ok(index);
        }
        let loaded = self.load_index(end)?;
        let index = match loaded {
            Ok(index) => index,
            Err((reason, index_file, time_file)) => {
                tracing::warn!(segment = %self.log_path.display(), %reason, "rebuilding segment index");
                rebuilt.set(rebuilt.get() + 1);
                self.rebuild_index(index_file, time_file, end, interval_bytes)?
            }
        };
        Ok(self.index.get_or_init(move || index))
    }

    /// Reads and validates the index files. The inner `Err` is "damaged: rebuild".
    #[allow(clippy::type_complexity)]
    fn load_index(&self, end: Offset) -> Result<Result<SegmentIndex, (String, Arc<File>, Arc<File>)>> {
        let dir = self.dir();
        let index_path = segment_path(dir, self.base, INDEX_SUFFIX);
        let time_path = segment_path(dir, self.base, TIME_INDEX_SUFFIX);
        let index_missing = !index_path.exists() || !time_path.exists();
        let index_file = Arc::new(open_rw(&index_path, false)?);
        let time_file = Arc::new(open_rw(&time_path, false)?);
        if index_missing {
            return Ok(Err(("index file missing".into(), index_file, time_file)));
        }
        let raw_index = read_all(&index_file, &index_path)?;
        let raw_time = read_all(&time_file, &time_path)?;
        match self.parse_indexes(&raw_index, &raw_time, end) {
            Ok((offsets, times)) => {
                let max_ts = times.last().map(|t| (t.ts, self.base.plus(i64::from(t.rel))));
                let last_pos = offsets.last().map_or(0, |e| u64::from(e.pos));
                Ok(Ok(SegmentIndex {
                    index_file,
                    time_file,
                    offsets,
                    times,
                    max_ts,
                    bytes_since_entry: self.size - last_pos,
                }))
            }
            Err(reason) => Ok(Err((reason, index_file, time_file))),
        }
    }

    /// Parses and checks both index files of a segment holding `[base, end)`.
    fn parse_indexes(
        &self,
        raw_index: &[u8],
        raw_time: &[u8],
        end: Offset,
    ) -> Result<(Vec<IndexEntry>, Vec<TimeEntry>), String> {
        if !raw_index.chunks_exact(INDEX_ENTRY_BYTES).remainder().is_empty()
            || !raw_time.chunks_exact(TIME_ENTRY_BYTES).remainder().is_empty()
        {
            return Err("index file size is not a whole number of entries".into());
        }
        let span = end.0 - self.base.0;
        let mut offsets = Vec::with_capacity(raw_index.len() / INDEX_ENTRY_BYTES);
        for chunk in raw_index.chunks_exact(INDEX_ENTRY_BYTES) {
            let e = IndexEntry {
                rel: u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                pos: u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            };
            if offsets.last().is_some_and(|p: &IndexEntry| p.rel >= e.rel || p.pos >= e.pos) {
                return Err("offset index entries not increasing".into());
            }
            if i64::from(e.rel) >= span || u64::from(e.pos) >= self.size {
                return Err("offset index entry past the end of the segment".into());
            }
            offsets.push(e);
        }
        let mut times = Vec::with_capacity(raw_time.len() / TIME_ENTRY_BYTES);
        for chunk in raw_time.chunks_exact(TIME_ENTRY_BYTES) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&chunk[..8]);
            let e = TimeEntry {
                ts: i64::from_be_bytes(ts),
                rel: u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]),
            };
            if times.last().is_some_and(|p: &TimeEntry| p.ts >= e.ts || p.rel >= e.rel) {
                return Err("time index entries not increasing".into());
            }
            if i64::from(e.rel) >= span {
                return Err("time index entry past the end of the segment".into());
            }
            times.push(e);
        }
        // A closed segment always ends with a time entry holding its max timestamp.
        if self.size > 0 && times.is_empty() {
            return Err("time index empty for a non-empty segment".into());
        }
        if self.size == 0 && (!offsets.is_empty() || !times.is_empty()) {
            return Err("index entries for an empty segment".into());
        }
        // Spot-check that entries point at batch starts: first, middle and last.
        let probes = [0, offsets.len() / 2, offsets.len().saturating_sub(1)];
        for &i in probes.iter().filter(|_| !offsets.is_empty()) {
            let e = offsets[i];
            match self.read_header(u64::from(e.pos)) {
                Ok(Some(h)) if h.base_offset == self.base.plus(i64::from(e.rel)) && h.check().is_ok() => {}
                _ => return Err(format!("offset index entry {i} does not point at its batch")),
            }
        }
        // The last time entry is the segment's max timestamp, which ListOffsets answers
        // with the batch it names: that batch must start at its offset and carry it.
        if let Some(t) = times.last() {
            let at = self.base.plus(i64::from(t.rel));
            let floor = offsets.partition_point(|e| e.rel <= t.rel).checked_sub(1).map(|i| offsets[i]);
            let (mut pos, mut expected) =
                floor.map_or((0, self.base), |e| (u64::from(e.pos), self.base.plus(i64::from(e.rel))));
            // Bounded by the batches of the segment: pos strictly grows.
            loop {
                match self.read_header(pos) {
                    Ok(Some(h)) if h.check().is_ok() && h.base_offset == expected && h.base_offset < at => {
                        pos += h.total_size() as u64;
                        expected = h.next_offset();
                    }
                    Ok(Some(h)) if h.check().is_ok() && h.base_offset == at && h.max_timestamp == t.ts => break,
                    _ => return Err("the last time index entry does not match its batch".into()),
                }
            }
        }
        Ok((offsets, times))
    }

    /// Rebuilds both indexes of a closed segment `[base, end)` by scanning its batch
    /// headers, and writes them out.
    fn rebuild_index(
        &self,
        index_file: Arc<File>,
        time_file: Arc<File>,
        end: Offset,
        interval_bytes: u64,
    ) -> Result<SegmentIndex> {
        let (index, scan) = self.build_index(index_file, time_file, interval_bytes)?;
        if scan.stopped.is_some() || scan.valid_end != self.size || scan.next_offset != end {
            return Err(self.corrupt(
                scan.valid_end,
                format!(
                    "closed segment does not hold [{}, {end}): {}",
                    self.base,
                    scan.stopped.unwrap_or_else(|| format!("ends at offset {}", scan.next_offset))
                ),
            ));
        }
        Ok(index)
    }

    /// Builds both indexes from a header-only scan of the whole segment and writes them
    /// out (durably). Header-only: this is for bytes already trusted (fsynced when the
    /// segment was closed, or just truncated and fsynced); only the index is recomputed.
    /// The caller checks where the scan ended.
    pub(crate) fn build_index(
        &self,
        index_file: Arc<File>,
        time_file: Arc<File>,
        interval_bytes: u64,
    ) -> Result<(SegmentIndex, ScanEnd)> {
        let mut index = SegmentIndex::empty(index_file, time_file);
        let scan = self.scan(0, self.base, false, |pos, h| {
            index.on_batch(self.base, pos, h, interval_bytes);
        })?;
        index.push_time_entry_if_grown(self.base);
        index.rewrite_files().map_err(|e| StorageError::io(&self.log_path, e))?;
        index.sync().map_err(|e| StorageError::io(&self.log_path, e))?;
        Ok((index, scan))
    }

    /// Opens the index files of this segment for (re)building.
    pub(crate) fn open_index_files(&self) -> Result<(Arc<File>, Arc<File>)> {
        let dir = self.dir();
        Ok((
            Arc::new(open_rw(&segment_path(dir, self.base, INDEX_SUFFIX), false)?),
            Arc::new(open_rw(&segment_path(dir, self.base, TIME_INDEX_SUFFIX), false)?),
        ))
    }

    /// The active segment's index after an unclean stop: the prefix of entries that
    /// were durable at the recovery checkpoint (`pos < keep_below_pos`, offsets below
    /// `keep_below_offset`, increasing), with the checkpoint's max timestamp. Entries
    /// after that are dropped: the recovery scan recomputes them.
    pub(crate) fn load_index_prefix(
        &self,
        keep_below_pos: u64,
        keep_below_offset: Offset,
        max_ts: Option<(i64, Offset)>,
    ) -> Result<SegmentIndex> {
        let (index_file, time_file) = self.open_index_files()?;
        let dir = self.dir();
        let raw_index = read_all(&index_file, &segment_path(dir, self.base, INDEX_SUFFIX))?;
        let raw_time = read_all(&time_file, &segment_path(dir, self.base, TIME_INDEX_SUFFIX))?;
        let span = keep_below_offset.0 - self.base.0;
        let mut offsets: Vec<IndexEntry> = Vec::new();
        for chunk in raw_index.chunks_exact(INDEX_ENTRY_BYTES) {
            let e = IndexEntry {
                rel: u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                pos: u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            };
            let increasing = offsets.last().is_none_or(|p| p.rel < e.rel && p.pos < e.pos);
            if !increasing || i64::from(e.rel) >= span || u64::from(e.pos) >= keep_below_pos {
                break;
            }
            offsets.push(e);
        }
        let mut times: Vec<TimeEntry> = Vec::new();
        let max = max_ts.map_or(i64::MIN, |(ts, _)| ts);
        for chunk in raw_time.chunks_exact(TIME_ENTRY_BYTES) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&chunk[..8]);
            let e = TimeEntry {
                ts: i64::from_be_bytes(ts),
                rel: u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]),
            };
            let increasing = times.last().is_none_or(|p| p.ts < e.ts && p.rel < e.rel);
            if !increasing || i64::from(e.rel) >= span || e.ts > max {
                break;
            }
            times.push(e);
        }
        // Spot-check that the kept entries point at batch starts (first and last); an
        // index that does not is dropped whole: the recovery scan re-adds the tail's
        // entries, and reads of the head fall back to scanning from the segment start.
        for e in [offsets.first().copied(), offsets.last().copied()].into_iter().flatten() {
            // An entry too close to the end for a whole header is as wrong as any other.
            let ok = match self.read_header_within(u64::from(e.pos), keep_below_pos) {
                Ok(Some(h)) => h.base_offset == self.base.plus(i64::from(e.rel)) && h.check().is_ok(),
                Ok(None) | Err(StorageError::Corrupt { .. }) => false,
                Err(e) => return Err(e),
            };
            if !ok {
                tracing::warn!(segment = %self.log_path.display(), "dropping an active-segment index that does not match the log");
                offsets.clear();
                break;
            }
        }
        let last_pos = offsets.last().map_or(0, |e| u64::from(e.pos));
        Ok(SegmentIndex { index_file, time_file, offsets, times, max_ts, bytes_since_entry: keep_below_pos - last_pos })
    }

    /// Scans batches from `pos` (expected to start at offset `expected`) to the end of
    /// the file, calling `each` for every valid batch, and stops at the first invalid one:
    /// partial header, length past the end, bad magic or counts, offsets not dense, and
    /// with `verify_crc` a CRC mismatch.
    pub(crate) fn scan(
        &self,
        mut pos: u64,
        mut expected: Offset,
        verify_crc: bool,
        mut each: impl FnMut(u64, &BatchHeader),
    ) -> Result<ScanEnd> {
        let file_len = self.log.metadata().map_err(|e| StorageError::io(&self.log_path, e))?.len();
        let mut buf = Vec::new();
        let mut header_buf = [0u8; RECORD_BATCH_HEADER_BYTES];
        // Every iteration advances pos by at least a header, so this is bounded by
        // file_len / RECORD_BATCH_HEADER_BYTES iterations.
        let stopped = loop {
            if pos == file_len {
                break None;
            }
            if pos + RECORD_BATCH_HEADER_BYTES as u64 > file_len {
                break Some(format!("partial batch header ({} bytes)", file_len - pos));
            }
            self.log.read_exact_at(&mut header_buf, pos).map_err(|e| StorageError::io(&self.log_path, e))?;
            let h = match BatchHeader::parse(&header_buf).and_then(|h| h.check().map(|()| h)) {
                Ok(h) => h,
                Err(e) => break Some(e.to_string()),
            };
            let size = h.total_size() as u64;
            if pos + size > file_len {
                break Some(format!("batch of {size} bytes runs past the end of the file"));
            }
            if h.base_offset != expected {
                break Some(format!("batch base offset {} where {expected} was expected", h.base_offset));
            }
            if verify_crc {
                buf.resize(size as usize, 0);
                self.log.read_exact_at(&mut buf, pos).map_err(|e| StorageError::io(&self.log_path, e))?;
                if let Err(e) = check_batch(&buf) {
                    break Some(e.to_string());
                }
            }
            each(pos, &h);
            pos += size;
            expected = h.next_offset();
        };
        Ok(ScanEnd { valid_end: pos, next_offset: expected, stopped })
    }

    /// The header of the batch at `pos`, or `None` at the end of the segment.
    pub(crate) fn read_header(&self, pos: u64) -> Result<Option<BatchHeader>> {
        self.read_header_within(pos, self.size)
    }

    /// The header of the batch at `pos` if a whole header lies below `end`.
    fn read_header_within(&self, pos: u64, end: u64) -> Result<Option<BatchHeader>> {
        if pos >= end {
            return Ok(None);
        }
        if pos + RECORD_BATCH_HEADER_BYTES as u64 > end {
            return Err(self.corrupt(pos, "partial batch header"));
        }
        let mut buf = [0u8; RECORD_BATCH_HEADER_BYTES];
        self.log.read_exact_at(&mut buf, pos).map_err(|e| StorageError::io(&self.log_path, e))?;
        Ok(Some(BatchHeader::parse(&buf)?))
    }

    /// The header at `pos`, which must be a valid batch starting at `expected`.
    pub(crate) fn batch_at(&self, pos: u64, expected: Offset) -> Result<Option<BatchHeader>> {
        let Some(h) = self.read_header(pos)? else { return Ok(None) };
        let check = |h: &BatchHeader| -> Result<(), String> {
            h.check().map_err(|e: BatchError| e.to_string())?;
            if h.base_offset != expected {
                return Err(format!("base offset {} where {expected} was expected", h.base_offset));
            }
            if pos + h.total_size() as u64 > self.size {
                return Err("batch runs past the end of the segment".into());
            }
            Ok(())
        };
        check(&h).map_err(|reason| self.corrupt(pos, reason))?;
        Ok(Some(h))
    }

    /// Byte position and base offset of the last indexed batch at or before `offset`.
    pub(crate) fn offset_floor(&self, index: &SegmentIndex, offset: Offset) -> (u64, Offset) {
        debug_assert!(offset >= self.base);
        let rel = offset.0 - self.base.0;
        let i = index.offsets.partition_point(|e| i64::from(e.rel) <= rel);
        match i.checked_sub(1) {
            Some(i) => (u64::from(index.offsets[i].pos), self.base.plus(i64::from(index.offsets[i].rel))),
            None => (0, self.base),
        }
    }

    /// An offset from which to scan for the first batch with `max_timestamp >= ts`:
    /// every batch before it is older than `ts`.
    pub(crate) fn time_floor(&self, index: &SegmentIndex, ts: i64) -> Offset {
        let i = index.times.partition_point(|e| e.ts < ts);
        match i.checked_sub(1) {
            Some(i) => self.base.plus(i64::from(index.times[i].rel)),
            None => self.base,
        }
    }

    /// The position and header of the batch containing `offset` (the first whose last
    /// offset is >= it), or `None` if the segment ends first.
    pub(crate) fn find_batch(&self, index: &SegmentIndex, offset: Offset) -> Result<Option<(u64, BatchHeader)>> {
        let (mut pos, mut expected) = self.offset_floor(index, offset);
        // Bounded by the batches in the segment: pos strictly grows.
        while let Some(h) = self.batch_at(pos, expected)? {
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_size() as u64;
            expected = h.next_offset();
        }
        Ok(None)
    }

    /// Reads `len` bytes at `pos` (within the segment) and appends them to `out`.
    pub(crate) fn read_into(&self, pos: u64, len: usize, out: &mut Vec<u8>) -> Result<()> {
        debug_assert!(pos + len as u64 <= self.size);
        let start = out.len();
        out.resize(start + len, 0);
        self.log.read_exact_at(&mut out[start..], pos).map_err(|e| StorageError::io(&self.log_path, e))
    }

    /// Deletes the segment's three files.
    pub(crate) fn delete_files(&self) -> Result<()> {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let path = segment_path(self.dir(), self.base, suffix);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(&path, e)),
            }
        }
        Ok(())
    }
}

fn read_all(file: &File, path: &Path) -> Result<Vec<u8>> {
    let len = file.metadata().map_err(|e| StorageError::io(path, e))?.len();
    let mut buf = vec![0u8; usize::try_from(len).map_err(|_| StorageError::io(path, ErrorKind::InvalidData.into()))?];
    file.read_exact_at(&mut buf, 0).map_err(|e| StorageError::io(path, e))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let dir = Path::new("/x");
        let p = segment_path(dir, Offset(42), LOG_SUFFIX);
        assert_eq!(p, Path::new("/x/00000000000000000042.log"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_name(name, LOG_SUFFIX), Some(Offset(42)));
        assert_eq!(parse_segment_name("42.log", LOG_SUFFIX), None);
        assert_eq!(parse_segment_name("00000000000000000042.index", LOG_SUFFIX), None);
    }
}
