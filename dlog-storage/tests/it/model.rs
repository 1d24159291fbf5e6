//! Property test: the log against an in-memory model (a vector of stored batches and a
//! log start offset) under random appends, reads, timestamp lookups, rolls, truncation,
//! DeleteRecords, flushes, clean and unclean reopen.

use crate::util::*;
use dlog_core::{Offset, TopicConfig};
use dlog_storage::testing::{batches, BatchSpec};
use dlog_storage::{BatchHeader, PartitionLog};
use proptest::prelude::*;
use std::path::Path;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<(i32, i64, usize)>),
    Read { start: u16, max_bytes: u16, hw: u16 },
    FindTimestamp(i64),
    MaxTimestamp,
    Roll,
    Truncate(u16),
    DeleteRecords(u16),
    Flush,
    Reopen,
    Kill,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec((1..6i32, 0..1000i64, 0..150usize), 1..4).prop_map(Op::Append),
        6 => (any::<u16>(), any::<u16>(), any::<u16>()).prop_map(|(start, max_bytes, hw)| Op::Read { start, max_bytes, hw }),
        2 => (0..1100i64).prop_map(Op::FindTimestamp),
        1 => Just(Op::MaxTimestamp),
        1 => Just(Op::Roll),
        1 => any::<u16>().prop_map(Op::Truncate),
        1 => any::<u16>().prop_map(Op::DeleteRecords),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::Kill),
    ]
}

struct Model {
    /// (header as stored, bytes as stored)
    batches: Vec<(BatchHeader, Vec<u8>)>,
    log_start: Offset,
}

impl Model {
    fn leo(&self) -> Offset {
        self.batches.last().map_or(Offset(0), |(h, _)| h.next_offset())
    }

    /// Picks an offset in [lo, hi] from a random u16.
    fn pick(lo: Offset, hi: Offset, r: u16) -> Offset {
        Offset(lo.0 + i64::from(r) % (hi.0 - lo.0 + 1))
    }

    fn read(&self, start: Offset, max_bytes: usize, max_offset: Offset) -> Vec<u8> {
        let mut out = Vec::new();
        for (h, b) in self.batches.iter().skip_while(|(h, _)| h.last_offset() < start) {
            if h.base_offset >= max_offset || (!out.is_empty() && out.len() + b.len() > max_bytes) {
                break;
            }
            out.extend_from_slice(b);
        }
        out
    }

    fn visible(&self) -> impl Iterator<Item = &(BatchHeader, Vec<u8>)> {
        let start = self.log_start;
        self.batches.iter().filter(move |(h, _)| h.last_offset() >= start)
    }
}

fn config() -> TopicConfig {
    TopicConfig { segment_bytes: 700, index_interval_bytes: 150, retention_ms: -1, ..TopicConfig::default() }
}

fn run(ops: Vec<Op>, dir: &Path) {
    let mut log = Some(PartitionLog::open(dir, config(), 0).unwrap());
    let mut model = Model { batches: Vec::new(), log_start: Offset(0) };
    let mut now = 0i64;
    for op in ops {
        now += 1;
        let l = log.as_mut().unwrap();
        match op {
            Op::Append(specs) => {
                let specs: Vec<BatchSpec> = specs.iter().map(|&(n, ts, p)| spec(n, ts, p)).collect();
                let mut buf = batches(&specs);
                let info = l.append(&mut buf, EPOCH, now).unwrap();
                assert_eq!(info.first_offset, model.leo());
                let mut at = 0;
                for _ in &specs {
                    let h = BatchHeader::parse(&buf[at..]).unwrap();
                    model.batches.push((h, buf[at..at + h.total_size()].to_vec()));
                    at += h.total_size();
                }
                assert_eq!(info.last_offset.plus(1), model.leo());
            }
            Op::Read { start, max_bytes, hw } => {
                let start = Model::pick(model.log_start, model.leo(), start);
                let hw = Model::pick(model.log_start, model.leo(), hw);
                let max_bytes = usize::from(max_bytes % 1500);
                let got = l.read(start, max_bytes, hw).unwrap();
                assert_eq!(got.bytes.to_vec(), model.read(start, max_bytes, hw), "read {start} {max_bytes} {hw}");
                assert_eq!((got.log_start_offset, got.log_end_offset), (model.log_start, model.leo()));
                if model.log_start.0 > 0 {
                    assert!(l.read(Offset(model.log_start.0 - 1), 10, hw).is_err());
                }
            }
            Op::FindTimestamp(ts) => {
                let expect = model.visible().find(|(h, _)| h.max_timestamp >= ts).map(|(_, b)| b.clone());
                assert_eq!(l.find_batch_by_timestamp(ts).unwrap().map(|b| b.to_vec()), expect, "ts {ts}");
            }
            Op::MaxTimestamp => {
                let mut expect: Option<(i64, Vec<u8>)> = None;
                for (h, b) in model.visible() {
                    if expect.as_ref().is_none_or(|(m, _)| h.max_timestamp > *m) {
                        expect = Some((h.max_timestamp, b.clone()));
                    }
                }
                assert_eq!(l.max_timestamp_batch().unwrap().map(|(t, b)| (t, b.to_vec())), expect);
            }
            Op::Roll => {
                now += 1_000_000;
                let mut c = config();
                c.segment_ms = 1_000_000;
                l.set_config(c);
                l.maybe_roll(now).unwrap();
                l.set_config(config());
            }
            Op::Truncate(r) => {
                let to = Model::pick(model.log_start, model.leo(), r);
                let cuts = to < model.leo();
                l.truncate_to(to).unwrap();
                model.batches.retain(|(h, _)| h.last_offset() < to);
                model.log_start = model.log_start.min(model.leo());
                if cuts {
                    assert_eq!(l.flushed_offset(), model.leo(), "truncation leaves everything durable");
                }
            }
            Op::DeleteRecords(r) => {
                let to = Model::pick(Offset(0), model.leo(), r);
                let got = l.delete_records_before(to).unwrap();
                model.log_start = model.log_start.max(to);
                assert_eq!(got, model.log_start);
            }
            Op::Flush => {
                l.flush().unwrap();
                assert_eq!(l.flushed_offset(), model.leo());
            }
            Op::Reopen => {
                log.take().unwrap().close().unwrap();
                let l = PartitionLog::open(dir, config(), now).unwrap();
                assert_eq!(l.recovery_report().bytes_scanned, 0);
                log = Some(l);
            }
            Op::Kill => {
                drop(log.take());
                let l = PartitionLog::open(dir, config(), now).unwrap();
                assert_eq!(l.recovery_report().truncated_bytes, 0, "nothing written is lost");
                log = Some(l);
            }
        }
        let l = log.as_ref().unwrap();
        assert_eq!(l.log_end_offset(), model.leo());
        assert_eq!(l.log_start_offset(), model.log_start);
        assert!(l.flushed_offset() <= l.log_end_offset());
    }
    let l = log.as_ref().unwrap();
    let visible: Vec<u8> = model.visible().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(read_all(l), visible);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        run(ops, dir.path());
    }
}
