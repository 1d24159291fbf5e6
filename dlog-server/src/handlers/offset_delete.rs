//! OffsetDelete: removes a group's committed offsets for some partitions (tombstones in
//! `__consumer_offsets`), refused with GROUP_SUBSCRIBED_TO_TOPIC for topics a member
//! of the group subscribes to.

use std::collections::HashSet;
use std::rc::Rc;

use dlog_core::Error;
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use dlog_protocol::kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::groups::{self, coordinator::subscribed_topics};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let g = request.group_id.0.to_string();
    // As Kafka: a topic this node does not know is answered UNKNOWN_TOPIC_OR_PARTITION
    // and nothing of it is deleted; the group is asked about the rest.
    let known: Vec<bool> = request.topics.iter().map(|t| shard.shared.topic(&t.name.0).is_some()).collect();
    let asked: Vec<(String, i32)> = request
        .topics
        .iter()
        .zip(&known)
        .filter(|(_, &k)| k)
        .flat_map(|(t, _)| t.partitions.iter().map(|p| (t.name.0.to_string(), p.partition_index)))
        .collect();
    let outcome = groups::on_coordinator(shard, &g.clone(), move |s| async move {
        if !s.coordinator.has_group(&g) {
            return Err(Error::GroupIdNotFound(g));
        }
        let subscribed: HashSet<String> = s
            .coordinator
            .existing_group(&g, |grp| {
                if grp.protocol_type() == Some("consumer") {
                    grp.describe().iter().flat_map(|m| subscribed_topics(&m.metadata)).collect()
                } else {
                    HashSet::new()
                }
            })
            .unwrap_or_default();
        let deletable: Vec<(String, i32, Option<_>)> =
            asked.iter().filter(|(t, _)| !subscribed.contains(t)).map(|(t, p)| (t.clone(), *p, None)).collect();
        s.coordinator.write(&s, &g, deletable).await?;
        Ok(subscribed)
    })
    .await;
    let subscribed = match outcome {
        Ok(s) => s,
        Err(e) => return OffsetDeleteResponse::default().with_error_code(error_code(&e)),
    };
    let refused = error_code(&Error::GroupSubscribedToTopic(String::new()));
    let unknown = error_code(&Error::UnknownTopicOrPartition(String::new()));
    let topics = request
        .topics
        .into_iter()
        .zip(known)
        .map(|(t, known)| {
            let code = match (known, subscribed.contains(t.name.0.as_str())) {
                (false, _) => unknown,
                (true, true) => refused,
                (true, false) => 0,
            };
            OffsetDeleteResponseTopic::default().with_name(t.name).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
