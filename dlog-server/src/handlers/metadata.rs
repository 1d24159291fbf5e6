//! Metadata: brokers, the controller, and every requested topic's partitions with their
//! leader, replicas and in-sync replicas. Unknown topics are auto-created when both the
//! broker (`auto.create.topics.enable`) and the request allow it.

use std::rc::Rc;

use dlog_protocol::errors::{error_code, ResponseError};
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
    let live: std::collections::BTreeSet<dlog_core::NodeId> = match &shard.shared.cluster {
        Some(c) => c.brokers().iter().map(|b| b.id).collect(),
        None => [shard.shared.config.node_id].into(),
    };
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        let result = match validate_topic_name(&name) {
            Ok(()) => topic_admin::get_or_auto_create(shard, &name, allow_auto_create).await,
            Err(e) => Err(e),
        };
        topics.push(match result {
            Ok(meta) => describe(&meta, &live),
            Err(e) => MetadataResponseTopic::default()
                .with_error_code(error_code(&e))
                .with_name(Some(wire_topic(&name)))
                .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
        });
    }
    let (brokers, controller) = match &shard.shared.cluster {
        None => (
            vec![MetadataResponseBroker::default()
                .with_node_id(node)
                .with_host(wire(&config.advertise_host))
                .with_port(config.advertise_port as i32)],
            node,
        ),
        Some(cluster) => (
            {
                let mut brokers: Vec<MetadataResponseBroker> = cluster
                    .brokers()
                    .into_iter()
                    .map(|b| {
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(b.id.0))
                            .with_host(wire(&b.host))
                            .with_port(b.port as i32)
                            .with_rack(b.rack.as_deref().map(wire))
                    })
                    .collect();
                // The answering node is alive even while its registration is being
                // replaced: a client must never be told of a cluster without brokers.
                if !brokers.iter().any(|b| b.node_id == node) {
                    brokers.push(
                        MetadataResponseBroker::default()
                            .with_node_id(node)
                            .with_host(wire(&config.advertise_host))
                            .with_port(config.advertise_port as i32)
                            .with_rack(config.cluster.rack.as_deref().map(wire)),
                    );
                }
                brokers
            },
            // Clients send admin requests to the "controller" named here. Every node
            // forwards them to the real one, so name this node: it is alive (it is
            // answering), while the Raft leader may have just died with its
            // registration not yet expired, and a client that cached it would wait on
            // a dead node. (Kafka in KRaft mode names a random live broker likewise.)
            // DescribeCluster names the Raft leader.
            node,
        ),
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(wire(&shard.shared.cluster_id)))
        .with_controller_id(controller)
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn all_topics(shard: &Rc<Shard>) -> Vec<String> {
    shard.shared.topics.read().expect("topic registry lock").list().map(|t| t.name.to_string()).collect()
}

/// A topic's partitions as its assignments say; an offline partition (no leader)
/// answers LEADER_NOT_AVAILABLE with leader -1. The in-sync replicas (ISR) are those
/// the leader counts in its write quorum, as it reported them to the controller (until
/// its first report, the leader alone); replicas of brokers not live are offline.
fn describe(meta: &TopicMeta, live: &std::collections::BTreeSet<dlog_core::NodeId>) -> MetadataResponseTopic {
    let partitions = meta
        .assignments
        .iter()
        .enumerate()
        .map(|(p, a)| {
            let replicas: Vec<BrokerId> = a.replicas.iter().map(|r| BrokerId(r.0)).collect();
            let isr: Vec<BrokerId> = a.shown_isr(live).into_iter().map(|r| BrokerId(r.0)).collect();
            let offline: Vec<BrokerId> =
                replicas.iter().copied().filter(|r| !live.contains(&dlog_core::NodeId(r.0))).collect();
            let partition = MetadataResponsePartition::default()
                .with_partition_index(p as i32)
                .with_leader_epoch(a.leader_epoch.0)
                .with_replica_nodes(replicas.clone());
            match a.leader {
                Some(l) => partition.with_leader_id(BrokerId(l.0)).with_isr_nodes(isr).with_offline_replicas(offline),
                None => partition
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_offline_replicas(replicas),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(wire_topic(&meta.name)))
        .with_topic_id(wire_uuid(meta.id))
        .with_is_internal(&*meta.name == crate::groups::OFFSETS_TOPIC)
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
