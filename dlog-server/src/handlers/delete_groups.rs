//! DeleteGroups: a group without members loses its committed offsets (tombstones in
//! `__consumer_offsets`) and its state. NON_EMPTY_GROUP while members remain,
//! GROUP_ID_NOT_FOUND for a group never seen.

use std::rc::Rc;

use dlog_core::Error;
use dlog_protocol::errors::result_code;
use dlog_protocol::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use dlog_protocol::kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::groups;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        let g = group_id.0.to_string();
        let result = groups::on_coordinator(shard, &g.clone(), move |s| async move {
            if s.coordinator.existing_group(&g, |grp| !grp.is_empty()).unwrap_or(false) {
                return Err(Error::NonEmptyGroup(format!("group {g:?} still has members")));
            }
            if !s.coordinator.has_group(&g) && s.coordinator.existing_group(&g, |_| ()).is_none() {
                return Err(Error::GroupIdNotFound(g));
            }
            let tombstones = s.coordinator.offsets_of(&g).into_keys().map(|(t, p)| (t, p, None)).collect();
            s.coordinator.write(&s, &g, tombstones).await?;
            s.coordinator.forget_group(&s, &g)
        })
        .await;
        results.push(DeletableGroupResult::default().with_group_id(group_id).with_error_code(result_code(&result)));
    }
    DeleteGroupsResponse::default().with_results(results)
}
