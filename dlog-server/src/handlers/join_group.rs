//! JoinGroup: enter (or re-enter) a group's rebalance on its coordinator shard. The
//! answer usually waits for the other members (see `groups::state`), so it is a
//! `Reply::Later`. v4+ first joins get MEMBER_ID_REQUIRED with their new id (KIP-394).

use std::rc::Rc;

use dlog_core::Error;
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use dlog_protocol::kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, ResponseKind};

use super::{wire, Reply};
use crate::groups::{self, state::Join};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    request: JoinGroupRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> Reply {
    let group = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let join = Join {
        token: 0,
        member_id: member_id.clone(),
        instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id,
        client_host,
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout stands in, as in Kafka.
        rebalance_timeout_ms: if version >= 1 { request.rebalance_timeout_ms } else { request.session_timeout_ms },
        protocol_type: request.protocol_type.to_string(),
        protocols: request.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member_id: version >= 4,
    };
    let g = group.clone();
    let rx = groups::on_coordinator(shard, &group, move |s| async move { Ok(s.coordinator.join(&g, join)) }).await;
    Reply::Later(Box::pin(async move {
        let result = match rx {
            Ok(rx) => rx.await.unwrap_or_else(|_| Err((Error::ShuttingDown, member_id.clone()))),
            Err(e) => Err((e, member_id.clone())),
        };
        let response = match result {
            Ok(r) => {
                let members = r
                    .members
                    .into_iter()
                    .map(|m| {
                        let jm = JoinGroupResponseMember::default()
                            .with_member_id(wire(&m.member_id))
                            .with_metadata(m.metadata);
                        if version >= 5 {
                            jm.with_group_instance_id(m.instance_id.as_deref().map(wire))
                        } else {
                            jm
                        }
                    })
                    .collect();
                JoinGroupResponse::default()
                    .with_generation_id(r.generation)
                    .with_protocol_type(r.protocol_type.as_deref().map(wire))
                    .with_protocol_name(Some(wire(r.protocol_name.as_deref().unwrap_or(""))))
                    .with_leader(wire(&r.leader))
                    .with_skip_assignment(version >= 9 && r.skip_assignment)
                    .with_member_id(wire(&r.member_id))
                    .with_members(members)
            }
            Err((e, id)) => {
                if !matches!(e, Error::MemberIdRequired) {
                    tracing::debug!(group, error = %e, "JoinGroup refused");
                }
                JoinGroupResponse::default()
                    .with_error_code(error_code(&e))
                    .with_generation_id(-1)
                    .with_protocol_name(if version >= 7 { None } else { Some(wire("")) })
                    .with_leader(wire(""))
                    .with_member_id(wire(&id))
            }
        };
        ResponseKind::JoinGroup(response)
    }))
}
