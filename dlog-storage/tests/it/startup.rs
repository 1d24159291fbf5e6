//! Start-up cost does not grow with the size of closed segments.

use crate::util::*;
use dlog_core::{Offset, TopicConfig};
use dlog_storage::testing::{batches, BatchSpec};
use dlog_storage::PartitionLog;

const SEGMENT_BYTES: u64 = 64 << 20;
/// 1 GiB of closed segments (about 5 s to write, mostly page cache): a scan of it would
/// show in `bytes_scanned`, and in the open time.
const CLOSED_BYTES: u64 = 16 * SEGMENT_BYTES;

#[test]
fn reopen_scans_only_the_unflushed_tail() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        segment_bytes: SEGMENT_BYTES,
        max_message_bytes: 1 << 20,
        retention_ms: -1,
        ..TopicConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config.clone(), 0).unwrap();
    // 1 MiB appends of 16 batches of 64 KiB each.
    let specs: Vec<BatchSpec> = (0..16).map(|i| spec(10, i, (64 << 10) - 61)).collect();
    let template = batches(&specs);
    let mut now = 0;
    while log.size_bytes() < CLOSED_BYTES + (8 << 20) {
        now += 1;
        let mut buf = template.clone();
        log.append(&mut buf, EPOCH, now).unwrap();
    }
    assert!(log.segment_count() >= 5);
    let leo = log.log_end_offset();
    log.close().unwrap();

    let mut log = PartitionLog::open(dir.path(), config.clone(), now).unwrap();
    assert_eq!(log.recovery_report().bytes_scanned, 0);
    assert_eq!(log.log_end_offset(), leo);
    // Unclean stop with an unflushed tail: only that tail is scanned.
    log.flush().unwrap();
    let mut tail = 0;
    for _ in 0..3 {
        let (_, b) = append_one(&mut log, spec(2, 5, 1000), now);
        tail += b.len() as u64;
    }
    let leo = log.log_end_offset();
    drop(log);
    let log = PartitionLog::open(dir.path(), config, now).unwrap();
    assert_eq!(log.recovery_report().bytes_scanned, tail);
    assert_eq!(log.recovery_report().truncated_bytes, 0);
    assert_eq!(log.log_end_offset(), leo);
    // Reads anywhere still work (closed indexes load lazily).
    let r = log.read(Offset(12_345), 1, leo).unwrap();
    assert!(headers(&r.bytes)[0].last_offset() >= Offset(12_345));
}
