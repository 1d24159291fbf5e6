//! Control batches DLog writes itself: records that mark an event in a partition log
//! rather than carry data. Consumers never see them (the control attribute tells
//! clients to skip them), but they occupy offsets like any record.
//!
//! A new leader opens its epoch with a LeaderChange batch, as KRaft does: until a
//! record of the new epoch is in the log, the leader-epoch cache of every replica
//! lacks the epoch, and the leader cannot tell which earlier records a quorum holds
//! (Raft's rule that a leader commits only entries of its own term).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::leader_change_message::Voter;
use kafka_protocol::messages::{BrokerId, LeaderChangeMessage};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

/// Version of the control record key (Kafka's `ControlRecordType` key schema).
const CONTROL_KEY_VERSION: i16 = 0;
/// Control record type of a LeaderChange record (0 abort, 1 commit, 2 leader change).
pub const CONTROL_TYPE_LEADER_CHANGE: i16 = 2;
/// The LeaderChangeMessage version written, as KRaft writes it.
const LEADER_CHANGE_VERSION: i16 = 0;

/// The key of a control record of type `control_type`: i16 version, i16 type.
pub fn control_record_key(control_type: i16) -> Bytes {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key.extend_from_slice(&control_type.to_be_bytes());
    Bytes::from(key)
}

/// One RecordBatch v2 holding one LeaderChange control record: `leader_id` elected
/// among `voters`, at `timestamp_ms`. Base offset and leader epoch are 0: the log
/// assigns the offset and stamps the epoch, neither covered by the CRC. No producer
/// id, no compression.
///
/// `grantingVoters` is left empty: DLog's leaders are chosen by the metadata quorum,
/// not by votes of the partition's replicas, so no replica granted anything.
pub fn leader_change_batch(leader_id: i32, voters: &[i32], timestamp_ms: i64) -> Bytes {
    let message = LeaderChangeMessage::default()
        .with_version(LEADER_CHANGE_VERSION)
        .with_leader_id(BrokerId(leader_id))
        .with_voters(voters.iter().map(|&v| Voter::default().with_voter_id(v)).collect());
    let mut value = BytesMut::new();
    message.encode(&mut value, LEADER_CHANGE_VERSION).expect("a LeaderChangeMessage v0 always encodes");
    let record = Record {
        transactional: false,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: timestamp_ms,
        key: Some(control_record_key(CONTROL_TYPE_LEADER_CHANGE)),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, [&record], &options).expect("one uncompressed record always encodes");
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Decodable;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn a_leader_change_batch_is_one_control_record_storage_accepts() {
        let bytes = leader_change_batch(7, &[7, 8, 9], 1_234);

        let header = dlog_storage::batch::check_batch(&bytes).expect("storage accepts the batch");
        assert!(header.is_control() && !header.is_transactional());
        assert_eq!((header.base_offset.0, header.partition_leader_epoch), (0, 0));
        assert_eq!((header.record_count, header.producer_id, header.base_sequence), (1, -1, -1));
        assert_eq!(header.compression_codec(), 0);
        assert_eq!((header.base_timestamp, header.max_timestamp), (1_234, 1_234));

        let mut buf = bytes.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf).unwrap();
        assert_eq!(sets.len(), 1);
        let records = &sets[0].records;
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert!(r.control);
        assert_eq!(r.key.as_deref(), Some(&[0u8, 0, 0, 2][..]));
        let mut value = r.value.clone().expect("a value");
        let message = LeaderChangeMessage::decode(&mut value, 0).unwrap();
        assert_eq!(message.version, 0);
        assert_eq!(message.leader_id, BrokerId(7));
        assert_eq!(message.voters.iter().map(|v| v.voter_id).collect::<Vec<_>>(), [7, 8, 9]);
        assert!(message.granting_voters.is_empty());
    }
}
