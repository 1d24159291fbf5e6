//! CreatePartitions: grow a topic's partition count.

use std::rc::Rc;

use dlog_core::Error;
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use dlog_protocol::kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{topic_admin, wire};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let deadline = super::Deadline::from_timeout_ms(request.timeout_ms);
    let node = shard.shared.config.node_id.0;
    let mut results = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let name = t.name.0.to_string();
        // A single node can only place partitions on itself; a cluster's controller
        // checks the brokers named.
        let bad_assignment = shard.shared.cluster.is_none()
            && t.assignments
                .as_ref()
                .is_some_and(|a| a.iter().any(|x| x.broker_ids.is_empty() || x.broker_ids.iter().any(|b| b.0 != node)));
        let assignment = t
            .assignments
            .as_ref()
            .filter(|a| !a.is_empty())
            .map(|a| a.iter().map(|x| x.broker_ids.iter().map(|b| b.0).collect()).collect());
        let result = if bad_assignment {
            Err(Error::InvalidRequest(format!("assignments may name only broker {node}")))
        } else {
            topic_admin::grow(shard, &name, t.count, assignment, request.validate_only, deadline.left()).await
        };
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name);
        if let Err(e) = result {
            r = r.with_error_code(error_code(&e)).with_error_message(Some(wire(&e.to_string())));
        }
        results.push(r);
    }
    CreatePartitionsResponse::default().with_results(results)
}
