//! DescribeGroups: state, protocol and members of each group on its coordinator. An
//! unknown group is described as "Dead", without error up to v5 and with
//! GROUP_ID_NOT_FOUND from v6 (KIP-1043), as Kafka does.

use std::rc::Rc;

use dlog_core::Error;
use dlog_protocol::acl::{authorized_operations, ResourceType};
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use dlog_protocol::kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::wire;
use crate::groups::{self, state::MemberView};
use crate::shard::Shard;

type Described = (&'static str, String, String, Vec<MemberView>);

pub async fn handle(shard: &Rc<Shard>, request: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let operations = authorized_operations(ResourceType::Group, request.include_authorized_operations);
    let mut out = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let id = group_id.0.to_string();
        let g = id.clone();
        let described = groups::on_coordinator(shard, &id, move |s| async move {
            let known = s.coordinator.has_group(&g);
            let d: Described = s
                .coordinator
                .existing_group(&g, |grp| {
                    (
                        grp.state().name(),
                        grp.protocol_type().unwrap_or_default().to_string(),
                        grp.protocol().unwrap_or_default().to_string(),
                        grp.describe(),
                    )
                })
                .filter(|_| known)
                .unwrap_or(("Dead", String::new(), String::new(), Vec::new()));
            if !known && version >= 6 {
                return Err(Error::GroupIdNotFound(format!("group {g:?} not found")));
            }
            // A group with committed offsets and no members is Empty.
            let d = if known && d.0 == "Dead" { ("Empty", "consumer".into(), String::new(), Vec::new()) } else { d };
            Ok(d)
        })
        .await;
        let g = DescribedGroup::default().with_group_id(group_id);
        out.push(match described {
            // As Kafka: the operations are answered for groups described without error.
            Ok((state, protocol_type, protocol, members)) => g
                .with_authorized_operations(operations)
                .with_group_state(wire(state))
                .with_protocol_type(wire(&protocol_type))
                .with_protocol_data(wire(&protocol))
                .with_members(
                    members
                        .into_iter()
                        .map(|m| {
                            let dm = DescribedGroupMember::default()
                                .with_member_id(wire(&m.member_id))
                                .with_client_id(wire(&m.client_id))
                                .with_client_host(wire(&m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment);
                            if version >= 4 {
                                dm.with_group_instance_id(m.instance_id.as_deref().map(wire))
                            } else {
                                dm
                            }
                        })
                        .collect(),
                ),
            Err(e) => {
                let g = g.with_error_code(error_code(&e)).with_group_state(wire("Dead"));
                if version >= 6 {
                    g.with_error_message(Some(wire(&e.to_string())))
                } else {
                    g
                }
            }
        });
    }
    DescribeGroupsResponse::default().with_groups(out)
}
