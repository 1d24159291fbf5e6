//! Valid inputs of every target, made by the project's own encoders: the starting
//! points of the structured mutations, so that decoders are driven deep.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use dlog_consensus::raft::network::{
    ForwardError, ForwardRequest, ForwardResponse, RaftRequest, RaftResponse, ReadRequest,
};
use dlog_consensus::raft::{log_store, state_machine, TypeConfig};
use dlog_consensus::{Command, CommandOutcome, Comparison, ExpectedVersion, KvError, KvState, SessionId};
use dlog_core::{LeaderEpoch, NodeId, Offset, TopicConfig};
use dlog_protocol::kafka_protocol::messages as km;
use dlog_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
use dlog_protocol::records::{encode_batch, new_record, Compression, Record};
use dlog_server::controller::{self, ConfigChange, ControllerRequest, Identity, PartitionRecord, TopicRecord};
use dlog_server::groups::coordinator::{self, Committed};
use dlog_server::groups::state::{GroupSnapshot, MemberSnapshot};
use dlog_server::replica::{self, ReplicaReply, ReplicaRequest};
use dlog_storage::epochs::EpochEntry;
use dlog_storage::producer_state::BatchMeta;
use dlog_storage::testing::{batch, idempotent_batch, BatchSpec};
use dlog_storage::{EpochCache, PartitionLog, ProducerStateMap};
use openraft::error::Fatal;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote};

use crate::{partition_templates, PartitionTemplate, PARTITION_NOW_MS};

mod requests;
pub use requests::requests;

/// The seeds of target `name` (none for an unknown name).
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "frame_split" => frame_split(),
        "request_decode" => requests(),
        "batch_validate" => batches(),
        "records_decode" => record_batches(),
        "epoch_cache" => epoch_caches(),
        "producer_snapshot" => producer_snapshots(),
        "checkpoint" => checkpoints(),
        "partition_dir" => partition_files(),
        "kv_snapshot" => kv_states().iter().map(KvState::snapshot).collect(),
        "raft_snapshot_file" => snapshot_files(),
        "raft_rpc" => raft_messages(),
        "raft_log_values" => raft_log_values(),
        "rpc_envelope" => rpc_envelopes(),
        "replica_rpc" => replica_messages(),
        "controller_rpc" => controller_messages(),
        "metadata_values" => metadata_values(),
        "group_records" => group_records(),
        "server_files" => server_files(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------
// Kafka.

fn frame_split() -> Vec<Vec<u8>> {
    let frames: Vec<Vec<u8>> = requests().into_iter().step_by(17).take(8).collect();
    let mut stream = Vec::new();
    for f in &frames {
        stream.extend_from_slice(&(f.len() as i32).to_be_bytes());
        stream.extend_from_slice(f);
    }
    let mut out = Vec::new();
    for (max, piece) in [(20u8, 31u8), (20, 0), (10, 6), (6, 2)] {
        let mut s = vec![max, piece];
        s.extend_from_slice(&stream);
        out.push(s);
    }
    // A negative and an oversized prefix after a good frame.
    for bad in [-5i32, i32::MAX] {
        let mut s = vec![20u8, 3];
        s.extend_from_slice(&stream[..4 + frames[0].len()]);
        s.extend_from_slice(&bad.to_be_bytes());
        out.push(s);
    }
    out
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// Records of every shape: keys and values or null, headers, timestamps apart.
fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let key = (i % 3 != 1).then(|| Bytes::from(format!("key-{i}")));
            let value = (i % 4 != 3).then(|| Bytes::from("v".repeat(i * 7 % 40)));
            let mut r = new_record(key, value, 1_000 + 10 * i as i64);
            if i % 2 == 0 {
                r.headers.insert(s("h"), Some(Bytes::from_static(b"hv")));
            }
            r
        })
        .collect()
}

/// Real record batches (kafka-protocol's encoder) in every compression, the
/// LeaderChange control batch, and two batches back to back.
pub fn record_batches() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for compression in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
    {
        for n in [1, 5] {
            let mut rs = records(n);
            out.push(encode_batch(&mut rs, compression).expect("records encode").to_vec());
        }
    }
    out.push(dlog_protocol::control::leader_change_batch(1, &[1, 2, 3], 1_000).to_vec());
    let two = [out[1].clone(), out[2].clone()].concat();
    out.push(two);
    out
}

/// Storage's own test batches (filler records, header and CRC right), idempotent
/// ones, and the real record batches of [`record_batches`].
fn batches() -> Vec<Vec<u8>> {
    let spec = |records, payload_bytes| BatchSpec {
        base_offset: 0,
        records,
        base_timestamp: 5,
        max_timestamp: 9,
        payload_bytes,
    };
    let mut out = vec![
        batch(&spec(1, 0)),
        batch(&spec(3, 16)),
        idempotent_batch(&spec(2, 8), 7, 1, 40),
        [batch(&spec(1, 4)), batch(&spec(2, 4))].concat(),
    ];
    out.extend(record_batches());
    out
}

/// The consumer protocol's subscriptions (what JoinGroup carries), as clients encode them.
fn subscriptions() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for version in 0..=3i16 {
        let sub = km::ConsumerProtocolSubscription::default()
            .with_topics(vec![s("t"), s("orders")])
            .with_user_data(Some(Bytes::from_static(b"ud")));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&version.to_be_bytes());
        if sub.encode(&mut buf, version).is_ok() {
            out.push(buf.to_vec());
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// Storage.

fn epoch_caches() -> Vec<Vec<u8>> {
    let cache = |entries: &[(i32, i64)]| {
        EpochCache::from_entries(
            entries.iter().map(|&(e, o)| EpochEntry { epoch: LeaderEpoch(e), start_offset: Offset(o) }).collect(),
        )
        .expect("ordered entries")
        .encode()
    };
    vec![cache(&[]), cache(&[(0, 0)]), cache(&[(2, 10), (4, 20), (7, 35)]), cache(&[(0, 0), (i32::MAX, i64::MAX)])]
}

fn producer_snapshots() -> Vec<Vec<u8>> {
    let mut state = ProducerStateMap::default();
    let mut out = vec![state.encode(Offset(0))];
    for i in 0..7i32 {
        let first = i64::from(i) * 3;
        let meta = BatchMeta {
            first_seq: i * 3,
            last_seq: i * 3 + 2,
            first_offset: Offset(first),
            last_offset: Offset(first + 2),
        };
        state.record(7, 0, meta);
        state.record(i64::from(i % 3) + 100, (i % 2) as i16, meta);
    }
    out.push(state.encode(Offset(21)));
    state.record(
        i64::MAX,
        i16::MAX,
        BatchMeta { first_seq: i32::MAX, last_seq: 0, first_offset: Offset(30), last_offset: Offset(31) },
    );
    out.push(state.encode(Offset(32)));
    out
}

fn checkpoints() -> Vec<Vec<u8>> {
    let i64s = |v: &[i64]| v.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
    vec![
        dlog_storage::encode_checkpoint(&i64s(&[5])),
        dlog_storage::encode_checkpoint(&i64s(&[12, 9, 400])),
        dlog_storage::encode_checkpoint(&i64s(&[12, 9, 400, 1, 1_050, 11])),
        dlog_storage::encode_checkpoint(&[]),
    ]
}

/// Every file of both partition templates as it is, and deleted.
fn partition_files() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (t, template) in partition_templates().iter().enumerate() {
        for (i, (_, bytes)) in template.files.iter().enumerate() {
            let selector = ((t as u8) << 7) | i as u8;
            out.push([&[selector][..], bytes].concat());
            out.push(vec![selector | 0x40]);
        }
    }
    out
}

/// Reads every file of `dir`, sorted by name.
fn read_dir(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("a readable directory")
        .map(|e| {
            let e = e.expect("an entry");
            (e.file_name().into_string().expect("a UTF-8 name"), std::fs::read(e.path()).expect("a readable file"))
        })
        .collect();
    files.sort();
    files
}

/// The templates of [`crate::partition_dir`]: `[crashed, closed]`. Three leader epochs
/// of batches, two idempotent producers among them, over four small segments; the log
/// start moved by DeleteRecords into the second segment; flushed (so the recovery
/// point is written) and either left as a crash leaves it or closed.
pub(crate) fn build_partition_templates() -> [PartitionTemplate; 2] {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = TopicConfig { segment_bytes: 400, index_interval_bytes: 1, ..TopicConfig::default() };
    let mut log = PartitionLog::open(dir.path(), config.clone(), 1_000).expect("a new log");
    let (mut ts, mut seqs) = (1_000i64, [0i32; 2]);
    for (epoch, count) in [(0, 3), (2, 4), (5, 3)] {
        for i in 0..count {
            ts += 10;
            let records = 1 + i % 3;
            let spec =
                BatchSpec { base_offset: 0, records, base_timestamp: ts, max_timestamp: ts + 5, payload_bytes: 30 };
            let producer = (i % 3) as usize;
            let mut b = match producer {
                0 | 1 => idempotent_batch(&spec, 7 + 2 * producer as i64, producer as i16, seqs[producer]),
                _ => batch(&spec),
            };
            if let Some(seq) = seqs.get_mut(producer) {
                *seq += records;
            }
            log.append(&mut b, LeaderEpoch(epoch), ts).expect("appended");
        }
    }
    log.delete_records_before(Offset(4)).expect("log start moved");
    log.flush().expect("flushed");
    let crashed = read_dir(dir.path());
    log.close().expect("closed");
    let closed = read_dir(dir.path());
    [template(crashed, &config), template(closed, &config)]
}

/// A template of `files`, with what a log opened over them holds.
fn template(files: Vec<(String, Vec<u8>)>, config: &TopicConfig) -> PartitionTemplate {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, bytes) in &files {
        std::fs::write(dir.path().join(name), bytes).expect("written");
    }
    let log = PartitionLog::open(dir.path(), config.clone(), PARTITION_NOW_MS).expect("a template opens");
    let (log_start, log_end) = (log.log_start_offset(), log.log_end_offset());
    let reads = (log_start.0..log_end.0)
        .map(|o| (Offset(o), log.read(Offset(o), 1 << 20, log_end).expect("a template reads").bytes.to_vec()))
        .collect();
    PartitionTemplate { files, config: config.clone(), log_start, log_end, reads }
}

// ---------------------------------------------------------------------------------
// Metadata.

fn put(key: &str, value: &[u8], session: Option<SessionId>, sequential: bool, now_ms: i64) -> Command {
    Command::Put {
        key: key.to_string(),
        value: Bytes::copy_from_slice(value),
        expected: ExpectedVersion::Any,
        session,
        sequential,
        now_ms,
    }
}

/// Key spaces: empty; topics and brokers with an ephemeral key and a session; after
/// deletions and sequential keys.
fn kv_states() -> Vec<KvState> {
    let mut states = vec![KvState::new()];
    let mut kv = KvState::new();
    let commands = [
        put("/topics/t", br#"{"id":"00112233445566778899aabbccddeeff","partitions":[]}"#, None, false, 10),
        Command::CreateSession { timeout_ms: 3000, identity: "broker-1".into(), now_ms: 11 },
        put("/brokers/ids/0000000001", b"h:9092  inc", Some(SessionId(1)), false, 12),
        put("/producer-ids/next", b"1000", None, false, 13),
    ];
    for c in commands {
        kv.apply(c).0.expect("applies");
    }
    states.push(kv.clone());
    kv.apply(put("/seq", b"", None, true, 14)).0.expect("applies");
    kv.apply(Command::Delete { key: "/producer-ids/next".into(), expected: ExpectedVersion::Any, now_ms: 15 })
        .0
        .expect("applies");
    kv.apply(Command::CreateSession { timeout_ms: 100, identity: String::new(), now_ms: 16 }).0.expect("applies");
    states.push(kv);
    states
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn membership() -> Membership<u64, BasicNode> {
    let nodes: BTreeMap<u64, BasicNode> = (1..=3).map(|i| (i, BasicNode::new(format!("node-{i}:9093")))).collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

fn snapshot_meta() -> SnapshotMeta<u64, BasicNode> {
    SnapshotMeta {
        last_log_id: Some(log_id(3, 40)),
        last_membership: StoredMembership::new(Some(log_id(1, 2)), membership()),
        snapshot_id: "3-40-1".into(),
    }
}

fn snapshot_files() -> Vec<Vec<u8>> {
    let states = kv_states();
    vec![
        state_machine::encode_snapshot_file(Default::default(), states[0].snapshot()),
        state_machine::encode_snapshot_file(snapshot_meta(), states[1].snapshot()),
        state_machine::encode_snapshot_file(snapshot_meta(), states[2].snapshot()),
    ]
}

type RaftEntry = openraft::Entry<TypeConfig>;

fn entries() -> Vec<RaftEntry> {
    vec![
        RaftEntry { log_id: log_id(1, 1), payload: EntryPayload::Blank },
        RaftEntry { log_id: log_id(1, 2), payload: EntryPayload::Membership(membership()) },
        RaftEntry { log_id: log_id(2, 3), payload: EntryPayload::Normal(put("/k", b"v", None, false, 5)) },
        RaftEntry {
            log_id: log_id(2, 4),
            payload: EntryPayload::Normal(Command::DeleteRange { start: "/a".into(), end: "/b".into(), now_ms: 6 }),
        },
        RaftEntry {
            log_id: log_id(2, 5),
            payload: EntryPayload::Normal(Command::KeepAlive { session: SessionId(1), now_ms: 7 }),
        },
    ]
}

fn raft_messages() -> Vec<Vec<u8>> {
    let vote = Vote::new_committed(2, 1);
    let requests = vec![
        RaftRequest::AppendEntries(AppendEntriesRequest {
            vote,
            prev_log_id: Some(log_id(1, 0)),
            entries: entries(),
            leader_commit: Some(log_id(1, 2)),
        }),
        RaftRequest::AppendEntries(AppendEntriesRequest {
            vote,
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        }),
        RaftRequest::Vote(VoteRequest::new(Vote::new(3, 2), Some(log_id(2, 5)))),
        RaftRequest::Snapshot { vote, meta: snapshot_meta(), data: kv_states()[1].snapshot() },
        RaftRequest::Forward(ForwardRequest::Write(put("/k", b"v", Some(SessionId(3)), true, 9))),
        RaftRequest::Forward(ForwardRequest::Read(ReadRequest::Get {
            key: "/k".into(),
            comparison: Comparison::Floor,
        })),
        RaftRequest::Forward(ForwardRequest::Read(ReadRequest::RangeScan { start: "/".into(), end: "0".into() })),
        RaftRequest::Forward(ForwardRequest::AddLearners(BTreeMap::from([(4, "node-4:9093".to_string())]))),
        RaftRequest::Forward(ForwardRequest::ReadIndex),
        RaftRequest::Probe,
    ];
    let entry = dlog_consensus::Entry {
        key: "/k".into(),
        value: Bytes::from_static(b"v"),
        stat: kv_states()[1].get("/topics/t", Comparison::Equal).expect("a key").stat,
    };
    let responses = vec![
        RaftResponse::AppendEntries(AppendEntriesResponse::Success),
        RaftResponse::AppendEntries(AppendEntriesResponse::PartialSuccess(Some(log_id(2, 4)))),
        RaftResponse::AppendEntries(AppendEntriesResponse::Conflict),
        RaftResponse::AppendEntries(AppendEntriesResponse::HigherVote(Vote::new(4, 3))),
        RaftResponse::Vote(VoteResponse::new(vote, Some(log_id(2, 5)), true)),
        RaftResponse::Snapshot(SnapshotResponse::new(vote)),
        RaftResponse::Forward(Ok(ForwardResponse::Written(Ok(CommandOutcome::SessionsExpired {
            sessions: vec![SessionId(1), SessionId(2)],
        })))),
        RaftResponse::Forward(Ok(ForwardResponse::Written(Err(KvError::UnexpectedVersion {
            key: "/k".into(),
            expected: ExpectedVersion::NotExists,
            actual: Some(entry.stat.version_id),
        })))),
        RaftResponse::Forward(Ok(ForwardResponse::RangeScan(vec![entry.clone(), entry]))),
        RaftResponse::Forward(Ok(ForwardResponse::ReadIndex(Some(40)))),
        RaftResponse::Forward(Err(ForwardError::NotLeader { leader: Some(2) })),
        RaftResponse::Probe { initialized: true, leader: Some(1) },
        RaftResponse::Fatal(Fatal::Stopped),
    ];
    let mut out: Vec<Vec<u8>> = requests.iter().map(|r| r.to_bytes().expect("a request encodes")).collect();
    out.extend(responses.iter().map(|r| r.to_bytes().expect("a response encodes")));
    out
}

fn raft_log_values() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = entries()
        .iter()
        .map(|e| [&[0u8][..], &e.log_id.index.to_be_bytes(), &log_store::encode(e).expect("encodes")].concat())
        .collect();
    out.push([&[1u8][..], &log_store::encode(&Vote::new_committed(2, 1)).expect("encodes")].concat());
    out.push([&[1u8][..], &log_store::encode(&Vote::new(3, 2)).expect("encodes")].concat());
    out.push([&[2u8][..], &log_store::encode(&Some(log_id(2, 5))).expect("encodes")].concat());
    out.push([&[2u8][..], &log_store::encode(&None::<LogId<u64>>).expect("encodes")].concat());
    out.push([&[3u8][..], &log_store::encode(&log_id(1, 2)).expect("encodes")].concat());
    out
}

fn rpc_envelopes() -> Vec<Vec<u8>> {
    let raft = raft_messages().swap_remove(0);
    vec![
        dlog_rpc::encode_call_request(NodeId(2), "raft", Bytes::from(raft)),
        dlog_rpc::encode_call_request(NodeId(0), "ping", Bytes::new()),
        dlog_rpc::encode_call_request(NodeId(-1), "replicate", replica_messages().swap_remove(0).into()),
    ]
}

// ---------------------------------------------------------------------------------
// Server.

fn replica_messages() -> Vec<Vec<u8>> {
    let records = Bytes::from(batches().swap_remove(1));
    let request = |kind| ReplicaRequest {
        kind,
        topic: "t".into(),
        partition: 2,
        topic_id: Bytes::from_static(&[7; 16]),
        epoch: 5,
        offset: 100,
        count: 3,
        high_watermark: 90,
        answer_epoch: 4,
        answer_offset: 80,
        records: if kind == replica::kind::PUSH { records.clone() } else { Bytes::new() },
        asked_epoch: 3,
        log_start: 10,
    };
    let mut out: Vec<Vec<u8>> =
        [replica::kind::PUSH, replica::kind::RECONCILE, replica::kind::SEAL, replica::kind::READ]
            .into_iter()
            .map(|k| request(k).to_bytes().to_vec())
            .collect();
    out.push(
        ReplicaReply { kind: replica::reply::OK, epoch: 5, offset: 103, records, error: String::new(), log_start: 10 }
            .to_bytes()
            .to_vec(),
    );
    out.push(
        ReplicaReply { kind: replica::reply::UNAVAILABLE, error: "offline".into(), ..Default::default() }
            .to_bytes()
            .to_vec(),
    );
    out
}

fn controller_messages() -> Vec<Vec<u8>> {
    let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
    let requests = [
        ControllerRequest::CreateTopic {
            name: "t".into(),
            id: "00112233445566778899aabbccddeeff".into(),
            partitions: 3,
            configs: configs.clone(),
            assignment: Some(vec![vec![1, 2], vec![2, 3], vec![3, 1]]),
            replication_factor: Some(2),
        },
        ControllerRequest::DeleteTopic { name: "t".into(), retried: true },
        ControllerRequest::CreatePartitions { name: "t".into(), count: 5, assignment: None, retried: false },
        ControllerRequest::AlterConfigs {
            name: "t".into(),
            change: ConfigChange { replace: false, set: configs, delete: vec!["segment.ms".into()] },
        },
        ControllerRequest::AddNode { id: 4, rpc: "node-4:9093".into() },
        ControllerRequest::RemoveNode { id: 4 },
        ControllerRequest::ElectPreferred { partitions: vec![("t".into(), 0)] },
        ControllerRequest::SetIsr { name: "t".into(), leader: 1, partitions: vec![(0, 3, vec![1, 2])] },
        ControllerRequest::ReplicaFit { name: "t".into(), partition: 0, node: 2, fit: false },
        ControllerRequest::BumpEpoch { name: "t".into(), partition: 0, epoch: 3, node: 1 },
    ];
    let mut out: Vec<Vec<u8>> = requests.iter().map(|r| r.to_bytes().to_vec()).collect();
    out.push(controller::encode_reply(&Ok(42)).to_vec());
    out.push(controller::encode_reply(&Err(dlog_core::Error::NotController("moved".into()))).to_vec());
    out.push(Identity { node: NodeId(3), cluster_id: Some("c-1".into()) }.encode().to_vec());
    out.push(Identity { node: NodeId(0), cluster_id: None }.encode().to_vec());
    out
}

fn metadata_values() -> Vec<Vec<u8>> {
    let record = TopicRecord {
        id: "00112233445566778899aabbccddeeff".into(),
        configs: BTreeMap::from([("retention.ms".into(), "1000".into()), ("write.quorum".into(), "2".into())]),
        partitions: vec![
            PartitionRecord {
                replicas: vec![1, 2, 3],
                leader: 1,
                epoch: 4,
                isr: Some(vec![1, 2]),
                cannot_lead: vec![3],
            },
            PartitionRecord { replicas: vec![2, 3, 1], leader: -1, epoch: 0, isr: None, cannot_lead: vec![] },
        ],
    };
    let broker = dlog_server::cluster::BrokerInfo {
        id: NodeId(7),
        host: "broker-7.local".into(),
        port: 9092,
        rack: Some("r1".into()),
        incarnation: "5f2c".into(),
    };
    let members = BTreeMap::from([(NodeId(1), "h1:9093".to_string()), (NodeId(2), "[::1]:9093".to_string())]);
    vec![
        record.encode().to_vec(),
        dlog_server::cluster::encode_broker(&broker).to_vec(),
        dlog_server::cluster::encode_broker(&dlog_server::cluster::BrokerInfo { rack: None, ..broker }).to_vec(),
        controller::members_text(&members).into_bytes(),
    ]
}

fn group_records() -> Vec<Vec<u8>> {
    let member = |i: i32| MemberSnapshot {
        member_id: format!("m{i}"),
        instance_id: (i % 2 == 0).then(|| format!("static-{i}")),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        rebalance_timeout_ms: 300_000,
        session_timeout_ms: 45_000,
        subscription: Bytes::from(subscriptions().swap_remove(0)),
        assignment: Bytes::from_static(b"asg"),
    };
    let group = GroupSnapshot {
        protocol_type: Some("consumer".into()),
        generation: 7,
        protocol: Some("range".into()),
        leader: Some("m1".into()),
        members: vec![member(1), member(2)],
    };
    let committed = Committed { offset: 42, leader_epoch: 3, metadata: "meta".into(), commit_timestamp: 1_000 };
    let mut out = vec![
        coordinator::encode_key("g", "t", 3).to_vec(),
        coordinator::encode_value(&committed).to_vec(),
        coordinator::encode_group_key("g").to_vec(),
        coordinator::encode_group_value(&group, 99).to_vec(),
        coordinator::encode_group_value(&GroupSnapshot::default(), 1).to_vec(),
    ];
    out.extend(subscriptions());
    out
}

fn server_files() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut registry = dlog_server::topics::TopicRegistry::load(dir.path(), NodeId(1), TopicConfig::default())
        .expect("an empty registry");
    let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
    registry.create("t", 3, configs).expect("a topic");
    let topics = dir.path().join("meta").join("topics");
    let topic_file = std::fs::read(topics.join("t.toml")).expect("a topic file");
    let mut ids = dlog_server::producer_ids::ProducerIdAllocator::open(dir.path()).expect("an allocator");
    ids.allocate().expect("an id");
    let block = std::fs::read(dir.path().join("producer-id-block")).expect("a block file");
    vec![
        [&[0u8][..], b"5"].concat(),
        [&[0u8][..], b"-1\n"].concat(),
        [&[1u8][..], b"0"].concat(),
        [&[1u8][..], b"1"].concat(),
        [&[2u8][..], &topic_file].concat(),
        [&[3u8][..], &block].concat(),
    ]
}
