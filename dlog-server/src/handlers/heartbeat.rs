//! Heartbeat: keeps a member's session; REBALANCE_IN_PROGRESS asks it to rejoin.

use std::rc::Rc;

use dlog_protocol::errors::result_code;
use dlog_protocol::kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::groups;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: HeartbeatRequest) -> HeartbeatResponse {
    let group = request.group_id.0.to_string();
    let g = group.clone();
    let member = request.member_id.to_string();
    let instance = request.group_instance_id.as_ref().map(|i| i.to_string());
    let generation = request.generation_id;
    let result = groups::on_coordinator(shard, &group, move |s| async move {
        s.coordinator.heartbeat(&g, &member, instance.as_deref(), generation)
    })
    .await;
    HeartbeatResponse::default().with_error_code(result_code(&result))
}
