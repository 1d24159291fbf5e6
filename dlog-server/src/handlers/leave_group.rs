//! LeaveGroup: members leave at once instead of waiting out their sessions. v3+ leaves
//! a batch of members, static ones by `group.instance.id`.

use std::rc::Rc;

use dlog_protocol::errors::{error_code, result_code};
use dlog_protocol::kafka_protocol::messages::leave_group_response::MemberResponse;
use dlog_protocol::kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::wire;
use crate::groups;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group = request.group_id.0.to_string();
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|i| i.to_string())))
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let g = group.clone();
    let asked = leaving.clone();
    let results =
        groups::on_coordinator(shard, &group, move |s| async move { Ok(s.coordinator.leave(&g, &asked)) }).await;
    let results = match results {
        Ok(r) => r,
        Err(e) => return LeaveGroupResponse::default().with_error_code(error_code(&e)),
    };
    if version < 3 {
        return LeaveGroupResponse::default().with_error_code(result_code(&results[0]));
    }
    let members = leaving
        .iter()
        .zip(&results)
        .map(|((m, i), r)| {
            MemberResponse::default()
                .with_member_id(wire(m))
                .with_group_instance_id(i.as_deref().map(wire))
                .with_error_code(result_code(r))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}
