//! Shared helpers: configs, batch builders and checks.

use dlog_core::{LeaderEpoch, Offset, TopicConfig};
use dlog_storage::testing::{batch, BatchSpec};
use dlog_storage::{validate_batches, AppendInfo, BatchHeader, PartitionLog};
use std::path::Path;

pub const EPOCH: LeaderEpoch = LeaderEpoch(3);

/// Small segments and a dense index so that tests cross boundaries.
pub fn small_config() -> TopicConfig {
    TopicConfig { segment_bytes: 1024, index_interval_bytes: 128, retention_ms: -1, ..TopicConfig::default() }
}

pub fn open(dir: &Path, config: TopicConfig) -> PartitionLog {
    PartitionLog::open(dir, config, 0).expect("open")
}

/// A batch of `records` records, max timestamp `ts`, `payload` filler bytes.
pub fn spec(records: i32, ts: i64, payload: usize) -> BatchSpec {
    BatchSpec { base_offset: 0, records, base_timestamp: ts, max_timestamp: ts, payload_bytes: payload }
}

/// Appends one batch; returns the stored bytes (offsets and epoch as rewritten).
pub fn append_one(log: &mut PartitionLog, s: BatchSpec, now_ms: i64) -> (AppendInfo, Vec<u8>) {
    let mut b = batch(&s);
    let info = log.append(&mut b, EPOCH, now_ms).expect("append");
    (info, b)
}

/// Headers of a buffer of whole batches, checking every CRC.
pub fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    if bytes.is_empty() {
        return Vec::new();
    }
    validate_batches(bytes).expect("read returns valid batches").into_iter().map(|(_, h)| h).collect()
}

/// Everything from the log start, batch by batch.
pub fn read_all(log: &PartitionLog) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    // Each read returns at least one batch, so this ends after at most LEO reads.
    while at < log.log_end_offset() {
        let r = log.read(at, 4096, log.log_end_offset()).expect("read");
        let hs = headers(&r.bytes);
        assert!(!hs.is_empty());
        at = hs.last().unwrap().last_offset().plus(1);
        out.extend_from_slice(&r.bytes);
    }
    out
}

pub fn offsets_of(bytes: &[u8]) -> Vec<(Offset, Offset)> {
    headers(bytes).iter().map(|h| (h.base_offset, h.last_offset())).collect()
}
