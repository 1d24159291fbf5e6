//! Fuzz targets for every decoder of DLog: what it reads off a socket from a client or
//! a peer, and what it reads back from its own disk.
//!
//! Each target is a function `fn(&[u8])` that hands the bytes to the decoder the
//! broker ships (never a copy of it) and panics if an invariant breaks:
//!
//! - the decoder never panics, whatever the bytes;
//! - where it promises so, it allocates no more than its input can hold (measured by
//!   this crate's allocator, [`largest_allocation`]): a count read off the wire must
//!   not become a reservation;
//! - what it accepts survives a round trip through the matching encoder: decoding the
//!   re-encoded value gives the same value (and, for canonical formats, the same bytes);
//! - decoded values keep the invariants the code after the decoder relies on, checked
//!   by driving that code a little (a restored metadata state applies commands, an
//!   opened partition log serves reads).
//!
//! [`TARGETS`] names them all. `tests/fuzz.rs` runs each under proptest on the stable
//! toolchain, with random bytes and with mutations ([`mutate`]) of valid inputs made
//! by the project's own encoders ([`seeds`]); `scripts/fuzz-soak.sh` runs them for
//! hours. A coverage-guided fuzzer (cargo-fuzz, on nightly) can call the same functions.
//!
//! Inputs of the targets that need more than one value put a selector first (which
//! decoder, which file); each target's documentation gives its input's layout.
//!
//! Linking this crate installs its allocator (the system's, measuring): it is meant for
//! test and fuzzing binaries only.

mod alloc;
pub mod mutate;
pub mod seeds;
mod server;

pub use server::*;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use dlog_consensus::raft::log_store;
use dlog_consensus::raft::network::{RaftRequest, RaftResponse};
use dlog_consensus::raft::state_machine;
use dlog_consensus::{Command, KvState, SessionId};
use dlog_core::{LeaderEpoch, NodeId, Offset, TopicConfig};
use dlog_protocol::codec::{decode_request, CodecError};
use dlog_protocol::frame::{declared_size, split_frame, FrameError};
use dlog_protocol::kafka_protocol::protocol::Encodable;
use dlog_protocol::kafka_protocol::records::{RecordBatchEncoder, RecordEncodeOptions};
use dlog_protocol::records::{decode_records, Compression};
use dlog_protocol::registry;
use dlog_server::controller::{self, ControllerRequest, Identity, TopicRecord};
use dlog_server::groups::coordinator;
use dlog_server::replica::{ReplicaReply, ReplicaRequest};
use dlog_storage::batch::{check_batch, BatchHeader, LOG_OVERHEAD_BYTES};
use dlog_storage::records::{check_records, walk_records, RecordLimits};
use dlog_storage::{validate_batches, EpochCache, PartitionLog, ProducerStateMap};

pub use alloc::{assert_bounded, largest_allocation};

/// Every target, by name.
#[allow(clippy::type_complexity)] // the plainest spelling of "name and function"
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("frame_split", frame_split),
    ("request_decode", request_decode),
    ("batch_validate", batch_validate),
    ("records_decode", records_decode),
    ("epoch_cache", epoch_cache),
    ("producer_snapshot", producer_snapshot),
    ("checkpoint", checkpoint),
    ("partition_dir", partition_dir),
    ("kv_snapshot", kv_snapshot),
    ("raft_snapshot_file", raft_snapshot_file),
    ("raft_rpc", raft_rpc),
    ("raft_log_values", raft_log_values),
    ("rpc_envelope", rpc_envelope),
    ("replica_rpc", replica_rpc),
    ("controller_rpc", controller_rpc),
    ("metadata_values", metadata_values),
    ("group_records", group_records),
    ("server_files", server_files),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, f)| f)
}

/// Bytes of slack every allocation bound allows (a decoder's fixed-size buffers).
const SLACK: usize = 64 * 1024;

// ---------------------------------------------------------------------------------
// Kafka protocol: frames, requests, batches, records.

/// `dlog_protocol::frame::split_frame`, fed a byte stream in pieces as a connection
/// receives it. Input: `[max-size selector, piece-size selector, stream...]`; the limit
/// is `2^(selector % 21)` bytes.
///
/// Frames come out whole and in order, each exactly as long as its size prefix and
/// within the limit; the stream is split at no other place; an error comes only from a
/// negative or oversized prefix; and nothing is reserved from a declared size: the
/// buffer holds what arrived.
pub fn frame_split(data: &[u8]) {
    let [max_sel, piece_sel, stream @ ..] = data else { return };
    let max_bytes = 1usize << (max_sel % 21);
    let piece = usize::from(*piece_sel % 32) + 1;
    let ((), largest) = largest_allocation(|| {
        let mut buf = BytesMut::new();
        let mut consumed = 0usize; // stream bytes taken off as frames
        let mut fed = 0usize;
        'feed: while fed < stream.len() {
            let end = (fed + piece).min(stream.len());
            buf.extend_from_slice(&stream[fed..end]);
            fed = end;
            loop {
                let rest = &stream[consumed..fed];
                assert_eq!(&buf[..], rest, "the buffer holds exactly the bytes not yet framed");
                if let Some(prefix) = rest.get(..4) {
                    let size = i32::from_be_bytes(prefix.try_into().expect("4 bytes"));
                    assert_eq!(declared_size(rest), usize::try_from(size).ok());
                }
                match split_frame(&mut buf, max_bytes) {
                    Ok(Some(frame)) => {
                        let size = i32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
                        assert!(size >= 0 && size as usize <= max_bytes, "frame of {size} bytes let through");
                        assert_eq!(&frame[..], &rest[4..4 + size as usize], "a frame is the bytes after its prefix");
                        consumed += 4 + size as usize;
                    }
                    Ok(None) => {
                        if rest.len() >= 4 {
                            let size = i32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
                            assert!(size >= 0 && rest.len() < 4 + size as usize, "a whole frame held back");
                        }
                        break;
                    }
                    Err(e) => {
                        let size = i32::from_be_bytes(rest[..4].try_into().expect("an error needs a prefix"));
                        match e {
                            FrameError::Negative(n) => assert!(n == size && size < 0),
                            FrameError::TooLarge { size: s, max } => {
                                assert!(s == i64::from(size) && max == max_bytes && size as usize > max_bytes)
                            }
                        }
                        break 'feed;
                    }
                }
            }
        }
    });
    // The buffer grows with the bytes received (doubling), whatever sizes they declare.
    assert_bounded("split_frame", stream.len(), largest, 4, 4096);
}

/// `dlog_protocol::codec::decode_request` on one frame (size prefix removed): the
/// header, then the body of the API and version the header names, for every API and
/// version in `dlog_protocol::registry`.
///
/// Only registered APIs and versions decode; a decoded request encodes again and
/// decodes to the same header and body; decoding reserves at most what the frame can
/// hold (the patched kafka-protocol caps every array's reservation at the bytes left).
pub fn request_decode(data: &[u8]) {
    let (result, largest) = largest_allocation(|| decode_request(Bytes::copy_from_slice(data)));
    // Elements of at most a few hundred bytes each, one per byte of input at most.
    assert_bounded("decode_request", data.len(), largest, 1024, SLACK);
    match result {
        Ok(request) => {
            assert!(registry::is_supported(request.api_key, request.version), "{:?} decoded", request.api_key);
            assert_eq!(request.header.request_api_key, request.api_key as i16);
            assert_eq!(request.header.request_api_version, request.version);
            let mut buf = BytesMut::new();
            let header_version = request.api_key.request_header_version(request.version);
            request.header.encode(&mut buf, header_version).expect("a decoded header encodes");
            request.body.encode(&mut buf, request.version).expect("a decoded body encodes");
            // KNOWN (kafka-protocol): unknown tagged fields are kept in a map by tag, so
            // repeated or out-of-order tags (which Kafka refuses) are merged, and tags
            // past i32::MAX wrap; DLog ignores unknown tagged fields, so only the round
            // trip of such a request is not exact.
            let again = decode_request(buf.freeze());
            if has_unknown_tagged_fields(&request) {
                return;
            }
            let again = again.expect("a re-encoded request decodes");
            assert_eq!(again.header, request.header, "{:?} v{}", request.api_key, request.version);
            assert_eq!(again.body, request.body, "{:?} v{}", request.api_key, request.version);
        }
        Err(CodecError::TooShort(n)) => assert!(n < 8 && n == data.len()),
        Err(CodecError::UnsupportedVersion { api_key, version, .. }) => {
            assert!(!registry::is_supported(api_key, version))
        }
        Err(CodecError::UnknownApiKey(_)) | Err(CodecError::Malformed { .. }) => {}
    }
}

/// Whether any part of a decoded request kept unknown tagged fields.
fn has_unknown_tagged_fields(request: &dlog_protocol::codec::Request) -> bool {
    let text = format!("{:?} {:?}", request.header, request.body);
    text.split("unknown_tagged_fields: {").skip(1).any(|rest| !rest.starts_with('}'))
}

/// The bound on inflated records the batch target walks with (the 1 MiB floor).
fn walk_limits() -> RecordLimits {
    RecordLimits::for_max_message_bytes(1)
}

/// `dlog_storage::validate_batches`, then for every batch it accepts the record walk
/// the broker runs before appending (`dlog_storage::records::{check_records,
/// walk_records}`, compressed batches inflated within their bound).
///
/// Accepted batches tile the input and each passes `check_batch` alone; a walk that
/// succeeds visits exactly the header's count of records with offset deltas 0, 1, 2,
/// ...; `check_records` without a timestamp window agrees with the walk; and where
/// kafka-protocol's decoder (what clients and the group coordinator use) also reads the
/// batch, both see the same offsets and timestamps.
pub fn batch_validate(data: &[u8]) {
    let (validated, largest) = largest_allocation(|| validate_batches(data));
    assert_bounded("validate_batches", data.len(), largest, 4, 1024);
    let Ok(batches) = validated else { return };
    let mut next = 0;
    for (range, header) in batches {
        assert_eq!(range.start, next, "batches tile the buffer");
        next = range.end;
        let batch = &data[range];
        assert_eq!(check_batch(batch), Ok(header));
        assert_eq!(batch.len(), header.total_size());
        let limits = walk_limits();
        let mut seen = Vec::new();
        let (walked, largest) = largest_allocation(|| {
            walk_records(batch, &header, limits.max_inflated_bytes, |r| {
                assert_eq!(i64::from(r.offset_delta), seen.len() as i64, "offset deltas are 0, 1, 2, ...");
                seen.push(r.timestamp);
                Ok(())
            })
        });
        // Memory stays at the codec's window and the inflation bound, whatever the input.
        assert_bounded("walk_records", data.len(), largest, 4, limits.max_inflated_bytes + 2 * SLACK);
        let checked = check_records(batch, &header, &limits);
        assert_eq!(checked.is_ok(), walked.is_ok(), "check_records without a window is the walk: {checked:?}");
        let window = walk_limits().with_timestamp_window(header.max_timestamp, 0, 0);
        let _ = check_records(batch, &header, &window);
        if walked.is_err() {
            continue;
        }
        assert_eq!(seen.len() as i64, i64::from(header.record_count), "the walk counts the header's records");
        if let Ok(records) = decode_records(&Bytes::copy_from_slice(batch)) {
            // KNOWN (kafka-protocol): under LogAppendTime it reports base timestamp + delta
            // where Kafka (and DLog's walk) report the batch's max timestamp: compare the
            // offsets only there.
            let log_append = header.timestamp_type_is_log_append();
            let theirs: Vec<(i64, i64)> =
                records.iter().map(|r| (r.offset, if log_append { 0 } else { r.timestamp })).collect();
            let ours: Vec<(i64, i64)> = seen
                .iter()
                .enumerate()
                .map(|(i, &ts)| (header.base_offset.0.wrapping_add(i as i64), if log_append { 0 } else { ts }))
                .collect();
            assert_eq!(ours, theirs, "the storage walk and kafka-protocol read the same records");
        }
    }
    assert_eq!(next, data.len());
}

/// `dlog_protocol::records::decode_records` (the CLI consumer's and the group
/// coordinator's record decoder) on a byte string of batches.
///
/// Uncompressed batches reserve no more than their bytes can hold; decoded records
/// encode again and decode to the same records.
pub fn records_decode(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let (decoded, largest) = largest_allocation(|| decode_records(&bytes));
    if all_uncompressed(data) {
        assert_bounded("decode_records", data.len(), largest, 1024, SLACK);
    }
    let Ok(records) = decoded else { return };
    // kafka-protocol's encoder takes records whose offsets and timestamps lie within an
    // i32 and an i64 of one another (and panics past that): others cannot round-trip.
    let span = |f: fn(&dlog_protocol::records::Record) -> i64| {
        let (min, max) = (records.iter().map(f).min(), records.iter().map(f).max());
        min.zip(max).and_then(|(min, max)| max.checked_sub(min))
    };
    let (Some(offsets), Some(_)) = (span(|r| r.offset), span(|r| r.timestamp)) else { return };
    if offsets > i64::from(i32::MAX) {
        return;
    }
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    if RecordBatchEncoder::encode(&mut buf, records.iter(), &options).is_err() {
        return; // e.g. a sequence the encoder's batch split refuses: nothing was accepted
    }
    let again = decode_records(&buf.freeze()).expect("re-encoded records decode");
    // kafka-protocol's encoder writes CreateTime batches only (DLog's producers, the CLI's
    // and the group coordinator's, write nothing else): a LogAppendTime record comes
    // back as CreateTime with the same timestamp.
    let mut records = records;
    for r in &mut records {
        r.timestamp_type = dlog_protocol::records::TimestampType::Creation;
    }
    assert_eq!(again, records, "records survive a re-encoding");
}

/// Whether every batch header found walking `data` says "uncompressed" (or none parses).
fn all_uncompressed(data: &[u8]) -> bool {
    let mut pos = 0usize;
    while let Ok(h) = BatchHeader::parse(&data[pos..]) {
        if h.compression_codec() != 0 {
            return false;
        }
        if h.batch_length < 0 {
            break;
        }
        pos = pos.saturating_add(LOG_OVERHEAD_BYTES + h.batch_length as usize);
        if pos >= data.len() {
            break;
        }
    }
    true
}

// ---------------------------------------------------------------------------------
// Persisted partition state.

/// `dlog_storage::EpochCache::decode` (the `leader-epochs` file).
///
/// A decoded cache re-encodes to the same bytes, and the operations the log runs on it
/// at open (trimming to the log start and end) and for OffsetForLeaderEpoch keep its
/// invariants.
pub fn epoch_cache(data: &[u8]) {
    let (decoded, largest) = largest_allocation(|| EpochCache::decode(data));
    assert_bounded("EpochCache::decode", data.len(), largest, 4, 1024);
    let Some(cache) = decoded else { return };
    assert_eq!(cache.encode(), data, "the leader-epoch file is canonical");
    let entries = cache.entries().to_vec();
    assert_eq!(EpochCache::from_entries(entries.clone()).as_ref(), Some(&cache));
    let Some(latest) = cache.latest() else { return };
    // Queries over a log ending at or after the latest start.
    for log_end in [latest.start_offset, Offset(latest.start_offset.0.saturating_add(1))] {
        for e in entries.iter().map(|e| e.epoch.0).chain([-1, 0, i32::MAX]) {
            let epoch = LeaderEpoch(e);
            if let Some((found, end)) = cache.end_offset_for(epoch, log_end) {
                assert!(found <= epoch && end <= log_end, "epoch {epoch}: ({found}, {end}) past {log_end}");
            }
            let _ = cache.start_after(epoch);
        }
    }
    // The trims the log applies at open, at offsets around every entry.
    for e in &entries {
        for o in [e.start_offset.0.saturating_sub(1), e.start_offset.0, e.start_offset.0.saturating_add(1)] {
            let mut from_start = cache.clone();
            from_start.truncate_from_start(Offset(o));
            let mut from_end = cache.clone();
            from_end.truncate_from_end(Offset(o));
            for c in [&from_start, &from_end] {
                assert!(EpochCache::from_entries(c.entries().to_vec()).is_some(), "a trim broke the cache: {c:?}");
            }
        }
    }
}

/// `dlog_storage::ProducerStateMap::decode` (a `<offset>.producer-snapshot` file).
///
/// A decoded state re-encodes to bytes that decode to the same state (ids are written
/// sorted, so the bytes may differ once), and checking batches against it (what append
/// does with every idempotent producer's batch) never panics.
pub fn producer_snapshot(data: &[u8]) {
    let (decoded, largest) = largest_allocation(|| ProducerStateMap::decode(data));
    assert_bounded("ProducerStateMap::decode", data.len(), largest, 32, 4096);
    let Some((covers, state)) = decoded else { return };
    let encoded = state.encode(covers);
    assert_eq!(ProducerStateMap::decode(&encoded).as_ref(), Some(&(covers, state.clone())));
    assert!(encoded.len() <= data.len(), "duplicates are dropped, nothing is added");
    let mut state = state;
    let ids: Vec<i64> = (0..=i64::from(data.len() as u8)).chain([-1, i64::MAX]).collect();
    for id in ids {
        let Some(entry) = state.get(id).cloned() else { continue };
        let last = entry.batches.back().copied();
        for epoch in [entry.epoch, entry.epoch.saturating_add(1), -1] {
            for first in [0, 1, i32::MAX, last.map_or(0, |b| b.last_seq.wrapping_add(1))] {
                let _ = state.check(id, epoch, first, first);
            }
        }
        if let Some(b) = last {
            let meta = dlog_storage::producer_state::BatchMeta { first_offset: b.last_offset, ..b };
            state.record(id, entry.epoch, meta);
        }
    }
    state.remove_ended_before(covers);
}

/// The checkpoint files' framing (`dlog_storage::decode_checkpoint`: `recovery-point`,
/// `log-start-offset`, `clean-shutdown`). A payload the writer could have written
/// re-encodes to the same bytes.
pub fn checkpoint(data: &[u8]) {
    let Some(payload) = dlog_storage::decode_checkpoint(data) else { return };
    if payload.len() <= 1024 {
        assert_eq!(dlog_storage::encode_checkpoint(payload), data, "a checkpoint file is canonical");
    }
}

/// A partition directory as a crashed or cleanly closed broker leaves it: segments of
/// three epochs with indexes and time indexes, producer snapshots, the leader-epoch
/// file, the log start moved by DeleteRecords, the recovery point, and (closed only)
/// the clean-shutdown marker. See [`partition_templates`].
pub struct PartitionTemplate {
    /// File name and contents.
    pub files: Vec<(String, Vec<u8>)>,
    pub config: TopicConfig,
    pub log_start: Offset,
    pub log_end: Offset,
    /// `read(offset, 1 MiB, log end)` for every offset of the log.
    pub reads: BTreeMap<Offset, Vec<u8>>,
}

/// The time the partition target opens logs at.
const PARTITION_NOW_MS: i64 = 10_000;

/// The two partition directories of [`partition_dir`]: `[crashed, closed]`.
pub fn partition_templates() -> &'static [PartitionTemplate; 2] {
    static TEMPLATES: OnceLock<[PartitionTemplate; 2]> = OnceLock::new();
    TEMPLATES.get_or_init(seeds::build_partition_templates)
}

/// What [`partition_dir`]'s first byte selects: a template, a file of it, and whether
/// that file is deleted (else replaced by the rest of the input). Bit 7: template; bit
/// 6: delete; bits 0-5: file index, modulo the template's file count.
pub fn partition_file(selector: u8) -> (&'static PartitionTemplate, usize, bool) {
    let t = &partition_templates()[usize::from(selector >> 7)];
    (t, usize::from(selector & 0x3f) % t.files.len(), selector & 0x40 != 0)
}

/// `dlog_storage::PartitionLog::open` over a partition directory one of whose files
/// was replaced by the input (or deleted); then the reads, OffsetForLeaderEpoch,
/// ListOffsets and close the broker runs. Input: `[selector (see partition_file),
/// file contents...]`.
///
/// Opening never panics. An opened log is consistent (start <= end, every cached epoch
/// within). When the damage is one the log must survive intact (an index, a time
/// index, the leader-epoch file, a producer snapshot or the log start offset, any
/// content; a recovery point or clean-shutdown marker that fails its checksum; any of
/// those deleted) the log ends where it ended, and serves every record it held, byte
/// for byte.
pub fn partition_dir(data: &[u8]) {
    let Some((&selector, content)) = data.split_first() else { return };
    let (t, victim, delete) = partition_file(selector);
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (i, (name, bytes)) in t.files.iter().enumerate() {
        let path = dir.path().join(name);
        match (i == victim, delete) {
            (false, _) => std::fs::write(&path, bytes).expect("template file written"),
            (true, false) => std::fs::write(&path, content).expect("fuzzed file written"),
            (true, true) => {}
        }
    }
    let name = t.files[victim].0.as_str();
    let survivable = delete
        || name.ends_with(".index")
        || name.ends_with(".timeindex")
        || name.ends_with(".producer-snapshot")
        || name == "leader-epochs"
        || name == "log-start-offset"
        || ((name == "recovery-point" || name == "clean-shutdown")
            && dlog_storage::decode_checkpoint(content).is_none());
    let survivable = survivable && !(delete && name.ends_with(".log"));
    let log = match PartitionLog::open(dir.path(), t.config.clone(), PARTITION_NOW_MS) {
        Ok(log) => log,
        Err(e) => {
            assert!(!survivable, "{name} damaged: the log must still open, but: {e}");
            return;
        }
    };
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    assert!(start <= end, "log start {start} past its end {end}");
    for e in log.epoch_cache().entries() {
        assert!(start <= e.start_offset && e.start_offset <= end, "epoch entry {e:?} outside [{start}, {end}]");
    }
    if survivable {
        assert_eq!(end, t.log_end, "{name} damaged: the log end moved");
    }
    // Every offset the template held, a few past it, and the last one (a checkpoint
    // with a valid checksum may claim any log end: it is trusted, by design).
    let held = start.0..end.0.min(t.log_end.0.max(start.0).saturating_add(4));
    for o in held.chain((end > start).then_some(end.0 - 1)) {
        let read = log.read(Offset(o), 1 << 20, end);
        if survivable && o >= t.log_start.0 {
            let read = read.unwrap_or_else(|e| panic!("{name} damaged: read at {o} failed: {e}"));
            assert_eq!(read.bytes[..], t.reads[&Offset(o)][..], "{name} damaged: read at {o} differs");
        }
    }
    for e in -1..8 {
        if let Some((found, at)) = log.epoch_end(LeaderEpoch(e)) {
            assert!(at <= end, "epoch {e}: ({found}, {at}) past the log end {end}");
        }
    }
    for ts in [i64::MIN, 0, 1_015, 1_060, 1_100, i64::MAX] {
        if let Ok(Some(batch)) = log.find_batch_by_timestamp(ts) {
            assert!(validate_batches(&batch).is_ok() || !survivable, "{name} damaged: a bad batch found at {ts}");
        }
    }
    let _ = log.max_timestamp_batch();
    let _ = log.close();
}

// ---------------------------------------------------------------------------------
// Metadata: the key space's snapshots, the Raft messages and log, the RPC envelope.

/// `dlog_consensus::KvState::restore` (a metadata snapshot, from `snapshot.bin` or a
/// leader's InstallSnapshot).
///
/// A restored state is valid, snapshots to bytes that restore to the same state, and
/// takes commands afterwards keeping its invariants (what a node does right after
/// installing a snapshot).
pub fn kv_snapshot(data: &[u8]) {
    let (restored, largest) = largest_allocation(|| KvState::restore(data));
    // serde reserves at most 1 MiB for a claimed length; the rest grows with the input.
    assert_bounded("KvState::restore", data.len(), largest, 64, (1 << 20) + SLACK);
    let Ok(state) = restored else { return };
    state.validate().expect("a restored state is valid");
    let snapshot = state.snapshot();
    assert_eq!(KvState::restore(&snapshot).as_ref(), Ok(&state), "a snapshot restores to its state");
    drive_kv(state, data);
}

/// Applies a few commands of every kind to a restored `state` and checks its
/// invariants after each.
fn drive_kv(mut state: KvState, data: &[u8]) {
    let now = state.clock_ms().max(0).saturating_add(1);
    let key = state.range_scan("", "\u{10ffff}").first().map_or_else(|| "/fuzz".to_string(), |e| e.key.clone());
    let session = SessionId(1);
    let value = Bytes::copy_from_slice(&data[..data.len().min(16)]);
    let commands = [
        Command::ExpireSessions { now_ms: now },
        Command::Put {
            key: key.clone(),
            value: value.clone(),
            expected: Default::default(),
            session: None,
            sequential: false,
            now_ms: now,
        },
        Command::Put {
            key: "/fuzz/seq".into(),
            value,
            expected: Default::default(),
            session: None,
            sequential: true,
            now_ms: now,
        },
        Command::CreateSession { timeout_ms: 1000, identity: "fuzz".into(), now_ms: now },
        Command::KeepAlive { session, now_ms: now },
        Command::Delete { key: key.clone(), expected: Default::default(), now_ms: now },
        Command::DeleteRange { start: String::new(), end: key, now_ms: now },
        Command::CloseSession { session, now_ms: now },
        Command::ExpireSessions { now_ms: i64::MAX },
    ];
    for command in commands {
        let _ = state.apply(command.clone());
        state.validate().unwrap_or_else(|e| panic!("after {command:?}: {e}"));
    }
}

/// The snapshot file of a metadata node (`snapshot.bin`), decoded as a node loading it
/// does (`dlog_consensus::raft::state_machine::decode_snapshot_file`): postcard
/// snapshot metadata and data, the data restored.
///
/// A decoded file's metadata and state, written again, decode to the same.
pub fn raft_snapshot_file(data: &[u8]) {
    let (decoded, largest) = largest_allocation(|| state_machine::decode_snapshot_file(data));
    assert_bounded("decode_snapshot_file", data.len(), largest, 64, (1 << 20) + SLACK);
    let Ok((meta, state)) = decoded else { return };
    state.validate().expect("a loaded state is valid");
    let again = state_machine::encode_snapshot_file(meta.clone(), state.snapshot());
    let (meta2, state2) = state_machine::decode_snapshot_file(&again).expect("a written snapshot file loads");
    assert_eq!((meta2, state2), (meta, state));
}

/// The metadata group's messages (`RaftRequest::from_bytes`, `RaftResponse::from_bytes`,
/// postcard), as a node receives them on the `raft` RPC channel; a snapshot request's
/// data is restored as the receiving node installs it.
///
/// A decoded message encodes, and its encoding decodes and encodes to the same bytes.
pub fn raft_rpc(data: &[u8]) {
    let (request, largest) = largest_allocation(|| RaftRequest::from_bytes(data));
    assert_bounded("RaftRequest::from_bytes", data.len(), largest, 64, (1 << 20) + SLACK);
    if let Ok(request) = request {
        let bytes = request.to_bytes().expect("a decoded request encodes");
        let again = RaftRequest::from_bytes(&bytes).expect("an encoded request decodes");
        assert_eq!(again.to_bytes().expect("encodes"), bytes, "request encoding is stable");
        if let RaftRequest::Snapshot { data, .. } = &request {
            if let Ok(state) = KvState::restore(data) {
                state.validate().expect("an installed snapshot is valid");
            }
        }
    }
    let (response, largest) = largest_allocation(|| RaftResponse::from_bytes(data));
    assert_bounded("RaftResponse::from_bytes", data.len(), largest, 64, (1 << 20) + SLACK);
    if let Ok(response) = response {
        let bytes = response.to_bytes().expect("a decoded response encodes");
        let again = RaftResponse::from_bytes(&bytes).expect("an encoded response decodes");
        assert_eq!(again.to_bytes().expect("encodes"), bytes, "response encoding is stable");
    }
}

/// The Raft log's stored values (`dlog_consensus::raft::log_store::{decode_entry,
/// decode_meta}`): input `[kind, ...]`; kind 0: `[index u64 BE, entry...]`, 1: a vote,
/// 2: the committed log id, 3: the last purged log id.
///
/// A decoded value encodes and decodes to the same value.
pub fn raft_log_values(data: &[u8]) {
    // Decode, and a decoded value encodes and decodes to itself.
    macro_rules! round_trip {
        ($t:ty, $key:literal, $bytes:expr) => {{
            let bytes: &[u8] = $bytes;
            let (decoded, largest) = largest_allocation(|| log_store::decode_meta::<$t>($key, bytes));
            assert_bounded($key, bytes.len(), largest, 64, SLACK);
            if let Ok(value) = decoded {
                let encoded = log_store::encode(&value).expect("a decoded value encodes");
                assert_eq!(log_store::decode_meta::<$t>($key, &encoded).expect("decodes"), value);
            }
        }};
    }
    let Some((&kind, rest)) = data.split_first() else { return };
    match kind % 4 {
        0 => {
            let Some((index, entry)) = rest.split_first_chunk::<8>() else { return };
            let index = u64::from_be_bytes(*index);
            let (decoded, largest) = largest_allocation(|| log_store::decode_entry(index, entry));
            assert_bounded("decode_entry", entry.len(), largest, 64, (1 << 20) + SLACK);
            if let Ok(e) = decoded {
                assert_eq!(e.log_id.index, index, "an entry is where its log id says");
                let encoded = log_store::encode(&e).expect("a decoded entry encodes");
                assert_eq!(log_store::decode_entry(index, &encoded).expect("decodes"), e);
            }
        }
        1 => round_trip!(openraft::Vote<u64>, "vote", rest),
        2 => round_trip!(Option<openraft::LogId<u64>>, "committed", rest),
        _ => round_trip!(openraft::LogId<u64>, "last_purged", rest),
    }
}

/// The internal RPC's envelope (`dlog_rpc::decode_call_request` and
/// `decode_call_response`, the prost messages tonic decodes for every call).
pub fn rpc_envelope(data: &[u8]) {
    if let Ok((from, channel, payload)) = dlog_rpc::decode_call_request(data) {
        let again = dlog_rpc::encode_call_request(from, &channel, payload.clone());
        assert_eq!(dlog_rpc::decode_call_request(&again).expect("decodes"), (from, channel, payload));
    }
    let _ = dlog_rpc::decode_call_response(data);
}

/// Makes checksums and lengths of a mutated input of target `name` right again, so
/// that the decoder looks past them: batch lengths and CRCs, the trailing CRC-32C of
/// the leader-epoch file, producer snapshots and checkpoints, and their counts and
/// lengths. A no-op for formats without any.
pub fn repair(name: &str, data: &mut Vec<u8>) {
    match name {
        "batch_validate" | "records_decode" => repair_batches(data),
        "epoch_cache" => repair_epochs(data),
        "producer_snapshot" => repair_trailing_crc(data),
        "checkpoint" => repair_checkpoint(data),
        "partition_dir" => {
            let Some((&selector, _)) = data.split_first() else { return };
            let (t, victim, _) = partition_file(selector);
            let file = t.files[victim].0.as_str();
            let mut content = data.split_off(1);
            match file {
                f if f.ends_with(".log") => repair_batches(&mut content),
                f if f.ends_with(".producer-snapshot") => repair_trailing_crc(&mut content),
                "leader-epochs" => repair_epochs(&mut content),
                "recovery-point" | "log-start-offset" | "clean-shutdown" => repair_checkpoint(&mut content),
                _ => {}
            }
            data.extend(content);
        }
        _ => {}
    }
}

/// Every batch's length (the rest of the input where it cannot be right) and CRC.
fn repair_batches(data: &mut [u8]) {
    const HEADER: usize = 61;
    let mut pos = 0usize;
    while pos + HEADER <= data.len() {
        let rest = data.len() - pos;
        let length = i32::from_be_bytes(data[pos + 8..pos + 12].try_into().expect("4 bytes"));
        let mut size = usize::try_from(length).map_or(0, |l| l + LOG_OVERHEAD_BYTES);
        if size < HEADER || size > rest {
            size = rest;
            let length = i32::try_from(size - LOG_OVERHEAD_BYTES).unwrap_or(i32::MAX);
            data[pos + 8..pos + 12].copy_from_slice(&length.to_be_bytes());
        }
        let crc = crc32c::crc32c(&data[pos + 21..pos + size]);
        data[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos += size;
    }
}

fn repair_trailing_crc(data: &mut [u8]) {
    if let Some(body) = data.len().checked_sub(4) {
        let crc = crc32c::crc32c(&data[..body]);
        data[body..].copy_from_slice(&crc.to_be_bytes());
    }
}

/// The entry count from the length (dropping a partial entry), then the CRC.
fn repair_epochs(data: &mut Vec<u8>) {
    if data.len() < 14 {
        return;
    }
    let entries = (data.len() - 14) / 12;
    data.truncate(14 + entries * 12);
    data[6..10].copy_from_slice(&(entries as u32).to_be_bytes());
    repair_trailing_crc(data);
}

/// The payload length from the file's length, then the CRC.
fn repair_checkpoint(data: &mut [u8]) {
    if data.len() < 12 {
        return;
    }
    if let Ok(len) = u16::try_from(data.len() - 12) {
        data[6..8].copy_from_slice(&len.to_be_bytes());
    }
    repair_trailing_crc(data);
}
