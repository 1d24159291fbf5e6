use dlog_protocol::kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use dlog_protocol::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use dlog_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use dlog_protocol::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use dlog_protocol::kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
};
use dlog_protocol::kafka_protocol::protocol::StrBytes;

use super::*;

fn describe(client: &mut dlog_server::cli::client::Client, topic: &str) -> Vec<(String, String, i8)> {
    let request = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_string(topic.to_string()))
        .with_configuration_keys(None)]);
    let resp = client.call_any(ApiKey::DescribeConfigs, request).unwrap();
    assert_eq!(resp.results[0].error_code, 0);
    resp.results[0]
        .configs
        .iter()
        .map(|c| (c.name.to_string(), c.value.as_ref().unwrap().to_string(), c.config_source))
        .collect()
}

#[test]
fn topics_are_created_described_altered_grown_and_deleted() {
    let mut t = TestBroker::start();
    let mut c = t.client();
    assert_eq!(create_topic(&mut c, "orders", 3, &[("retention.ms", "60000")]), 0);
    assert_eq!(create_topic(&mut c, "orders", 3, &[]), 36, "TOPIC_ALREADY_EXISTS");
    assert_eq!(create_topic(&mut c, "bad/name", 1, &[]), 17, "INVALID_TOPIC_EXCEPTION");
    assert_eq!(create_topic(&mut c, "zero", 0, &[]), 37, "INVALID_PARTITIONS");
    assert_eq!(create_topic(&mut c, "cfg", 1, &[("no.such.config", "1")]), 40, "INVALID_CONFIG");

    let md = c.metadata(Some(&["orders"]), false).unwrap();
    assert_eq!(md.topics[0].partitions.len(), 3);
    let md = c.metadata(Some(&["missing"]), false).unwrap();
    assert_eq!(md.topics[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION without auto-create");

    let cfg = describe(&mut c, "orders");
    assert!(cfg.contains(&("retention.ms".into(), "60000".into(), 1)), "{cfg:?}");
    assert!(cfg.contains(&("segment.bytes".into(), "1073741824".into(), 5)), "{cfg:?}");

    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str("orders"))
        .with_configs(vec![
            AlterableConfig::default()
                .with_name(StrBytes::from_static_str("flush.messages"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str("1"))),
            AlterableConfig::default().with_name(StrBytes::from_static_str("retention.ms")).with_config_operation(1),
        ])]);
    assert_eq!(c.call_any(ApiKey::IncrementalAlterConfigs, request).unwrap().responses[0].error_code, 0);
    let cfg = describe(&mut c, "orders");
    assert!(cfg.contains(&("flush.messages".into(), "1".into(), 1)), "{cfg:?}");
    assert!(cfg.iter().any(|(k, _, s)| k == "retention.ms" && *s == 5), "{cfg:?}");

    let grow = |c: &mut dlog_server::cli::client::Client, n| {
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default().with_name(topic_name("orders")).with_count(n)]);
        c.call_any(ApiKey::CreatePartitions, request).unwrap().results[0].error_code
    };
    assert_eq!(grow(&mut c, 5), 0);
    assert_eq!(grow(&mut c, 2), 37, "shrinking is INVALID_PARTITIONS");
    let mut records = vec![record("k", "v", 1)];
    let r = produce(&mut c, "orders", 4, batch(&mut records, Compression::None));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);

    // Everything survives a restart.
    t.restart();
    let mut c = t.client();
    let md = c.metadata(Some(&["orders"]), false).unwrap();
    assert_eq!(md.topics[0].partitions.len(), 5);
    assert!(describe(&mut c, "orders").contains(&("flush.messages".into(), "1".into(), 1)));
    let (err, hw, _) = fetch(&mut c, "orders", 4, 0, 0);
    assert_eq!((err, hw), (0, 1));

    let request = DeleteTopicsRequest::default()
        .with_topics(vec![DeleteTopicState::default().with_name(Some(topic_name("orders")))]);
    assert_eq!(c.call_any(ApiKey::DeleteTopics, request).unwrap().responses[0].error_code, 0);
    let md = c.metadata(Some(&["orders"]), false).unwrap();
    assert_eq!(md.topics[0].error_code, 3);
    assert!(!t.dir.path().join("orders-0").exists(), "partition directories are removed");
}

#[test]
fn describe_cluster_names_this_broker() {
    let t = TestBroker::start();
    let mut c = t.client();
    let resp = c.call_any(ApiKey::DescribeCluster, DescribeClusterRequest::default()).unwrap();
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.brokers.len(), 1);
    assert_eq!(resp.brokers[0].port as u16, t.broker.as_ref().unwrap().local_addr.port());
    assert!(!resp.cluster_id.is_empty());
    assert_eq!(resp.cluster_authorized_operations, i32::MIN, "not asked: omitted");
}

/// KIP-430: asked for, the operations the caller may perform come back as Kafka's bit
/// field; with no authorizer that is every operation the resource type supports
/// (Kafka 4.1 without `authorizer.class.name` answers the same values).
#[test]
fn authorized_operations_are_answered_when_asked() {
    use dlog_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use dlog_protocol::kafka_protocol::messages::MetadataRequest;
    const CLUSTER: i32 = 0x1fa0; // create, alter, describe, cluster action, describe/alter configs, idempotent write
    const TOPIC: i32 = 0x0df8; // read, write, create, delete, alter, describe, describe/alter configs
    let t = TestBroker::start();
    let mut c = t.client();
    assert_eq!(create_topic(&mut c, "ops", 1, &[]), 0);
    let request = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    let resp = c.call_any(ApiKey::DescribeCluster, request).unwrap();
    assert_eq!(resp.cluster_authorized_operations, CLUSTER);
    for version in [8, 10, 12] {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name("ops"))),
                MetadataRequestTopic::default().with_name(Some(topic_name("absent"))),
            ]))
            .with_allow_auto_topic_creation(false)
            .with_include_cluster_authorized_operations(version <= 10)
            .with_include_topic_authorized_operations(true);
        let resp = c.call_version(request, version).unwrap();
        let ops: Vec<(i16, i32)> = resp.topics.iter().map(|t| (t.error_code, t.topic_authorized_operations)).collect();
        assert_eq!(ops, vec![(0, TOPIC), (3, TOPIC)], "Metadata v{version}");
        let cluster = if version <= 10 { CLUSTER } else { i32::MIN };
        assert_eq!(resp.cluster_authorized_operations, cluster, "Metadata v{version}");
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name("ops")))]));
        let resp = c.call_version(request, version).unwrap();
        assert_eq!(resp.topics[0].topic_authorized_operations, i32::MIN, "Metadata v{version}, not asked");
        assert_eq!(resp.cluster_authorized_operations, i32::MIN, "Metadata v{version}, not asked");
    }
}
