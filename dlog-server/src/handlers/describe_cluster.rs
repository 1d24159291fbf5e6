//! DescribeCluster: the cluster id, the controller and the brokers.

use std::rc::Rc;

use dlog_protocol::kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use dlog_protocol::kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::wire;
use crate::shard::Shard;

pub fn handle(shard: &Rc<Shard>, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let c = &shard.shared.config;
    let node = BrokerId(c.node_id.0);
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(wire(&shard.shared.cluster_id))
        .with_controller_id(node)
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(node)
            .with_host(wire(&c.advertise_host))
            .with_port(c.advertise_port as i32)])
        .with_cluster_authorized_operations(i32::MIN)
}
