//! Append and read: offsets, KIP-74 sizing, high-watermark cut, segment crossing,
//! LogAppendTime, timestamps, truncation and DeleteRecords.

use crate::util::*;
use dlog_core::{Offset, TimestampType, TopicConfig};
use dlog_storage::testing::{batch, batches};
use dlog_storage::{validate_batches, PartitionLog, StorageError};

#[test]
fn appends_assign_dense_offsets_and_stamp_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), TopicConfig::default());
    let mut buf = batches(&[spec(3, 10, 20), spec(1, 20, 5), spec(4, 15, 0)]);
    let info = log.append(&mut buf, EPOCH, 100).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (Offset(0), Offset(7)));
    assert_eq!(info.max_timestamp, 20);
    assert_eq!(info.log_append_time_ms, None);
    assert_eq!(log.log_end_offset(), Offset(8));
    let r = log.read(Offset(0), usize::MAX, log.log_end_offset()).unwrap();
    assert_eq!(&r.bytes[..], &buf[..], "stored bytes are the rewritten input");
    let hs = headers(&r.bytes);
    assert_eq!(hs.iter().map(|h| h.base_offset.0).collect::<Vec<_>>(), vec![0, 3, 4]);
    assert!(hs.iter().all(|h| h.partition_leader_epoch == EPOCH.0));
    assert_eq!((r.log_start_offset, r.log_end_offset), (Offset(0), Offset(8)));
}

#[test]
fn read_follows_kafka_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let mut sizes = Vec::new();
    for i in 0..40 {
        let (_, b) = append_one(&mut log, spec(2, i, 60), i);
        sizes.push(b.len());
    }
    assert!(log.segment_count() > 3, "small segments roll");
    let leo = log.log_end_offset();
    assert_eq!(leo, Offset(80));
    // Start inside a batch: that batch comes first.
    let r = log.read(Offset(5), 0, leo).unwrap();
    assert_eq!(offsets_of(&r.bytes), vec![(Offset(4), Offset(5))], "at least one batch even past max_bytes");
    // Without KIP-74's one batch (a fetch's later partitions), a batch that does not fit
    // is not read at all; one that fits is.
    let r = log.read_within(Offset(5), sizes[2] - 1, leo, false).unwrap();
    assert!(r.bytes.is_empty(), "nothing fits");
    let r = log.read_within(Offset(5), sizes[2], leo, false).unwrap();
    assert_eq!(offsets_of(&r.bytes), vec![(Offset(4), Offset(5))]);
    assert!(log.read_within(Offset(81), 0, leo, false).is_err(), "an offset out of range is still one");
    // max_bytes takes whole batches only.
    let r = log.read(Offset(4), sizes[2] * 3 + 10, leo).unwrap();
    assert_eq!(headers(&r.bytes).len(), 3);
    // Crosses segments.
    let r = log.read(Offset(0), usize::MAX, leo).unwrap();
    assert_eq!(headers(&r.bytes).len(), 40);
    // The high watermark cuts.
    let r = log.read(Offset(10), usize::MAX, Offset(15)).unwrap();
    assert_eq!(offsets_of(&r.bytes).last(), Some(&(Offset(14), Offset(15))));
    let r = log.read(Offset(10), usize::MAX, Offset(10)).unwrap();
    assert!(r.bytes.is_empty());
    // End and out of range.
    assert!(log.read(leo, 100, leo).unwrap().bytes.is_empty());
    assert!(matches!(log.read(Offset(81), 100, leo), Err(StorageError::OffsetOutOfRange { .. })));
    assert!(matches!(log.read(Offset(-1), 100, leo), Err(StorageError::OffsetOutOfRange { .. })));
    let e: dlog_core::Error = log.read(Offset(81), 100, leo).unwrap_err().into();
    assert_eq!(e, dlog_core::Error::OffsetOutOfRange { offset: 81, start: 0, end: 80 });
}

#[test]
fn log_append_time_rewrites_timestamps_with_a_valid_crc() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig { timestamp_type: TimestampType::LogAppendTime, ..TopicConfig::default() };
    let mut log = open(dir.path(), config);
    let mut buf = batches(&[spec(2, 5, 10), spec(3, 7, 10)]);
    let info = log.append(&mut buf, EPOCH, 12_345).unwrap();
    assert_eq!(info.log_append_time_ms, Some(12_345));
    assert_eq!(info.max_timestamp, 12_345);
    let r = log.read(Offset(0), usize::MAX, log.log_end_offset()).unwrap();
    let checked = validate_batches(&r.bytes).expect("CRC still valid after rewrite");
    for (_, h) in checked {
        assert!(h.timestamp_type_is_log_append());
        assert_eq!((h.base_timestamp, h.max_timestamp), (12_345, 12_345));
    }
}

#[test]
fn rejects_oversized_and_malformed_appends() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig { max_message_bytes: 100, ..TopicConfig::default() };
    let mut log = open(dir.path(), config);
    let mut big = batch(&spec(1, 0, 200));
    let e = log.append(&mut big, EPOCH, 0).unwrap_err();
    assert!(matches!(e, StorageError::BatchTooLarge { .. }), "{e}");
    assert!(matches!(dlog_core::Error::from(e), dlog_core::Error::RecordTooLarge { .. }));
    let mut short = batch(&spec(1, 0, 10));
    short.truncate(50);
    assert!(matches!(log.append(&mut short, EPOCH, 0), Err(StorageError::InvalidBatch(_))));
    assert!(matches!(log.append(&mut [], EPOCH, 0), Err(StorageError::InvalidBatch(_))));
    assert_eq!(log.log_end_offset(), Offset(0));
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn timestamps_find_the_first_batch_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    assert_eq!(log.find_batch_by_timestamp(0).unwrap(), None);
    assert_eq!(log.max_timestamp_batch().unwrap(), None);
    // Timestamps not monotonic: 0, 10, 5, 20, 15, ... with a peak of 1000 at batch 17.
    let mut stored = Vec::new();
    for i in 0..40i64 {
        let ts = if i == 17 || i == 30 {
            1000
        } else if i % 2 == 0 {
            i * 10
        } else {
            i * 10 - 15
        };
        stored.push((ts, append_one(&mut log, spec(1, ts, 40), i).1));
    }
    for target in [-5, 0, 1, 6, 95, 100, 250, 385, 390, 999, 1000] {
        let expect = stored.iter().find(|(ts, _)| *ts >= target).map(|(_, b)| b.clone());
        let got = log.find_batch_by_timestamp(target).unwrap().map(|b| b.to_vec());
        assert_eq!(got, expect, "target {target}");
    }
    assert_eq!(log.find_batch_by_timestamp(1001).unwrap(), None);
    let (ts, b) = log.max_timestamp_batch().unwrap().unwrap();
    assert_eq!(ts, 1000);
    assert_eq!(headers(&b)[0].base_offset, Offset(17), "first batch on ties");
    // After DeleteRecords past the peak, the second peak is found.
    log.delete_records_before(Offset(18)).unwrap();
    let (_, b) = log.max_timestamp_batch().unwrap().unwrap();
    assert_eq!(headers(&b)[0].base_offset, Offset(30));
    log.delete_records_before(Offset(31)).unwrap();
    let (ts, b) = log.max_timestamp_batch().unwrap().unwrap();
    assert_eq!((ts, headers(&b)[0].base_offset), (380, Offset(38)));
    assert_eq!(headers(&log.find_batch_by_timestamp(0).unwrap().unwrap())[0].base_offset, Offset(31));
}

#[test]
fn truncate_to_removes_the_tail_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..30 {
        append_one(&mut log, spec(3, i, 50), i);
    }
    let segments = log.segment_count();
    // Mid-batch offset rounds down to the batch start.
    log.truncate_to(Offset(40)).unwrap();
    assert_eq!(log.log_end_offset(), Offset(39));
    assert!(log.segment_count() < segments);
    assert_eq!(log.flushed_offset(), Offset(39));
    let all = read_all(&log);
    assert_eq!(offsets_of(&all).last(), Some(&(Offset(36), Offset(38))));
    let (info, _) = append_one(&mut log, spec(2, 99, 10), 100);
    assert_eq!(info.first_offset, Offset(39));
    log.truncate_to(Offset(1000)).unwrap();
    assert_eq!(log.log_end_offset(), Offset(41));
    // Survives reopen, clean and unclean.
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), Offset(41));
    assert_eq!(offsets_of(&read_all(&log)).len(), 14);
    let mut log = log;
    log.truncate_to(Offset(0)).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (Offset(0), Offset(0)));
    assert_eq!(log.segment_count(), 1);
    log.close().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), Offset(0));
}

#[test]
fn delete_records_moves_the_start_and_persists_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..30 {
        append_one(&mut log, spec(2, i, 50), i);
    }
    let segments = log.segment_count();
    assert_eq!(log.delete_records_before(Offset(25)).unwrap(), Offset(25));
    assert!(log.segment_count() < segments, "segments wholly below are deleted");
    assert_eq!(log.delete_records_before(Offset(3)).unwrap(), Offset(25), "never moves back");
    assert!(matches!(log.delete_records_before(Offset(61)), Err(StorageError::OffsetOutOfRange { .. })));
    assert!(matches!(log.read(Offset(24), 10, Offset(60)), Err(StorageError::OffsetOutOfRange { .. })));
    let r = log.read(Offset(25), 10, Offset(60)).unwrap();
    assert_eq!(offsets_of(&r.bytes), vec![(Offset(24), Offset(25))]);
    drop(log);
    let mut log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), Offset(25));
    assert_eq!(log.delete_records_before(Offset(60)).unwrap(), Offset(60));
    assert!(log.read(Offset(60), 10, Offset(60)).unwrap().bytes.is_empty());
    log.close().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (Offset(60), Offset(60)));
}

#[test]
fn group_commit_flushes_while_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig { flush_messages: 5, flush_ms: 1000, ..TopicConfig::default() };
    let mut log = open(dir.path(), config);
    assert!(log.begin_flush().is_none());
    append_one(&mut log, spec(2, 0, 10), 0);
    assert!(!log.flush_due(10));
    assert!(log.flush_due(1000), "flush.ms elapsed");
    append_one(&mut log, spec(3, 0, 10), 20);
    assert!(log.flush_due(21), "flush.messages reached");
    let job = log.begin_flush().unwrap();
    assert_eq!(job.target_offset(), Offset(5));
    assert!(!log.flush_due(5000), "covered by the job in flight");
    append_one(&mut log, spec(1, 0, 10), 30);
    let job = std::thread::spawn(move || {
        job.run().unwrap();
        job
    })
    .join()
    .unwrap();
    log.complete_flush(job).unwrap();
    assert_eq!(log.flushed_offset(), Offset(5));
    // Two jobs in flight completing out of order: the older one is stale and ignored.
    let older = log.begin_flush().unwrap();
    append_one(&mut log, spec(1, 0, 10), 40);
    let newer = log.begin_flush().unwrap();
    assert_eq!((older.target_offset(), newer.target_offset()), (Offset(6), Offset(7)));
    newer.run().unwrap();
    older.run().unwrap();
    log.complete_flush(newer).unwrap();
    log.complete_flush(older).unwrap();
    assert_eq!(log.flushed_offset(), Offset(7));
    // A job begun before a truncation never marks the replaced bytes durable.
    append_one(&mut log, spec(1, 0, 10), 50);
    let before = log.begin_flush().unwrap();
    log.truncate_to(Offset(7)).unwrap();
    append_one(&mut log, spec(2, 0, 10), 60);
    before.run().unwrap();
    log.complete_flush(before).unwrap();
    assert_eq!(log.flushed_offset(), Offset(7));
    log.flush().unwrap();
    assert_eq!(log.flushed_offset(), Offset(9));
}

#[test]
fn segments_roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig { segment_ms: 100, ..TopicConfig::default() };
    let mut log = open(dir.path(), config);
    log.maybe_roll(1_000).unwrap();
    assert_eq!(log.segment_count(), 1, "an empty segment never rolls");
    append_one(&mut log, spec(1, 0, 10), 0);
    log.maybe_roll(99).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.maybe_roll(100).unwrap();
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.flushed_offset(), Offset(1), "rolling makes the closed segment durable");
    append_one(&mut log, spec(1, 0, 10), 150);
    append_one(&mut log, spec(1, 0, 10), 250);
    assert_eq!(log.segment_count(), 3, "append rolls an old segment first");
    assert_eq!(offsets_of(&read_all(&log)).len(), 3);
}

#[test]
fn delete_removes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    let mut log = PartitionLog::open(&path, TopicConfig::default(), 0).unwrap();
    append_one(&mut log, spec(1, 0, 10), 0);
    log.delete().unwrap();
    assert!(!path.exists());
}
