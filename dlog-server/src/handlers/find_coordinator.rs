//! FindCoordinator: a group's coordinator is the leader of its `__consumer_offsets`
//! partition (the topic is created on first use); on a single node, this node.
//! v4+ looks up a batch of keys.
//! Transaction coordinators (key type 1) do not exist: COORDINATOR_NOT_AVAILABLE with
//! the reason.

use std::rc::Rc;

use dlog_core::{Error, Result};
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::find_coordinator_response::Coordinator;
use dlog_protocol::kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::wire;
use crate::cluster::BrokerInfo;
use crate::groups;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let keys: Vec<String> = if version >= 4 {
        request.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![request.key.to_string()]
    };
    let config = &shard.shared.config;
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let c = Coordinator::default().with_key(wire(&key));
        coordinators.push(match find(shard, request.key_type, &key).await {
            Ok(None) => c
                .with_node_id(BrokerId(config.node_id.0))
                .with_host(wire(&config.advertise_host))
                .with_port(config.advertise_port as i32),
            Ok(Some(b)) => c.with_node_id(BrokerId(b.id.0)).with_host(wire(&b.host)).with_port(b.port as i32),
            Err(e) => c
                .with_node_id(BrokerId(-1))
                .with_host(wire(""))
                .with_port(-1)
                .with_error_code(error_code(&e))
                .with_error_message(Some(wire(&e.to_string()))),
        });
    }
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.pop().unwrap_or_default();
    let response = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if version >= 1 {
        response.with_error_message(c.error_message)
    } else {
        response
    }
}

/// The coordinator of `key`: `None` for this node, else the live broker that leads the
/// group's `__consumer_offsets` partition.
async fn find(shard: &Rc<Shard>, key_type: i8, key: &str) -> Result<Option<BrokerInfo>> {
    match key_type {
        0 if key.is_empty() => Err(Error::InvalidGroupId("the group id is empty".into())),
        0 => {
            groups::ensure_offsets_topic(shard).await?;
            let Some(cluster) = &shard.shared.cluster else { return Ok(None) };
            let leader = groups::coordinator_of(shard, key)?;
            cluster.broker(leader).map(Some).ok_or_else(|| {
                Error::CoordinatorNotAvailable(format!("the coordinator of {key:?}, broker {leader}, is not live"))
            })
        }
        1 => Err(Error::CoordinatorNotAvailable(format!(
            "transactions are not supported, so there is no transaction coordinator for {key:?}"
        ))),
        other => Err(Error::InvalidRequest(format!("unknown coordinator key type {other}"))),
    }
}
