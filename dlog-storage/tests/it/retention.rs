//! Retention by time and by size: whole closed segments, oldest first, never the active.

use crate::util::*;
use dlog_core::{Offset, TopicConfig};

/// 10 segments of 4 batches each (segment i holds timestamps 1000 * i + 0..4).
fn ten_segments(config: &TopicConfig) -> (tempfile::TempDir, dlog_storage::PartitionLog, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config.clone());
    let mut seg_size = 0;
    for s in 0..10i64 {
        for b in 0..4i64 {
            let (_, bytes) = append_one(&mut log, spec(5, 1000 * s + b, 100), 0);
            if s == 0 {
                seg_size += bytes.len() as u64;
            }
        }
        log.maybe_roll(i64::MAX).unwrap();
    }
    (dir, log, seg_size)
}

fn config() -> TopicConfig {
    TopicConfig { segment_ms: 1, retention_ms: -1, retention_bytes: -1, ..TopicConfig::default() }
}

#[test]
fn retention_by_time_deletes_expired_closed_segments() {
    let (dir, mut log, seg_size) = ten_segments(&config());
    assert_eq!(log.segment_count(), 11, "10 closed plus an empty active");
    let nothing = log.apply_retention(10_000).unwrap();
    assert_eq!(nothing.segments_deleted, 0, "retention.ms = -1 keeps everything");
    let mut c = config();
    c.retention_ms = 5_000;
    log.set_config(c.clone());
    // Cutoff 8_500 - 5_000 = 3_500: segments 0..=3 (max timestamps 3 .. 3003) expire.
    let out = log.apply_retention(8_500).unwrap();
    assert_eq!(out.segments_deleted, 4);
    assert_eq!(out.bytes_deleted, 4 * seg_size);
    assert_eq!(out.log_start_offset, Offset(4 * 20));
    assert_eq!(log.log_start_offset(), Offset(80));
    assert!(log.read(Offset(79), 1, log.log_end_offset()).is_err());
    assert_eq!(headers(&log.read(Offset(80), 1, log.log_end_offset()).unwrap().bytes)[0].base_offset, Offset(80));
    // Everything expired: the active segment stays, empty or not.
    let out = log.apply_retention(i64::MAX).unwrap();
    assert_eq!(out.segments_deleted, 6);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_start_offset(), log.log_end_offset());
    drop(log);
    let log = open(dir.path(), c);
    assert_eq!(log.log_start_offset(), Offset(200));
    assert_eq!(log.log_end_offset(), Offset(200));
}

#[test]
fn retention_by_bytes_keeps_the_log_under_the_limit() {
    let (_dir, mut log, seg_size) = ten_segments(&config());
    let total = log.size_bytes();
    assert_eq!(total, 10 * seg_size);
    let mut c = config();
    c.retention_bytes = (3 * seg_size + 10) as i64;
    log.set_config(c);
    let out = log.apply_retention(0).unwrap();
    // Deletes while size - oldest >= limit: 10 -> 4 segments (4 * seg - seg = 3 seg < limit).
    assert_eq!(out.segments_deleted, 6);
    assert_eq!(log.size_bytes(), 4 * seg_size);
    assert_eq!(log.log_start_offset(), Offset(120));
    assert_eq!(read_all(&log).len() as u64, 4 * seg_size);
    let again = log.apply_retention(0).unwrap();
    assert_eq!(again.segments_deleted, 0);
}
