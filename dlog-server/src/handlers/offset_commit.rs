//! OffsetCommit: a member of the current generation (or anyone, with generation -1, for
//! a group without members) stores offsets. Each request is one append to the group's
//! `__consumer_offsets` partition, answered once durable per that topic's flush policy.

use std::rc::Rc;

use dlog_core::{Error, Result};
use dlog_protocol::errors::{error_code, result_code};
use dlog_protocol::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use dlog_protocol::kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::groups::{self, coordinator::Committed};
use crate::shard::Shard;

/// Whether `topic` has partition `partition`: Kafka commits nothing for the others and
/// answers each of them UNKNOWN_TOPIC_OR_PARTITION.
pub(super) fn partition_exists(shard: &Shard, topic: &str, partition: i32) -> bool {
    shard.shared.topic(topic).is_some_and(|m| (0..m.partitions).contains(&partition))
}

pub async fn handle(shard: &Rc<Shard>, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let now = crate::now_ms();
    // Asked once: the answer names the same partitions unknown as were left out.
    let known: Vec<Vec<bool>> = request
        .topics
        .iter()
        .map(|t| t.partitions.iter().map(|p| partition_exists(shard, &t.name.0, p.partition_index)).collect())
        .collect();
    let entries: Vec<(String, i32, Option<Committed>)> = request
        .topics
        .iter()
        .zip(&known)
        .flat_map(|(t, known)| {
            t.partitions.iter().zip(known).filter(|(_, &k)| k).map(|(p, _)| {
                let c = Committed {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                    commit_timestamp: now,
                };
                (t.name.0.to_string(), p.partition_index, Some(c))
            })
        })
        .collect();
    // Nothing to commit (every partition unknown): answered without asking the group.
    let result: Result<()> = if entries.is_empty() {
        Ok(())
    } else {
        let (g, member) = (group.clone(), request.member_id.to_string());
        let instance = request.group_instance_id.as_ref().map(|i| i.to_string());
        let generation = request.generation_id_or_member_epoch;
        groups::on_coordinator(shard, &group, move |s| async move {
            let max = s.coordinator.config.offset_metadata_max_bytes;
            if let Some((t, p, _)) = entries.iter().find(|(_, _, c)| c.as_ref().is_some_and(|c| c.metadata.len() > max))
            {
                let e = format!("the metadata of {t}-{p} is longer than offset.metadata.max.bytes ({max})");
                return Err(dlog_core::Error::OffsetMetadataTooLarge(e));
            }
            s.coordinator.with_group(&g, |grp| grp.check_commit(&member, instance.as_deref(), generation))?;
            s.coordinator.write(&s, &g, entries).await
        })
        .await
    };
    if let Err(e) = &result {
        tracing::debug!(group, error = %e, "OffsetCommit refused");
    }
    let code = result_code(&result);
    let unknown = error_code(&Error::UnknownTopicOrPartition(String::new()));
    let topics = request
        .topics
        .iter()
        .zip(&known)
        .map(|(t, known)| {
            OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(
                t.partitions
                    .iter()
                    .zip(known)
                    .map(|(p, &known)| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(if known { code } else { unknown })
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
