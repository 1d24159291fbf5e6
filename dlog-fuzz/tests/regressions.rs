//! Every crash the fuzz targets found, as a test of its own: the input (or the smallest
//! change to a valid one that reproduces it) and what the fixed code does with it.
//! `proptest-regressions/fuzz.txt` replays the same failures by seed; these spell them
//! out, so they survive changes to the generators.

use bytes::Bytes;
use dlog_consensus::{Command, KvError, KvState};
use dlog_core::Offset;
use dlog_fuzz::{partition_templates, PartitionTemplate};
use dlog_storage::PartitionLog;

/// A postcard unsigned varint.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// A metadata snapshot of an empty key space with these counters (and sequential-key
/// counters), in `KvState::snapshot`'s layout: a format byte, then postcard of the
/// records, sessions and sequences maps, the next version id (zigzag), the next
/// session id and the clock (zigzag).
fn empty_snapshot(sequences: &[(&str, u64)], next_version_id: i64, next_session_id: u64) -> Vec<u8> {
    let zigzag = |v: i64| ((v << 1) ^ (v >> 63)) as u64;
    let mut b = vec![1u8, 0, 0];
    b.extend(varint(sequences.len() as u64));
    for (prefix, n) in sequences {
        b.extend(varint(prefix.len() as u64));
        b.extend_from_slice(prefix.as_bytes());
        b.extend(varint(*n));
    }
    b.extend(varint(zigzag(next_version_id)));
    b.extend(varint(next_session_id));
    b.extend(varint(zigzag(1_000)));
    b
}

#[test]
fn the_snapshot_layout_here_is_the_real_one() {
    let mut kv = KvState::new();
    kv.apply(Command::ExpireSessions { now_ms: 1_000 }).0.unwrap();
    assert_eq!(kv.snapshot(), empty_snapshot(&[], 0, 1));
}

/// kv_snapshot: a snapshot whose next session id is 0 restored, and the next session
/// created was session 0, which no state may hold. Restore refuses it now.
#[test]
fn a_snapshot_whose_next_session_id_is_zero_is_refused() {
    let bytes = empty_snapshot(&[], 0, 0);
    assert!(KvState::restore(&bytes).is_err());
    assert!(KvState::restore(&empty_snapshot(&[], -1, 1)).is_err(), "nor a negative next version id");
    dlog_fuzz::kv_snapshot(&bytes);
}

fn put(key: &str, sequential: bool) -> Command {
    Command::Put {
        key: key.into(),
        value: Bytes::new(),
        expected: Default::default(),
        session: None,
        sequential,
        now_ms: 2_000,
    }
}

/// kv_snapshot: counters at their maximum (a snapshot can carry any) overflowed, a
/// panic on every node applying the next command. Those commands are refused now,
/// changing nothing.
#[test]
fn exhausted_ids_refuse_commands_instead_of_overflowing() {
    let session = Command::CreateSession { timeout_ms: 1_000, identity: String::new(), now_ms: 2_000 };
    let cases = [
        (empty_snapshot(&[], 0, u64::MAX), session),
        (empty_snapshot(&[], i64::MAX, 1), put("/k", false)),
        (empty_snapshot(&[("/s", u64::MAX)], 0, 1), put("/s", true)),
    ];
    for (bytes, command) in cases {
        let mut kv = KvState::restore(&bytes).expect("a valid state");
        let before = kv.clone();
        let (outcome, notifications) = kv.apply(command);
        assert!(matches!(outcome, Err(KvError::InvalidArgument(_))), "{outcome:?}");
        assert!(notifications.is_empty());
        assert_eq!(kv, before, "a refused command changes nothing");
        dlog_fuzz::kv_snapshot(&bytes);
    }
}

/// The partition target's input replacing `file` of the crashed (0) or closed (1)
/// template with `content`.
fn partition_input(template: usize, file: &str, content: &[u8]) -> Vec<u8> {
    let t: &PartitionTemplate = &partition_templates()[template];
    let i = t.files.iter().position(|(n, _)| n == file).unwrap_or_else(|| panic!("no {file}"));
    let selector = ((template as u8) << 7) | i as u8;
    [&[selector][..], content].concat()
}

fn template_file(template: usize, file: &str) -> Vec<u8> {
    partition_templates()[template].files.iter().find(|(n, _)| n == file).expect("a file").1.clone()
}

/// Opens the template with `file` replaced.
fn open_with(template: usize, file: &str, content: &[u8]) -> (tempfile::TempDir, PartitionLog) {
    let t = &partition_templates()[template];
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in &t.files {
        std::fs::write(dir.path().join(name), if name == file { content } else { bytes }).unwrap();
    }
    let log = PartitionLog::open(dir.path(), t.config.clone(), 10_000).unwrap();
    (dir, log)
}

const ACTIVE_INDEX: &str = "00000000000000000014.index";
const ACTIVE_TIME_INDEX: &str = "00000000000000000014.timeindex";
const ACTIVE_LOG: &str = "00000000000000000014.log";

/// partition_dir: after a crash, an active-segment index entry pointing less than a
/// header before the recovery point made the spot check's read fail, and the error
/// failed the whole open: a damaged index kept the partition from opening. The entry
/// is dropped with the rest of the index now, and the log opens whole.
#[test]
fn a_damaged_active_index_after_a_crash_is_dropped_not_fatal() {
    let entry = [0, 0, 0, 2, 0, 0, 0, 127]; // offset 16 at byte 127, near the end
    dlog_fuzz::partition_dir(&partition_input(0, ACTIVE_INDEX, &entry));
    let (_dir, log) = open_with(0, ACTIVE_INDEX, &entry);
    assert_eq!(log.log_end_offset(), partition_templates()[0].log_end);
}

/// partition_dir: a time index whose last entry claims a larger max timestamp than
/// its batch holds was trusted, and ListOffsets(MAX_TIMESTAMP) tripped an assertion
/// (in release, answered with the wrong timestamp). Loading an index checks the last
/// time entry against its batch now, and rebuilds a damaged one.
#[test]
fn a_time_index_lying_about_the_max_timestamp_is_rebuilt() {
    let original = template_file(1, ACTIVE_TIME_INDEX);
    let (_dir, log) = open_with(1, ACTIVE_TIME_INDEX, &original);
    let (max, _) = log.max_timestamp_batch().unwrap().expect("a batch");
    assert_eq!(log.recovery_report().indexes_rebuilt, 0, "intact indexes pass the check");
    assert_eq!(log.lazy_index_rebuilds(), 0, "intact indexes pass the check");
    let mut lying = original.clone();
    lying[..8].copy_from_slice(&1_049_677i64.to_be_bytes());
    dlog_fuzz::partition_dir(&partition_input(1, ACTIVE_TIME_INDEX, &lying));
    let (_dir, log) = open_with(1, ACTIVE_TIME_INDEX, &lying);
    assert_eq!(log.max_timestamp_batch().unwrap().map(|(ts, _)| ts), Some(max));
}

/// partition_dir: a batch changed on disk (checksum recomputed) below the recovery
/// point, where nothing is rescanned, no longer agreed with the index built from it,
/// and ListOffsets(MAX_TIMESTAMP) tripped an assertion. It answers a corruption error
/// now.
#[test]
fn a_batch_changed_under_its_index_is_reported_corrupt() {
    let mut log_bytes = template_file(0, ACTIVE_LOG);
    let second = 12 + i32::from_be_bytes(log_bytes[8..12].try_into().unwrap()) as usize;
    log_bytes[second + 35..second + 43].copy_from_slice(&(i64::MAX / 2).to_be_bytes()); // max timestamp
    let mut input = partition_input(0, ACTIVE_LOG, &log_bytes);
    dlog_fuzz::repair("partition_dir", &mut input);
    dlog_fuzz::partition_dir(&input);
    let (_dir, log) = open_with(0, ACTIVE_LOG, &input[1..]);
    assert!(log.max_timestamp_batch().is_err());
}

/// partition_dir: a recovery point (checksum right) naming a max-timestamp batch far
/// outside its segment was taken, and closing the log panicked turning that offset
/// into a position in the segment. Such a point is refused now: the segment is
/// rescanned.
#[test]
fn a_recovery_point_with_its_max_timestamp_outside_the_segment_is_refused() {
    let fields: Vec<u8> = [19i64, 14, 182, 1, 1_105, 30_064_771_074].iter().flat_map(|v| v.to_be_bytes()).collect();
    let point = dlog_storage::encode_checkpoint(&fields);
    dlog_fuzz::partition_dir(&partition_input(0, "recovery-point", &point));
    let (_dir, log) = open_with(0, "recovery-point", &point);
    assert_eq!(log.recovery_report().bytes_scanned, template_file(0, ACTIVE_LOG).len() as u64, "rescanned");
    assert_eq!(log.log_end_offset(), Offset(19));
    log.close().unwrap();
}

/// batch_validate, records_decode: a batch whose base timestamp (or offset) lies near
/// i64::MAX overflowed in kafka-protocol's record decoder (a panic with overflow
/// checks). It wraps now, as Kafka's Java arithmetic does.
#[test]
fn records_near_the_end_of_time_decode() {
    let mut records = vec![dlog_protocol::records::new_record(None, Some(Bytes::from_static(b"v")), 10)];
    records.push(dlog_protocol::records::new_record(None, None, 20));
    let batch = dlog_protocol::records::encode_batch(&mut records, dlog_protocol::records::Compression::None).unwrap();
    let mut batch = batch.to_vec();
    batch[27..35].copy_from_slice(&(i64::MAX - 5).to_be_bytes()); // base timestamp
    batch[..8].copy_from_slice(&i64::MAX.to_be_bytes()); // base offset (outside the CRC)
    let mut repaired = batch.clone();
    dlog_fuzz::repair("batch_validate", &mut repaired);
    dlog_fuzz::batch_validate(&repaired);
    dlog_fuzz::records_decode(&repaired);
    let decoded = dlog_protocol::records::decode_records(&Bytes::from(repaired)).unwrap();
    assert_eq!(decoded[1].timestamp, (i64::MAX - 5).wrapping_add(10));
    assert_eq!(decoded[1].offset, i64::MIN);
}

/// metadata_values: `--cluster-nodes 1=[ h]:9093` (blanks inside the brackets) or
/// `1=[]:9093` parse, and the member list recorded from them reads back differently
/// (`1= h:9093` reads as `1=h:9093`) or not at all (`1=:9093`): nodes would disagree
/// with the list they wrote. Fix: `split_host_port` in `dlog-server/src/config.rs`
/// trims the host after removing its brackets and refuses it if empty.
#[test]
fn member_lists_read_back_as_written() {
    use dlog_server::config::parse_cluster_nodes;
    for text in ["1=[ h]:9093", "1=[]:9093"] {
        if let Ok(members) = parse_cluster_nodes("members", text) {
            let again = parse_cluster_nodes("members", &dlog_server::controller::members_text(&members));
            assert_eq!(again.ok(), Some(members), "{text}");
        }
    }
}

/// server_files: a single node's topic file saying `partitions = 2147483647` (or any
/// count past the limit) made loading the registry size the topic's
/// assignments by it: 189 GB asked for, and the process aborted at start. Such a file
/// is refused now, naming it.
#[test]
fn a_topic_file_with_an_impossible_partition_count_is_refused_not_allocated() {
    for count in ["2147483647", "100001", "0", "-3"] {
        let file = format!("id = \"887ec3e9cc684abe882da55d5b78a506\"\npartitions = {count}\n");
        dlog_fuzz::server_files(&[&[2u8][..], file.as_bytes()].concat());
        let dir = tempfile::tempdir().unwrap();
        let topics = dir.path().join("meta").join("topics");
        std::fs::create_dir_all(&topics).unwrap();
        std::fs::write(topics.join("t.toml"), &file).unwrap();
        let loaded = dlog_server::topics::TopicRegistry::load(dir.path(), dlog_core::NodeId(1), Default::default());
        let e = loaded.expect_err(count).to_string();
        assert!(e.contains("t.toml") && e.contains("partitions"), "{e}");
    }
}
