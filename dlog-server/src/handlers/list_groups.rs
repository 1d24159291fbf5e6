//! ListGroups: every group coordinated on any shard (with members, a stored
//! generation or committed offsets), filtered by state (v4+) and type (v5+; all groups
//! here are "classic"). Each shard first replays the `__consumer_offsets` partitions
//! it owns that no request has touched since start, so a restarted broker lists every
//! group at once, as Kafka does.

use std::rc::Rc;

use dlog_core::{ShardId, TopicPartition};
use dlog_protocol::kafka_protocol::messages::list_groups_response::ListedGroup;
use dlog_protocol::kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::wire;
use crate::groups::{OFFSETS_PARTITIONS, OFFSETS_TOPIC};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let states: Vec<String> = request.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = request.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let mut groups = Vec::new();
    for i in 0..shard.shared.senders.len() {
        let listed = shard.run_on(ShardId(i), |s| async move {
            if s.shared.topic(OFFSETS_TOPIC).is_some() {
                for p in 0..OFFSETS_PARTITIONS {
                    let tp = TopicPartition::new(OFFSETS_TOPIC, p);
                    // only the partitions this node leads: their groups are coordinated here
                    let led = s.partition(&tp).is_some_and(|part| {
                        matches!(part.borrow().role, crate::partition::Role::Solo | crate::partition::Role::Leading(_))
                    });
                    if s.shared.owner(&tp) == s.id && led {
                        if let Err(e) = s.coordinator.ensure_loaded(&s, p) {
                            tracing::warn!(partition = %tp, error = %e, "could not load groups");
                        }
                    }
                }
            }
            s.coordinator.list()
        });
        let Ok(listed) = listed.await else {
            continue;
        };
        for (id, protocol_type, state) in listed {
            if !states.is_empty() && !states.contains(&state.to_lowercase()) {
                continue;
            }
            if !types.is_empty() && !types.iter().any(|t| t == "classic") {
                continue;
            }
            let g = ListedGroup::default().with_group_id(GroupId(wire(&id))).with_protocol_type(wire(&protocol_type));
            let g = if version >= 4 { g.with_group_state(wire(state)) } else { g };
            groups.push(if version >= 5 { g.with_group_type(wire("classic")) } else { g });
        }
    }
    ListGroupsResponse::default().with_groups(groups)
}
