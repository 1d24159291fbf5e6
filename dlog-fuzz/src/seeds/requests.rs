//! Kafka request frames: every registered API at every registered version, with its
//! default body and, where one is written here, a richer one.

use dlog_protocol::kafka_protocol::messages::{self as km, ApiKey, RequestHeader, RequestKind};
use dlog_protocol::kafka_protocol::protocol::Encodable;
use dlog_protocol::registry::SUPPORTED_APIS;

use bytes::{Bytes, BytesMut};

use super::{record_batches, s, subscriptions};

fn topic(name: &str) -> km::TopicName {
    km::TopicName(s(name))
}

/// A frame (size prefix removed) of `key` v`version` with `body`, if it encodes there.
fn frame(key: ApiKey, version: i16, body: &RequestKind) -> Option<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(s("fuzz")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, key.request_header_version(version)).ok()?;
    body.encode(&mut buf, version).ok()?;
    Some(buf.to_vec())
}

/// Bodies with content for the APIs whose requests carry the most structure; each is
/// tried at every version of its API and kept where it encodes.
fn rich_bodies(key: ApiKey) -> Vec<RequestKind> {
    let records = Bytes::from(record_batches().swap_remove(0));
    match key {
        ApiKey::Produce => {
            let partition =
                km::produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records));
            let by_name = km::produce_request::TopicProduceData::default()
                .with_name(topic("t"))
                .with_partition_data(vec![partition.clone()]);
            let by_id = km::produce_request::TopicProduceData::default().with_partition_data(vec![partition]);
            [by_name, by_id]
                .into_iter()
                .map(|t| {
                    RequestKind::Produce(
                        km::ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![t]),
                    )
                })
                .collect()
        }
        ApiKey::Fetch => {
            let p = km::fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(5)
                .with_partition_max_bytes(1 << 20);
            let named =
                km::fetch_request::FetchTopic::default().with_topic(topic("t")).with_partitions(vec![p.clone()]);
            let by_id = km::fetch_request::FetchTopic::default().with_partitions(vec![p]);
            [named, by_id]
                .into_iter()
                .map(|t| {
                    RequestKind::Fetch(
                        km::FetchRequest::default()
                            .with_replica_id(km::BrokerId(-1))
                            .with_max_bytes(1 << 20)
                            .with_topics(vec![t]),
                    )
                })
                .collect()
        }
        ApiKey::Metadata => {
            let t = km::metadata_request::MetadataRequestTopic::default().with_name(Some(topic("t")));
            vec![
                RequestKind::Metadata(km::MetadataRequest::default().with_topics(Some(vec![t.clone(), t]))),
                RequestKind::Metadata(km::MetadataRequest::default().with_topics(None)),
            ]
        }
        ApiKey::CreateTopics => {
            let config = km::create_topics_request::CreatableTopicConfig::default()
                .with_name(s("retention.ms"))
                .with_value(Some(s("1000")));
            let assignment = km::create_topics_request::CreatableReplicaAssignment::default()
                .with_partition_index(0)
                .with_broker_ids(vec![km::BrokerId(1), km::BrokerId(2)]);
            let t = km::create_topics_request::CreatableTopic::default()
                .with_name(topic("t"))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(vec![assignment])
                .with_configs(vec![config]);
            vec![RequestKind::CreateTopics(
                km::CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(500),
            )]
        }
        ApiKey::ListOffsets => {
            let p =
                km::list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1);
            let t =
                km::list_offsets_request::ListOffsetsTopic::default().with_name(topic("t")).with_partitions(vec![p]);
            vec![RequestKind::ListOffsets(km::ListOffsetsRequest::default().with_topics(vec![t]))]
        }
        ApiKey::OffsetCommit => {
            let p = km::offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(42)
                .with_committed_metadata(Some(s("m")));
            let t = km::offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![p]);
            vec![RequestKind::OffsetCommit(
                km::OffsetCommitRequest::default()
                    .with_group_id(km::GroupId(s("g")))
                    .with_member_id(s("m1"))
                    .with_topics(vec![t]),
            )]
        }
        ApiKey::OffsetFetch => {
            let t = km::offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(topic("t"))
                .with_partition_indexes(vec![0, 1]);
            let ts = km::offset_fetch_request::OffsetFetchRequestTopics::default()
                .with_name(topic("t"))
                .with_partition_indexes(vec![0, 1]);
            let g = km::offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(km::GroupId(s("g")))
                .with_topics(Some(vec![ts]));
            vec![
                RequestKind::OffsetFetch(
                    km::OffsetFetchRequest::default().with_group_id(km::GroupId(s("g"))).with_topics(Some(vec![t])),
                ),
                RequestKind::OffsetFetch(km::OffsetFetchRequest::default().with_groups(vec![g])),
            ]
        }
        ApiKey::JoinGroup => {
            let protocol = km::join_group_request::JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from(subscriptions().swap_remove(0)));
            vec![RequestKind::JoinGroup(
                km::JoinGroupRequest::default()
                    .with_group_id(km::GroupId(s("g")))
                    .with_session_timeout_ms(10_000)
                    .with_rebalance_timeout_ms(10_000)
                    .with_protocol_type(s("consumer"))
                    .with_protocols(vec![protocol]),
            )]
        }
        ApiKey::SyncGroup => {
            let a = km::sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s("m1"))
                .with_assignment(Bytes::from_static(b"\0\x01\0\0\0\x01\0\x01t\0\0\0\x01\0\0\0\0\xff\xff\xff\xff"));
            vec![RequestKind::SyncGroup(
                km::SyncGroupRequest::default()
                    .with_group_id(km::GroupId(s("g")))
                    .with_generation_id(1)
                    .with_member_id(s("m1"))
                    .with_assignments(vec![a]),
            )]
        }
        ApiKey::DescribeConfigs => {
            let r = km::describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_configuration_keys(Some(vec![s("retention.ms")]));
            vec![RequestKind::DescribeConfigs(km::DescribeConfigsRequest::default().with_resources(vec![r]))]
        }
        ApiKey::OffsetForLeaderEpoch => {
            let p = km::offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_leader_epoch(3);
            let t = km::offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(topic("t"))
                .with_partitions(vec![p]);
            vec![RequestKind::OffsetForLeaderEpoch(km::OffsetForLeaderEpochRequest::default().with_topics(vec![t]))]
        }
        ApiKey::DeleteRecords => {
            let p =
                km::delete_records_request::DeleteRecordsPartition::default().with_partition_index(0).with_offset(3);
            let t = km::delete_records_request::DeleteRecordsTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![p]);
            vec![RequestKind::DeleteRecords(km::DeleteRecordsRequest::default().with_topics(vec![t]))]
        }
        ApiKey::DescribeTopicPartitions => {
            let cursor = km::describe_topic_partitions_request::Cursor::default()
                .with_topic_name(topic("t"))
                .with_partition_index(1);
            let t = km::describe_topic_partitions_request::TopicRequest::default().with_name(topic("t"));
            vec![RequestKind::DescribeTopicPartitions(
                km::DescribeTopicPartitionsRequest::default()
                    .with_topics(vec![t])
                    .with_response_partition_limit(1)
                    .with_cursor(Some(cursor)),
            )]
        }
        ApiKey::ListConfigResources => {
            vec![RequestKind::ListConfigResources(
                km::ListConfigResourcesRequest::default().with_resource_types(vec![2, 4]),
            )]
        }
        _ => Vec::new(),
    }
}

/// The request with every field at its default.
fn default_body(key: ApiKey) -> Option<RequestKind> {
    Some(match key {
        ApiKey::Produce => RequestKind::Produce(Default::default()),
        ApiKey::Fetch => RequestKind::Fetch(Default::default()),
        ApiKey::ListOffsets => RequestKind::ListOffsets(Default::default()),
        ApiKey::Metadata => RequestKind::Metadata(Default::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(Default::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(Default::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(Default::default()),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(Default::default()),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(Default::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(Default::default()),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(Default::default()),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(Default::default()),
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(Default::default()),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(Default::default()),
        ApiKey::AddRaftVoter => RequestKind::AddRaftVoter(Default::default()),
        ApiKey::RemoveRaftVoter => RequestKind::RemoveRaftVoter(Default::default()),
        ApiKey::ElectLeaders => RequestKind::ElectLeaders(Default::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(Default::default()),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(Default::default()),
        ApiKey::JoinGroup => RequestKind::JoinGroup(Default::default()),
        ApiKey::SyncGroup => RequestKind::SyncGroup(Default::default()),
        ApiKey::Heartbeat => RequestKind::Heartbeat(Default::default()),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(Default::default()),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(Default::default()),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(Default::default()),
        ApiKey::ListGroups => RequestKind::ListGroups(Default::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(Default::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(Default::default()),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(Default::default()),
        ApiKey::DescribeTopicPartitions => RequestKind::DescribeTopicPartitions(Default::default()),
        ApiKey::ListConfigResources => RequestKind::ListConfigResources(Default::default()),
        _ => return None,
    })
}

/// A frame of every registered API at every registered version (its default body),
/// and of the richer bodies wherever they encode.
pub fn requests() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for api in SUPPORTED_APIS {
        let bodies: Vec<RequestKind> = default_body(api.key).into_iter().chain(rich_bodies(api.key)).collect();
        for version in api.min_version..=api.max_version {
            out.extend(bodies.iter().filter_map(|b| frame(api.key, version, b)));
        }
    }
    out
}
