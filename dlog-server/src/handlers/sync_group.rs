//! SyncGroup: the leader hands in the assignments; every member gets its own. A
//! follower's answer waits for the leader's sync, so it is a `Reply::Later`.

use std::rc::Rc;

use dlog_core::Error;
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::{ResponseKind, SyncGroupRequest, SyncGroupResponse};

use super::{wire, Reply};
use crate::groups::{self, state::Sync};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: SyncGroupRequest, version: i16) -> Reply {
    let group = request.group_id.0.to_string();
    let sync = Sync {
        token: 0,
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
        generation: request.generation_id,
        protocol_type: request.protocol_type.as_ref().map(|p| p.to_string()),
        protocol_name: request.protocol_name.as_ref().map(|p| p.to_string()),
        assignments: request.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect(),
    };
    let g = group.clone();
    let rx = groups::on_coordinator(shard, &group, move |s| async move { Ok(s.coordinator.sync(&g, sync)) }).await;
    Reply::Later(Box::pin(async move {
        let result = match rx {
            Ok(rx) => rx.await.unwrap_or(Err(Error::ShuttingDown)),
            Err(e) => Err(e),
        };
        let response = match result {
            Ok(r) => {
                let response = SyncGroupResponse::default().with_assignment(r.assignment);
                if version >= 5 {
                    response
                        .with_protocol_type(r.protocol_type.as_deref().map(wire))
                        .with_protocol_name(r.protocol_name.as_deref().map(wire))
                } else {
                    response
                }
            }
            Err(e) => {
                tracing::debug!(group, error = %e, "SyncGroup refused");
                SyncGroupResponse::default().with_error_code(error_code(&e))
            }
        };
        ResponseKind::SyncGroup(response)
    }))
}
