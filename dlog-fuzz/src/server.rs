//! Targets for the server's messages and records: replication, controller, metadata
//! values, groups, and the files a node keeps.

use super::*;

/// Partition replication messages (`ReplicaRequest::from_bytes`,
/// `ReplicaReply::from_bytes`, protobuf on the `replicate` channel), round trip.
pub fn replica_rpc(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(request) = ReplicaRequest::from_bytes(bytes.clone()) {
        assert_eq!(ReplicaRequest::from_bytes(request.to_bytes()), Ok(request));
    }
    if let Ok(reply) = ReplicaReply::from_bytes(bytes) {
        assert_eq!(ReplicaReply::from_bytes(reply.to_bytes()), Ok(reply));
    }
}

/// Admin requests forwarded to the controller (`ControllerRequest::from_bytes`, JSON),
/// its replies (`controller::decode_reply`) and ping answers (`Identity::decode`),
/// round trip.
pub fn controller_rpc(data: &[u8]) {
    if let Ok(request) = ControllerRequest::from_bytes(data) {
        assert_eq!(ControllerRequest::from_bytes(&request.to_bytes()), Ok(request));
    }
    let reply = controller::decode_reply(data);
    assert_eq!(controller::decode_reply(&controller::encode_reply(&reply)), reply);
    if let Ok(identity) = Identity::decode(data) {
        assert_eq!(Identity::decode(&identity.encode()), Ok(identity));
    }
}

/// Values of the metadata store the server decodes: a topic record
/// (`TopicRecord::decode`, JSON, then `to_meta` as the reconciler runs it), a broker
/// registration (`cluster::decode_broker`) and the member list
/// (`config::parse_cluster_nodes`), round trip.
pub fn metadata_values(data: &[u8]) {
    if let Ok(record) = TopicRecord::decode(data) {
        assert_eq!(TopicRecord::decode(&record.encode()).as_ref(), Ok(&record));
        if let Ok(meta) = record.to_meta("t", &TopicConfig::default()) {
            assert_eq!(meta.assignments.len(), record.partitions.len());
            assert_eq!(meta.partitions as usize, record.partitions.len());
        }
    }
    let key = dlog_server::cluster::broker_key(NodeId(7));
    if let Some(broker) = dlog_server::cluster::decode_broker(&key, data) {
        assert_eq!(broker.id, NodeId(7));
        let encoded = dlog_server::cluster::encode_broker(&broker);
        assert_eq!(dlog_server::cluster::decode_broker(&key, &encoded), Some(broker));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(members) = dlog_server::config::parse_cluster_nodes("members", text) {
            let again = dlog_server::config::parse_cluster_nodes("members", &controller::members_text(&members));
            assert_eq!(again.ok(), Some(members), "the member list reads back as it was written");
        }
    }
}

/// The group coordinator's records in `__consumer_offsets` (`coordinator::{decode_key,
/// decode_value, decode_group_key, decode_group_value}`, Kafka's formats), replayed
/// from the log at every load, and a member's subscription
/// (`coordinator::subscribed_topics`).
///
/// Each decoded value re-encodes to bytes that decode to the same value, and encode
/// again to the same bytes.
pub fn group_records(data: &[u8]) {
    let b = Bytes::copy_from_slice(data);
    let ((), largest) = largest_allocation(|| {
        if let Some((group, topic, partition)) = coordinator::decode_key(b.clone()) {
            let encoded = coordinator::encode_key(&group, &topic, partition);
            assert_eq!(coordinator::decode_key(encoded), Some((group, topic, partition)));
        }
        if let Some(committed) = coordinator::decode_value(b.clone()) {
            assert_eq!(coordinator::decode_value(coordinator::encode_value(&committed)), Some(committed));
        }
        if let Some(group) = coordinator::decode_group_key(b.clone()) {
            assert_eq!(coordinator::decode_group_key(coordinator::encode_group_key(&group)), Some(group));
        }
        if let Some((snapshot, ts)) = coordinator::decode_group_value(b.clone()) {
            let once = coordinator::encode_group_value(&snapshot, ts);
            let (snapshot2, ts2) = coordinator::decode_group_value(once.clone()).expect("an encoded group decodes");
            assert_eq!(ts2, ts);
            let twice = coordinator::encode_group_value(&snapshot2, ts2);
            assert_eq!(twice, once, "group metadata encoding is stable");
            assert_eq!(snapshot2.members, snapshot.members);
        }
        let topics = coordinator::subscribed_topics(&b);
        assert!(topics.len() <= data.len() / 2);
    });
    assert_bounded("group records", data.len(), largest, 16, 1024);
}

/// Files the server reads back from its data directory: a partition's `sealed-epoch`
/// (`replica::read_sealed`) and `lost-data` (`replica::read_lost_data`), a single
/// node's topic file (`topics::TopicRegistry::load`, TOML) and its producer id block
/// (`producer_ids::ProducerIdAllocator::open`). Input: `[kind, file contents...]`.
///
/// A sealed epoch read back is the one written again; a topic loaded from its file has
/// as many assignments as partitions, a valid count; a producer id allocator hands out
/// ids past the recorded block.
pub fn server_files(data: &[u8]) {
    let Some((&kind, content)) = data.split_first() else { return };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path();
    match kind % 4 {
        0 => {
            std::fs::write(path.join(dlog_server::replica::SEALED_FILE), content).expect("written");
            if let Ok(epoch) = dlog_server::replica::read_sealed(path) {
                dlog_server::replica::persist_sealed(path, epoch).expect("a seal is written");
                assert_eq!(dlog_server::replica::read_sealed(path), Ok(epoch));
            }
        }
        1 => {
            std::fs::write(path.join(dlog_server::replica::LOST_DATA_FILE), content).expect("written");
            assert_eq!(dlog_server::replica::read_lost_data(path), content != b"0", "anything but 0 fails closed");
        }
        2 => load_topic_file(path, content),
        _ => {
            std::fs::write(path.join("producer-id-block"), content).expect("written");
            let Ok(mut ids) = dlog_server::producer_ids::ProducerIdAllocator::open(path) else { return };
            let recorded: i64 = std::str::from_utf8(content).expect("a block end is text").trim().parse().expect("i64");
            if let Ok(id) = ids.allocate() {
                assert!(id >= recorded, "id {id} below the recorded block end {recorded}");
            }
        }
    }
}

fn load_topic_file(data_dir: &Path, content: &[u8]) {
    let topics = data_dir.join("meta").join("topics");
    std::fs::create_dir_all(&topics).expect("created");
    std::fs::write(topics.join("t.toml"), content).expect("written");
    let loaded = dlog_server::topics::TopicRegistry::load(data_dir, NodeId(1), TopicConfig::default());
    let Ok(registry) = loaded else { return };
    for t in registry.list() {
        assert_eq!(t.assignments.len() as i64, i64::from(t.partitions), "topic {}", t.name);
        assert!(
            (1..=dlog_core::limits::PARTITIONS_MAX).contains(&t.partitions),
            "a topic of {} partitions loaded",
            t.partitions
        );
    }
}
