//! DescribeCluster: the cluster id, the controller and the brokers.

use std::rc::Rc;

use dlog_protocol::acl::{authorized_operations, ResourceType};
use dlog_protocol::kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use dlog_protocol::kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::wire;
use crate::shard::Shard;

/// In a cluster: the registered (live) brokers and the metadata leader as the active
/// controller, as this node last applied them (-1 while no leader is known).
pub fn handle(shard: &Rc<Shard>, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let c = &shard.shared.config;
    let node = BrokerId(c.node_id.0);
    let (controller, brokers) = match &shard.shared.cluster {
        None => (
            node,
            vec![DescribeClusterBroker::default()
                .with_broker_id(node)
                .with_host(wire(&c.advertise_host))
                .with_port(c.advertise_port as i32)],
        ),
        Some(cluster) => (
            BrokerId(cluster.controller().map_or(-1, |n| n.0)),
            cluster
                .brokers()
                .into_iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.id.0))
                        .with_host(wire(&b.host))
                        .with_port(b.port as i32)
                        .with_rack(b.rack.as_deref().map(wire))
                })
                .collect(),
        ),
    };
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(wire(&shard.shared.cluster_id))
        .with_controller_id(controller)
        .with_brokers(brokers)
        .with_cluster_authorized_operations(authorized_operations(
            ResourceType::Cluster,
            request.include_cluster_authorized_operations,
        ))
}
