//! Crash recovery: torn writes at every byte, corrupt bytes, damaged indexes.

use crate::util::*;
use dlog_core::{Offset, TopicConfig};
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

fn active_log_file(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a segment")
}

/// Writes `n` flushed batches then one more, unflushed; returns the stored batches.
fn write_log(dir: &Path, config: &TopicConfig, n: usize) -> Vec<Vec<u8>> {
    let mut log = open(dir, config.clone());
    let mut stored = Vec::new();
    for i in 0..n {
        stored.push(append_one(&mut log, spec(1 + (i % 3) as i32, i as i64, 30 + i), i as i64).1);
    }
    log.flush().unwrap();
    stored.push(append_one(&mut log, spec(2, 100, 40), 100).1);
    drop(log); // unclean: no close
    stored
}

#[test]
fn a_torn_last_batch_is_cut_at_every_byte() {
    let template = tempfile::tempdir().unwrap();
    // Segments of 1 KiB: the log spans a few closed segments and the active one.
    let config = small_config();
    let stored = write_log(template.path(), &config, 20);
    let last = stored.last().unwrap();
    let active = active_log_file(template.path());
    let full_len = fs::metadata(&active).unwrap().len();
    let last_start = full_len - last.len() as u64;
    let kept: Vec<u8> = stored[..stored.len() - 1].concat();
    let leo_before = headers(&kept).last().unwrap().last_offset().plus(1);

    for cut in last_start..full_len {
        let dir = tempfile::tempdir().unwrap();
        for entry in fs::read_dir(template.path()).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        let f = OpenOptions::new().write(true).open(active_log_file(dir.path())).unwrap();
        f.set_len(cut).unwrap();
        drop(f);

        let mut log = open(dir.path(), config.clone());
        let report = log.recovery_report().clone();
        assert_eq!(report.truncated_bytes, cut - last_start, "cut at {cut}");
        assert!(report.bytes_scanned <= cut, "only the active segment's tail is scanned");
        assert_eq!(log.log_end_offset(), leo_before, "cut at {cut}");
        assert_eq!(read_all(&log), kept, "cut at {cut}");
        let (info, b) = append_one(&mut log, spec(1, 7, 5), 200);
        assert_eq!(info.first_offset, leo_before);
        let r = log.read(leo_before, 1 << 20, log.log_end_offset()).unwrap();
        assert_eq!(&r.bytes[..], &b[..]);
    }
}

#[test]
fn unflushed_batches_in_the_page_cache_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let stored = write_log(dir.path(), &small_config(), 20);
    let log = open(dir.path(), small_config());
    assert_eq!(log.recovery_report().truncated_bytes, 0);
    assert!(log.recovery_report().bytes_scanned > 0);
    assert_eq!(read_all(&log), stored.concat());
    assert!(log.flushed_offset() < log.log_end_offset());
}

#[test]
fn a_flipped_byte_fails_the_crc_and_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let stored = write_log(dir.path(), &TopicConfig::default(), 10);
    let active = active_log_file(dir.path());
    let mut bytes = fs::read(&active).unwrap();
    let last = stored.last().unwrap();
    let at = bytes.len() - last.len() + 70; // inside the records, covered by the CRC
    bytes[at] ^= 0x40;
    fs::write(&active, &bytes).unwrap();
    let log = open(dir.path(), TopicConfig::default());
    assert_eq!(log.recovery_report().truncated_bytes, last.len() as u64);
    assert_eq!(read_all(&log), stored[..stored.len() - 1].concat());
}

#[test]
fn a_clean_close_scans_nothing_and_removes_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let mut stored = Vec::new();
    for i in 0..25 {
        stored.push(append_one(&mut log, spec(2, i, 40), i).1);
    }
    log.close().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.recovery_report().bytes_scanned, 0);
    assert_eq!(log.recovery_report().truncated_bytes, 0);
    assert_eq!(log.flushed_offset(), log.log_end_offset());
    assert_eq!(read_all(&log), stored.concat());
    assert!(!dir.path().join("clean-shutdown").exists());
    drop(log);
    // The marker is gone: a second open after a kill recovers instead of trusting.
    let log = open(dir.path(), small_config());
    assert_eq!(read_all(&log), stored.concat());
}

fn closed_segment_files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(suffix))
        .collect();
    files.sort();
    files.pop(); // the active segment
    files
}

#[test]
fn damaged_closed_segment_indexes_are_rebuilt() {
    let config = TopicConfig { segment_bytes: 2000, index_interval_bytes: 100, ..small_config() };
    for damage in ["delete", "garble", "truncate", "timeindex"] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), config.clone());
        let mut stored = Vec::new();
        for i in 0..60 {
            stored.push(append_one(&mut log, spec(1 + (i % 4) as i32, i, 60), i).1);
        }
        log.close().unwrap();
        let indexes = closed_segment_files(dir.path(), ".index");
        assert!(indexes.len() >= 2, "{damage}");
        let victim = &indexes[1];
        match damage {
            "delete" => fs::remove_file(victim).unwrap(),
            "garble" => {
                let mut b = fs::read(victim).unwrap();
                assert!(b.len() >= 16);
                b[0..16].copy_from_slice(&[0xee; 16]);
                fs::write(victim, b).unwrap();
            }
            "truncate" => {
                let len = fs::metadata(victim).unwrap().len();
                OpenOptions::new().write(true).open(victim).unwrap().set_len(len - 3).unwrap();
            }
            _ => fs::write(victim.with_extension("timeindex"), b"").unwrap(),
        }
        let log = open(dir.path(), config.clone());
        assert_eq!(log.recovery_report().bytes_scanned, 0, "closed segments are not read at open");
        assert_eq!(read_all(&log), stored.concat(), "{damage}");
        for (i, b) in stored.iter().enumerate() {
            let h = headers(b)[0];
            let r = log.read(h.last_offset(), 1, log.log_end_offset()).unwrap();
            assert_eq!(&r.bytes[..], &b[..], "{damage}: batch {i}");
        }
        let found = log.find_batch_by_timestamp(33).unwrap().unwrap();
        assert_eq!(&found[..], &stored[33][..], "{damage}");
        assert_eq!(log.lazy_index_rebuilds(), 1, "{damage}");
        drop(log);
        // The rebuilt index was written back: no second rebuild.
        let log = open(dir.path(), config.clone());
        assert_eq!(read_all(&log), stored.concat());
        assert_eq!(log.lazy_index_rebuilds(), 0, "{damage}");
        assert_eq!(log.log_end_offset(), Offset(stored.iter().map(|b| headers(b)[0].record_count as i64).sum()));
    }
}

#[test]
fn a_garbled_active_index_is_rebuilt_by_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig { index_interval_bytes: 50, ..TopicConfig::default() };
    let stored = write_log(dir.path(), &config, 30);
    let index = active_log_file(dir.path()).with_extension("index");
    fs::write(&index, vec![0xab; 77]).unwrap();
    let log = open(dir.path(), config);
    assert_eq!(read_all(&log), stored.concat());
    for b in &stored {
        let h = headers(b)[0];
        assert_eq!(&log.read(h.base_offset, 1, log.log_end_offset()).unwrap().bytes[..], &b[..]);
    }
}
