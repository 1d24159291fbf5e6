//! Builders of valid RecordBatch v2 bytes for tests (of this crate and of the crates
//! above it). The records inside are filler bytes: storage never decodes them, but the
//! header is consistent (`record_count == last_offset_delta + 1`) and the CRC is right.

use crate::batch::{compute_crc, field, LOG_OVERHEAD_BYTES, MAGIC_V2};
use dlog_core::limits::RECORD_BATCH_HEADER_BYTES;

/// What one test batch looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpec {
    pub base_offset: i64,
    pub records: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    /// Filler bytes standing in for the records.
    pub payload_bytes: usize,
}

impl BatchSpec {
    /// `n` records, timestamps 0, 16 filler bytes, base offset 0 (append reassigns it).
    pub fn records(n: i32) -> BatchSpec {
        BatchSpec { base_offset: 0, records: n, base_timestamp: 0, max_timestamp: 0, payload_bytes: 16 }
    }
}

/// One valid batch per `spec`. The filler is derived from the spec so that different
/// batches have different bytes (a test that mixes them up notices).
pub fn batch(spec: &BatchSpec) -> Vec<u8> {
    assert!(spec.records >= 1, "a batch holds at least one record");
    let total = RECORD_BATCH_HEADER_BYTES + spec.payload_bytes;
    let mut b = vec![0u8; total];
    b[field::BASE_OFFSET..field::BASE_OFFSET + 8].copy_from_slice(&spec.base_offset.to_be_bytes());
    let batch_length = i32::try_from(total - LOG_OVERHEAD_BYTES).expect("test batch too large");
    b[field::BATCH_LENGTH..field::BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    b[field::LEADER_EPOCH..field::LEADER_EPOCH + 4].copy_from_slice(&(-1i32).to_be_bytes());
    b[field::MAGIC] = MAGIC_V2 as u8;
    b[field::LAST_OFFSET_DELTA..field::LAST_OFFSET_DELTA + 4].copy_from_slice(&(spec.records - 1).to_be_bytes());
    b[field::BASE_TIMESTAMP..field::BASE_TIMESTAMP + 8].copy_from_slice(&spec.base_timestamp.to_be_bytes());
    b[field::MAX_TIMESTAMP..field::MAX_TIMESTAMP + 8].copy_from_slice(&spec.max_timestamp.to_be_bytes());
    b[field::PRODUCER_ID..field::PRODUCER_ID + 8].copy_from_slice(&(-1i64).to_be_bytes());
    b[field::PRODUCER_EPOCH..field::PRODUCER_EPOCH + 2].copy_from_slice(&(-1i16).to_be_bytes());
    b[field::BASE_SEQUENCE..field::BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
    b[field::RECORD_COUNT..field::RECORD_COUNT + 4].copy_from_slice(&spec.records.to_be_bytes());
    let seed = (spec.records as u64)
        .wrapping_mul(31)
        .wrapping_add(spec.max_timestamp as u64)
        .wrapping_add(spec.payload_bytes as u64);
    for (i, byte) in b[RECORD_BATCH_HEADER_BYTES..].iter_mut().enumerate() {
        *byte = (seed.wrapping_add(i as u64).wrapping_mul(0x9e37_79b9) >> 13) as u8;
    }
    let crc = compute_crc(&b);
    b[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// One valid batch per `spec` from an idempotent producer: `producer_id`, `epoch` and
/// the first record's sequence number set in the header (CRC recomputed).
pub fn idempotent_batch(spec: &BatchSpec, producer_id: i64, epoch: i16, base_sequence: i32) -> Vec<u8> {
    let mut b = batch(spec);
    b[field::PRODUCER_ID..field::PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
    b[field::PRODUCER_EPOCH..field::PRODUCER_EPOCH + 2].copy_from_slice(&epoch.to_be_bytes());
    b[field::BASE_SEQUENCE..field::BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = compute_crc(&b);
    b[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Several batches concatenated, as one produce request carries them.
pub fn batches(specs: &[BatchSpec]) -> Vec<u8> {
    specs.iter().flat_map(batch).collect()
}
