//! Metadata: brokers, the controller, and every requested topic's partitions with their
//! leader, replicas and in-sync replicas. Unknown topics are auto-created when both the
//! broker (`auto.create.topics.enable`) and the request allow it.

use std::rc::Rc;

use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use dlog_protocol::kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{topic_admin, wire, wire_topic, wire_uuid};
use crate::shard::Shard;
use crate::topics::{validate_topic_name, TopicMeta};

/// "Authorized operations not requested", as Kafka encodes it.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub async fn handle(shard: &Rc<Shard>, request: MetadataRequest, version: i16) -> MetadataResponse {
    let config = &shard.shared.config;
    let node = BrokerId(config.node_id.0);
    // Before v4 there is no flag and requests may always auto-create.
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
    let names: Vec<String> = match request.topics {
        // v0 uses an empty list for "all topics"; v1+ uses null.
        None => all_topics(shard),
        Some(ref t) if t.is_empty() && version == 0 => all_topics(shard),
        Some(topics) => {
            let mut names = Vec::with_capacity(topics.len());
            for t in topics {
                match (
                    t.name,
                    shard
                        .shared
                        .topics
                        .read()
                        .expect("topic registry lock")
                        .name_of(dlog_core::TopicId(*t.topic_id.as_bytes())),
                ) {
                    (Some(n), _) => names.push(n.0.to_string()),
                    (None, Some(n)) => names.push(n.to_string()),
                    (None, None) => {}
                }
            }
            names
        }
    };
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        let result = match validate_topic_name(&name) {
            Ok(()) => topic_admin::get_or_auto_create(shard, &name, allow_auto_create).await,
            Err(e) => Err(e),
        };
        topics.push(match result {
            Ok(meta) => describe(&meta, node),
            Err(e) => MetadataResponseTopic::default()
                .with_error_code(error_code(&e))
                .with_name(Some(wire_topic(&name)))
                .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
        });
    }
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(node)
            .with_host(wire(&config.advertise_host))
            .with_port(config.advertise_port as i32)])
        .with_cluster_id(Some(wire(&shard.shared.cluster_id)))
        .with_controller_id(node)
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn all_topics(shard: &Rc<Shard>) -> Vec<String> {
    shard.shared.topics.read().expect("topic registry lock").list().map(|t| t.name.to_string()).collect()
}

fn describe(meta: &TopicMeta, node: BrokerId) -> MetadataResponseTopic {
    let partitions = (0..meta.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(wire_topic(&meta.name)))
        .with_topic_id(wire_uuid(meta.id))
        .with_is_internal(&*meta.name == crate::groups::OFFSETS_TOPIC)
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
