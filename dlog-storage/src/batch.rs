//! The RecordBatch v2 header: the only part of the Kafka format storage understands.
//!
//! Layout (big-endian), offsets in bytes from the batch start:
//!
//! ```text
//!  0 baseOffset i64        8 batchLength i32      12 partitionLeaderEpoch i32
//! 16 magic i8             17 crc u32             21 attributes i16
//! 23 lastOffsetDelta i32  27 baseTimestamp i64   35 maxTimestamp i64
//! 43 producerId i64       51 producerEpoch i16   53 baseSequence i32
//! 57 recordCount i32      61 records...
//! ```
//!
//! `batchLength` counts the bytes after itself (so a batch occupies `12 + batchLength`
//! bytes). The CRC-32C covers `attributes` to the end of the batch, which is why the
//! broker may rewrite `baseOffset` and `partitionLeaderEpoch` without recomputing it.
//! Records are never decoded here; [`crate::records`] walks them.

use dlog_core::limits::RECORD_BATCH_HEADER_BYTES;
use dlog_core::Offset;
use std::ops::Range;

/// Byte offsets of the header fields, shared by the parser and the in-place rewriters.
pub(crate) mod field {
    pub const BASE_OFFSET: usize = 0;
    pub const BATCH_LENGTH: usize = 8;
    pub const LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const BASE_TIMESTAMP: usize = 27;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORD_COUNT: usize = 57;
}

/// Bytes before `batchLength`'s coverage starts: baseOffset + batchLength.
pub const LOG_OVERHEAD_BYTES: usize = 12;

/// Smallest legal `batchLength`: a header with no records.
pub const BATCH_LENGTH_MIN: i32 = (RECORD_BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;

/// The only batch format DLog stores.
pub const MAGIC_V2: i8 = 2;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
/// Attribute bit 3: timestamps are the broker's (LogAppendTime).
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// Why a buffer is not a valid RecordBatch v2 (sequence).
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    BadMagic(i8),
    #[error("bad record batch length {0} (minimum {BATCH_LENGTH_MIN})")]
    BadLength(i32),
    #[error("record batch CRC mismatch: header says {expected:#010x}, data gives {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("bad record count {record_count} for last offset delta {last_offset_delta}")]
    BadRecordCount { record_count: i32, last_offset_delta: i32 },
    #[error("no record batch in an empty buffer")]
    Empty,
    /// The records of an uncompressed batch do not match its header (Kafka's
    /// LogValidator refuses the same with INVALID_RECORD).
    #[error("invalid records: {0}")]
    InvalidRecords(String),
    /// A record timestamp outside the topic's window (INVALID_TIMESTAMP in Kafka).
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// Compressed records that do not inflate (CORRUPT_MESSAGE in Kafka).
    #[error("undecodable records: {0}")]
    Undecodable(String),
}

/// A parsed RecordBatch v2 header. Field names follow the Kafka protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: Offset,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}

fn be_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    i32::from_be_bytes(b)
}

fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

impl BatchHeader {
    /// Parses the 61-byte header at the start of `buf`. Checks nothing but the length
    /// of `buf`: no magic, no CRC (callers that need them use [`BatchHeader::check`] or
    /// [`validate_batches`]).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < RECORD_BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated { needed: RECORD_BATCH_HEADER_BYTES, available: buf.len() });
        }
        Ok(BatchHeader {
            base_offset: Offset(be_i64(buf, field::BASE_OFFSET)),
            batch_length: be_i32(buf, field::BATCH_LENGTH),
            partition_leader_epoch: be_i32(buf, field::LEADER_EPOCH),
            magic: buf[field::MAGIC] as i8,
            crc: be_i32(buf, field::CRC) as u32,
            attributes: be_i16(buf, field::ATTRIBUTES),
            last_offset_delta: be_i32(buf, field::LAST_OFFSET_DELTA),
            base_timestamp: be_i64(buf, field::BASE_TIMESTAMP),
            max_timestamp: be_i64(buf, field::MAX_TIMESTAMP),
            producer_id: be_i64(buf, field::PRODUCER_ID),
            producer_epoch: be_i16(buf, field::PRODUCER_EPOCH),
            base_sequence: be_i32(buf, field::BASE_SEQUENCE),
            record_count: be_i32(buf, field::RECORD_COUNT),
        })
    }

    /// Checks what can be checked from the header alone: magic, a length at least a
    /// header's, and `record_count == last_offset_delta + 1 >= 1` (offsets are dense, so
    /// storage relies on that equality to know where the next batch starts counting).
    pub fn check(&self) -> Result<(), BatchError> {
        if self.magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(self.magic));
        }
        if self.batch_length < BATCH_LENGTH_MIN {
            return Err(BatchError::BadLength(self.batch_length));
        }
        if self.record_count < 1 || self.last_offset_delta < 0 || self.record_count - 1 != self.last_offset_delta {
            return Err(BatchError::BadRecordCount {
                record_count: self.record_count,
                last_offset_delta: self.last_offset_delta,
            });
        }
        Ok(())
    }

    /// Bytes the whole batch occupies: `12 + batch_length`.
    pub fn total_size(&self) -> usize {
        debug_assert!(self.batch_length >= 0, "total_size of an unchecked header");
        LOG_OVERHEAD_BYTES + self.batch_length.max(0) as usize
    }

    /// Offset of the last record: `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> Offset {
        Offset(self.base_offset.0 + i64::from(self.last_offset_delta))
    }

    /// Offset right after this batch.
    pub fn next_offset(&self) -> Offset {
        Offset(self.last_offset().0 + 1)
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression_codec(&self) -> u8 {
        (self.attributes & ATTR_COMPRESSION_MASK) as u8
    }

    pub fn timestamp_type_is_log_append(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }
}

/// CRC-32C of a whole batch's covered bytes (attributes to the end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    debug_assert!(batch.len() >= RECORD_BATCH_HEADER_BYTES);
    crc32c::crc32c(&batch[field::ATTRIBUTES..])
}

/// Checks the header and the CRC of one complete batch occupying all of `batch`.
pub fn check_batch(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    header.check()?;
    if header.total_size() != batch.len() {
        return Err(BatchError::BadLength(header.batch_length));
    }
    let actual = compute_crc(batch);
    if actual != header.crc {
        return Err(BatchError::CrcMismatch { expected: header.crc, actual });
    }
    Ok(header)
}

/// Validates a buffer holding one or more complete batches as a producer sent them:
/// magic 2, lengths consistent and exactly covering the buffer, CRC-32C matches,
/// `record_count >= 1` and `== last_offset_delta + 1`. Returns each batch's header and
/// byte range. Never decodes records.
pub fn validate_batches(buf: &[u8]) -> Result<Vec<(Range<usize>, BatchHeader)>, BatchError> {
    if buf.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut out = Vec::new();
    let mut pos = 0usize;
    // Each iteration consumes at least RECORD_BATCH_HEADER_BYTES, so this ends.
    while pos < buf.len() {
        let rest = &buf[pos..];
        let header = BatchHeader::parse(rest)?;
        header.check()?;
        let size = header.total_size();
        if size > rest.len() {
            return Err(BatchError::Truncated { needed: size, available: rest.len() });
        }
        check_batch(&rest[..size])?;
        out.push((pos..pos + size, header));
        pos += size;
    }
    debug_assert_eq!(pos, buf.len());
    Ok(out)
}

/// In-place rewrites used by append. Offsets and epoch lie outside the CRC.
pub(crate) fn set_base_offset(batch: &mut [u8], offset: Offset) {
    batch[field::BASE_OFFSET..field::BASE_OFFSET + 8].copy_from_slice(&offset.0.to_be_bytes());
}

pub(crate) fn set_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[field::LEADER_EPOCH..field::LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Stamps LogAppendTime: sets attribute bit 3, both timestamps to `now_ms`, and
/// recomputes the CRC since these fields are covered by it.
pub(crate) fn stamp_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = be_i16(batch, field::ATTRIBUTES) | ATTR_LOG_APPEND_TIME;
    batch[field::ATTRIBUTES..field::ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[field::BASE_TIMESTAMP..field::BASE_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    batch[field::MAX_TIMESTAMP..field::MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{batch, BatchSpec};

    /// An uncompressed batch of `deltas.len()` real records (one value byte each) with
    /// the given offset deltas, whose header claims `count` records.
    fn with_records(deltas: &[u8], count: i32) -> Vec<u8> {
        let mut records = Vec::new();
        for &d in deltas {
            // attributes, timestamp delta 0, offset delta, key -1 (null), value of 1 byte, no headers
            let body = [0u8, 0, d * 2, 1, 2, b'v', 0];
            records.push(body.len() as u8 * 2);
            records.extend_from_slice(&body);
        }
        let spec = BatchSpec { payload_bytes: records.len(), ..BatchSpec::records(count) };
        let mut b = batch(&spec);
        b[RECORD_BATCH_HEADER_BYTES..].copy_from_slice(&records);
        let crc = compute_crc(&b);
        b[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn records_must_match_the_header_count_and_be_dense() {
        use crate::records::{check_records, RecordLimits};
        let limits = RecordLimits::for_max_message_bytes(1024 * 1024);
        let ok = with_records(&[0, 1, 2], 3);
        assert_eq!(check_records(&ok, &check_batch(&ok).unwrap(), &limits), Ok(()));
        // The report: one real record under a header claiming 2,000,000,000 (the header's
        // own last offset delta agrees, so only walking the records tells).
        let claimed = with_records(&[0], 2_000_000_000);
        let h = check_batch(&claimed).unwrap();
        let e = check_records(&claimed, &h, &limits).unwrap_err();
        assert!(e.to_string().contains("counts 2000000000 records, the batch holds 1"), "{e}");
        let gap = with_records(&[0, 2], 2);
        assert!(check_records(&gap, &check_batch(&gap).unwrap(), &limits).is_err(), "offset deltas must be 0, 1, ...");
        let fewer = with_records(&[0, 1, 2], 2);
        assert!(check_records(&fewer, &check_batch(&fewer).unwrap(), &limits).is_err());
        let mut long = with_records(&[0], 1);
        long[RECORD_BATCH_HEADER_BYTES] = 100; // a record of 50 bytes in a 7-byte space
        assert!(check_records(&long, &BatchHeader::parse(&long).unwrap(), &limits).is_err());
        let mut endless = with_records(&[0], 1);
        for b in &mut endless[RECORD_BATCH_HEADER_BYTES..] {
            *b = 0xff; // a varint that never ends
        }
        assert!(check_records(&endless, &BatchHeader::parse(&endless).unwrap(), &limits).is_err());
    }

    #[test]
    fn parses_what_the_builder_writes() {
        let b = batch(&BatchSpec {
            base_offset: 7,
            records: 3,
            base_timestamp: 100,
            max_timestamp: 120,
            payload_bytes: 10,
        });
        let h = check_batch(&b).unwrap();
        assert_eq!(h.base_offset, Offset(7));
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset(), Offset(9));
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.max_timestamp, 120);
        assert_eq!(h.magic, 2);
        assert!(!h.is_control() && !h.is_transactional());
        assert_eq!(h.compression_codec(), 0);
        assert!(!h.timestamp_type_is_log_append());
    }

    #[test]
    fn validate_accepts_a_sequence_and_reports_ranges() {
        let mut buf = batch(&BatchSpec::records(2));
        let first = buf.len();
        buf.extend(batch(&BatchSpec::records(5)));
        let v = validate_batches(&buf).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].0, 0..first);
        assert_eq!(v[1].0, first..buf.len());
        assert_eq!(v[1].1.record_count, 5);
    }

    #[test]
    fn validate_rejects_each_kind_of_damage() {
        let good = batch(&BatchSpec::records(3));
        assert_eq!(validate_batches(&[]), Err(BatchError::Empty));
        assert!(matches!(validate_batches(&good[..30]), Err(BatchError::Truncated { .. })));
        assert!(matches!(validate_batches(&good[..good.len() - 1]), Err(BatchError::Truncated { .. })));

        let mut b = good.clone();
        b[field::MAGIC] = 1;
        assert_eq!(validate_batches(&b), Err(BatchError::BadMagic(1)));

        let mut b = good.clone();
        b[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(validate_batches(&b), Err(BatchError::BadLength(10)));

        let mut b = good.clone();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(validate_batches(&b), Err(BatchError::CrcMismatch { .. })));

        let mut b = good.clone();
        b[field::RECORD_COUNT..field::RECORD_COUNT + 4].copy_from_slice(&4i32.to_be_bytes());
        let crc = compute_crc(&b);
        b[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(validate_batches(&b), Err(BatchError::BadRecordCount { .. })));

        // Trailing garbage after a good batch is refused, not ignored.
        let mut b = good.clone();
        b.extend_from_slice(&[0u8; 5]);
        assert!(matches!(validate_batches(&b), Err(BatchError::Truncated { .. })));
    }

    #[test]
    fn offset_and_epoch_rewrites_keep_the_crc_valid() {
        let mut b = batch(&BatchSpec::records(2));
        set_base_offset(&mut b, Offset(1_000_000));
        set_leader_epoch(&mut b, 42);
        let h = check_batch(&b).unwrap();
        assert_eq!(h.base_offset, Offset(1_000_000));
        assert_eq!(h.partition_leader_epoch, 42);
    }

    #[test]
    fn log_append_time_stamp_recomputes_the_crc() {
        let mut b = batch(&BatchSpec::records(2));
        stamp_log_append_time(&mut b, 555);
        let h = check_batch(&b).unwrap();
        assert!(h.timestamp_type_is_log_append());
        assert_eq!((h.base_timestamp, h.max_timestamp), (555, 555));
    }
}
