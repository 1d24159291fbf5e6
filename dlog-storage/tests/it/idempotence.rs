//! Idempotent producers through `PartitionLog`: duplicates, refused epochs and
//! sequences, and the producer state across clean and unclean restarts and truncation.

use crate::util::*;
use dlog_core::{Offset, TopicConfig};
use dlog_storage::testing::{idempotent_batch, BatchSpec};
use dlog_storage::{AppendInfo, PartitionLog, ProducerError, StorageError};
use std::path::Path;

const PID: i64 = 1000;

fn append_idem(
    log: &mut PartitionLog,
    pid: i64,
    epoch: i16,
    seq: i32,
    records: i32,
) -> Result<AppendInfo, StorageError> {
    // Payload derived from the sequence: a retry has the same bytes, other batches differ.
    let s = BatchSpec { payload_bytes: 40 + (seq % 7) as usize, ..BatchSpec::records(records) };
    let mut b = idempotent_batch(&s, pid, epoch, seq);
    log.append(&mut b, EPOCH, 0)
}

/// Appends `n` batches of 2 records for `pid` at `epoch`, sequences from 0.
fn fill(log: &mut PartitionLog, pid: i64, epoch: i16, n: i32) -> Vec<AppendInfo> {
    (0..n).map(|i| append_idem(log, pid, epoch, 2 * i, 2).expect("append")).collect()
}

fn is_out_of_order(r: &Result<AppendInfo, StorageError>) -> bool {
    matches!(r, Err(StorageError::Producer(ProducerError::OutOfOrder { .. })))
}

#[test]
fn a_retried_batch_is_not_appended_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), TopicConfig::default());
    let first = append_idem(&mut log, PID, 0, 0, 3).unwrap();
    assert_eq!((first.first_offset, first.last_offset, first.duplicate), (Offset(0), Offset(2), false));
    let retry = append_idem(&mut log, PID, 0, 0, 3).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.first_offset, retry.last_offset), (Offset(0), Offset(2)));
    assert_eq!(log.log_end_offset(), Offset(3));
    let next = append_idem(&mut log, PID, 0, 3, 1).unwrap();
    assert_eq!((next.first_offset, next.duplicate), (Offset(3), false));
    // Non-idempotent batches are unaffected, and so is another producer.
    append_one(&mut log, spec(2, 0, 10), 0);
    assert_eq!(append_idem(&mut log, PID + 1, 0, 77, 1).unwrap().first_offset, Offset(6));
    assert_eq!(log.log_end_offset(), Offset(7));
    assert_eq!(offsets_of(&read_all(&log)).len(), 4);
}

#[test]
fn gaps_and_old_epochs_are_refused_without_appending() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), TopicConfig::default());
    fill(&mut log, PID, 2, 2); // sequences 0..=3 at offsets 0..=3
    assert!(is_out_of_order(&append_idem(&mut log, PID, 2, 5, 1)));
    assert!(matches!(
        append_idem(&mut log, PID, 1, 4, 1),
        Err(StorageError::Producer(ProducerError::InvalidEpoch { epoch: 1, current: 2, .. }))
    ));
    // A bumped epoch must start at 0.
    assert!(is_out_of_order(&append_idem(&mut log, PID, 3, 4, 1)));
    assert_eq!(log.log_end_offset(), Offset(4));
    assert_eq!(append_idem(&mut log, PID, 3, 0, 1).unwrap().first_offset, Offset(4));
    let e: dlog_core::Error = append_idem(&mut log, PID, 2, 4, 1).unwrap_err().into();
    assert!(matches!(e, dlog_core::Error::InvalidProducerEpoch(_)), "{e:?}");
    let e: dlog_core::Error = append_idem(&mut log, PID, 3, 9, 1).unwrap_err().into();
    assert!(matches!(e, dlog_core::Error::OutOfOrderSequence(_)), "{e:?}");
}

/// After a restart the last five batches are still recognised and the sequence goes on.
fn assert_state_survived(log: &mut PartitionLog, infos: &[AppendInfo]) {
    let n = infos.len() as i32;
    for i in n - 5..n {
        let retry = append_idem(log, PID, 0, 2 * i, 2).unwrap();
        assert!(retry.duplicate, "batch {i}");
        assert_eq!(retry.first_offset, infos[i as usize].first_offset);
    }
    assert!(is_out_of_order(&append_idem(log, PID, 0, 2 * n + 1, 1)));
    let leo = log.log_end_offset();
    assert_eq!(append_idem(log, PID, 0, 2 * n, 1).unwrap().first_offset, leo);
}

#[test]
fn duplicates_are_detected_after_a_clean_restart_without_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let infos = fill(&mut log, PID, 0, 40);
    assert!(log.segment_count() > 3, "the batches span several segments");
    log.close().unwrap();
    let mut log = open(dir.path(), small_config());
    assert_eq!(log.recovery_report().producer_batches_replayed, 0);
    assert_state_survived(&mut log, &infos);
}

#[test]
fn duplicates_are_detected_after_an_unclean_restart_replaying_only_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let infos = fill(&mut log, PID, 0, 40);
    let segments = log.segment_count();
    assert!(segments > 3);
    drop(log); // no close: no clean-shutdown marker, no snapshot at the log end
    let mut log = open(dir.path(), small_config());
    let replayed = log.recovery_report().producer_batches_replayed;
    let in_active = read_active_batches(&log);
    assert!(replayed > 0 && replayed <= in_active, "replayed {replayed}, active segment holds {in_active}");
    assert_state_survived(&mut log, &infos);
}

/// Batches in the active segment (its base is the last segment file's name).
fn read_active_batches(log: &PartitionLog) -> u64 {
    let base = last_segment_base(log.dir());
    let r = log.read(base, usize::MAX, log.log_end_offset()).unwrap();
    offsets_of(&r.bytes).len() as u64
}

fn last_segment_base(dir: &Path) -> Offset {
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str().and_then(|n| n.strip_suffix(".log")?.parse().ok()))
        .collect();
    bases.sort();
    Offset(*bases.last().unwrap())
}

#[test]
fn a_log_without_snapshots_replays_the_active_segment_and_knows_no_older_producer() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    fill(&mut log, PID, 0, 40);
    log.close().unwrap();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.to_str().unwrap().ends_with(".producer-snapshot") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let mut log = open(dir.path(), small_config());
    assert_eq!(log.recovery_report().producer_batches_replayed, read_active_batches(&log));
    // The last batch is in the active segment: still a duplicate.
    assert!(append_idem(&mut log, PID, 0, 78, 2).unwrap().duplicate);
}

/// The producer state a log reaches by appending `batches` (pid, epoch, seq, records).
fn fresh_state(batches: &[(i64, i16, i32, i32)]) -> dlog_storage::ProducerStateMap {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for &(pid, epoch, seq, n) in batches {
        append_idem(&mut log, pid, epoch, seq, n).unwrap();
    }
    log.producer_state().clone()
}

#[test]
fn truncation_rebuilds_the_state_at_the_new_end_even_below_snapshots() {
    // Two producers interleaved, one bumping its epoch; segments roll (snapshots at
    // their bases) and a clean close adds one at the end.
    let mut plan = Vec::new();
    let (mut seq_a, mut seq_b) = (0, 0);
    for i in 0..60 {
        if i % 3 == 0 {
            let epoch = if i < 30 { 0 } else { 1 };
            if i == 30 {
                seq_b = 0;
            }
            plan.push((PID + 1, epoch, seq_b, 1));
            seq_b += 1;
        } else {
            plan.push((PID, 0, seq_a, 2));
            seq_a += 2;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let mut ends = Vec::new();
    for &(pid, epoch, seq, n) in &plan {
        ends.push(append_idem(&mut log, pid, epoch, seq, n).unwrap().last_offset.plus(1));
    }
    log.close().unwrap();
    let mut log = open(dir.path(), small_config());
    assert!(log.segment_count() > 3);

    // Truncate below the end snapshot, then below several segment snapshots, then into
    // the first segment: each time the state is what appending the kept batches gives.
    for keep in [55usize, 41, 29, 3] {
        log.truncate_to(ends[keep - 1]).unwrap();
        assert_eq!(log.log_end_offset(), ends[keep - 1]);
        assert_eq!(log.producer_state(), &fresh_state(&plan[..keep]), "keeping {keep} batches");
        // And it survives reopening (stale snapshots past the new end are gone).
        drop(log);
        log = open(dir.path(), small_config());
        assert_eq!(log.producer_state(), &fresh_state(&plan[..keep]), "reopened keeping {keep} batches");
    }
    // The batch right after the truncation point is new again, not a duplicate.
    let (pid, epoch, seq, n) = plan[3];
    let info = append_idem(&mut log, pid, epoch, seq, n).unwrap();
    assert!(!info.duplicate);
    assert_eq!(info.first_offset, ends[2]);
    // An earlier one still is.
    let (pid, epoch, seq, n) = plan[1];
    assert!(append_idem(&mut log, pid, epoch, seq, n).unwrap().duplicate);
}

#[test]
fn producers_below_the_log_start_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    fill(&mut log, PID, 0, 3);
    append_idem(&mut log, PID + 1, 0, 0, 1).unwrap();
    log.delete_records_before(Offset(6)).unwrap();
    assert!(log.producer_state().get(PID).is_none());
    assert!(log.producer_state().get(PID + 1).is_some());
    // Unknown again: any sequence is accepted.
    assert!(!append_idem(&mut log, PID, 0, 50, 1).unwrap().duplicate);
}
