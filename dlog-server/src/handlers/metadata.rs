//! Metadata: brokers, the controller, and every requested topic's partitions with their
//! leader, replicas and in-sync replicas. Unknown topics are auto-created when both the
//! broker (`auto.create.topics.enable`) and the request allow it.

use std::collections::BTreeSet;
use std::rc::Rc;

use dlog_core::NodeId;

use dlog_protocol::acl::{authorized_operations, ResourceType};
use dlog_protocol::errors::{error_code, ResponseError};
use dlog_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use dlog_protocol::kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{topic_admin, wire, wire_topic, wire_uuid};
use crate::shard::Shard;
use crate::topics::{validate_topic_name, TopicMeta};

pub async fn handle(shard: &Rc<Shard>, request: MetadataRequest, version: i16) -> MetadataResponse {
    let config = &shard.shared.config;
    let node = BrokerId(config.node_id.0);
    // Before v4 there is no flag and requests may always auto-create.
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
    let topic_operations = authorized_operations(ResourceType::Topic, request.include_topic_authorized_operations);
    let cluster_operations =
        authorized_operations(ResourceType::Cluster, request.include_cluster_authorized_operations);
    let names: Vec<String> = match request.topics {
        // v0 uses an empty list for "all topics"; v1+ uses null.
        None => all_topics(shard),
        Some(ref t) if t.is_empty() && version == 0 => all_topics(shard),
        Some(topics) => {
            let mut names = Vec::with_capacity(topics.len());
            for t in topics {
                match (t.name, super::topic_name_of(shard, t.topic_id)) {
                    (Some(n), _) => names.push(n.0.to_string()),
                    (None, Some(n)) => names.push(n.to_string()),
                    (None, None) => {}
                }
            }
            names
        }
    };
    let live = live_brokers(shard);
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        let result = match validate_topic_name(&name) {
            Ok(()) => topic_admin::get_or_auto_create(shard, &name, allow_auto_create).await,
            Err(e) => Err(e),
        };
        topics.push(match result {
            Ok(meta) => describe(&meta, &live).with_topic_authorized_operations(topic_operations),
            Err(e) => MetadataResponseTopic::default()
                .with_error_code(error_code(&e))
                .with_name(Some(wire_topic(&name)))
                .with_topic_authorized_operations(topic_operations),
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
        .with_cluster_authorized_operations(cluster_operations)
}

/// Every topic this node knows, by name.
pub fn all_topics(shard: &Shard) -> Vec<String> {
    shard.shared.topics.read().expect("topic registry lock").list().map(|t| t.name.to_string()).collect()
}

/// The brokers this node counts as live: the registered ones in a cluster, itself alone.
pub fn live_brokers(shard: &Shard) -> BTreeSet<NodeId> {
    match &shard.shared.cluster {
        Some(c) => c.brokers().iter().map(|b| b.id).collect(),
        None => [shard.shared.config.node_id].into(),
    }
}

/// One partition as Metadata and DescribeTopicPartitions show it.
pub struct PartitionView {
    pub index: i32,
    pub leader: Option<BrokerId>,
    pub leader_epoch: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// The replicas on brokers that are not live.
    pub offline: Vec<BrokerId>,
}

/// A topic's partitions as its assignments say. The in-sync replicas (ISR) are those
/// the leader counts in its write quorum, as it reported them to the controller (until
/// its first report, the leader alone); replicas of brokers not live are offline.
pub fn partition_views<'a>(
    meta: &'a TopicMeta,
    live: &'a BTreeSet<NodeId>,
) -> impl Iterator<Item = PartitionView> + 'a {
    meta.assignments.iter().enumerate().map(move |(p, a)| {
        let replicas: Vec<BrokerId> = a.replicas.iter().map(|r| BrokerId(r.0)).collect();
        PartitionView {
            index: p as i32,
            leader: a.leader.map(|l| BrokerId(l.0)),
            leader_epoch: a.leader_epoch.0,
            isr: a.shown_isr(live).into_iter().map(|r| BrokerId(r.0)).collect(),
            offline: replicas.iter().copied().filter(|r| !live.contains(&NodeId(r.0))).collect(),
            replicas,
        }
    })
}

/// True for the topics Kafka calls internal.
pub fn is_internal(topic: &str) -> bool {
    topic == crate::groups::OFFSETS_TOPIC
}

/// A topic as Metadata shows it; an offline partition (no leader) answers
/// LEADER_NOT_AVAILABLE with leader -1 and every replica offline.
fn describe(meta: &TopicMeta, live: &BTreeSet<NodeId>) -> MetadataResponseTopic {
    let partitions = partition_views(meta, live)
        .map(|v| {
            let partition = MetadataResponsePartition::default()
                .with_partition_index(v.index)
                .with_leader_epoch(v.leader_epoch)
                .with_replica_nodes(v.replicas.clone());
            match v.leader {
                Some(l) => partition.with_leader_id(l).with_isr_nodes(v.isr).with_offline_replicas(v.offline),
                None => partition
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_offline_replicas(v.replicas),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(wire_topic(&meta.name)))
        .with_topic_id(wire_uuid(meta.id))
        .with_is_internal(is_internal(&meta.name))
        .with_partitions(partitions)
}
