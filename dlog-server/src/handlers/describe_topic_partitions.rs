//! DescribeTopicPartitions (KIP-966): topics and their partitions as Metadata describes
//! them, in name order and paged by a partition limit with a cursor, as Kafka 4.1 answers.
//!
//! With no topics named, every topic (internal ones too) from the cursor's on; with
//! names, those of them at or after the cursor's topic, and an unknown or invalid name
//! answers its error without using up the limit. The limit is the request's, between 1
//! and [`MAX_PARTITIONS`]. Where it runs out inside a topic the next cursor names the
//! next partition; where it runs out at a topic's end, the next topic from partition 0.

use std::rc::Rc;

use dlog_protocol::acl::{authorized_operations, ResourceType};
use dlog_protocol::errors::{error_code, ResponseError};
use dlog_protocol::kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use dlog_protocol::kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
};

use super::metadata::{all_topics, is_internal, live_brokers, partition_views};
use super::{topic_admin, wire_topic, wire_uuid};
use crate::shard::Shard;
use crate::topics::validate_topic_name;

/// The most partitions one answer holds: Kafka's `max.request.partition.size.limit`
/// default.
pub const MAX_PARTITIONS: i32 = 2000;

pub async fn handle(shard: &Rc<Shard>, request: DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let all = request.topics.is_empty();
    let cursor = request.cursor.as_ref().map(|c| (c.topic_name.0.to_string(), c.partition_index));
    let from = cursor.as_ref().map_or("", |(t, _)| t.as_str()).to_string();
    let mut names: Vec<String> =
        if all { all_topics(shard) } else { request.topics.iter().map(|t| t.name.0.to_string()).collect() };
    names.retain(|n| *n >= from);
    names.sort_unstable();
    names.dedup();
    let bad_cursor = match &cursor {
        Some((_, p)) if *p < 0 => true,
        Some((t, _)) => !all && !names.contains(t),
        None => false,
    };
    if bad_cursor {
        // As Kafka: every named topic answers INVALID_REQUEST.
        let topics = request
            .topics
            .iter()
            .map(|t| {
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_name(Some(t.name.clone()))
            })
            .collect();
        return DescribeTopicPartitionsResponse::default().with_topics(topics);
    }
    let operations = authorized_operations(ResourceType::Topic, true);
    let live = live_brokers(shard);
    let mut remaining = request.response_partition_limit.clamp(1, MAX_PARTITIONS) as usize;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if remaining == 0 {
            next_cursor = Some(Cursor::default().with_topic_name(wire_topic(&name)).with_partition_index(0));
            break;
        }
        let found = match validate_topic_name(&name) {
            Ok(()) => topic_admin::get_or_auto_create(shard, &name, false).await,
            Err(e) => Err(e),
        };
        let meta = match found {
            Ok(meta) => meta,
            // Listing every topic, one deleted meanwhile is left out.
            Err(_) if all => continue,
            Err(e) => {
                topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(error_code(&e))
                        .with_name(Some(wire_topic(&name)))
                        .with_is_internal(is_internal(&name))
                        .with_topic_authorized_operations(operations),
                );
                continue;
            }
        };
        let start = match &cursor {
            Some((t, p)) if *t == name => *p as usize,
            _ => 0,
        };
        let count = meta.assignments.len();
        let end = count.min(start.saturating_add(remaining));
        let partitions: Vec<_> = partition_views(&meta, &live)
            .skip(start)
            .take(end.saturating_sub(start))
            .map(|v| {
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(v.index)
                    .with_leader_id(v.leader.unwrap_or(BrokerId(-1)))
                    .with_leader_epoch(v.leader_epoch)
                    .with_replica_nodes(v.replicas)
                    .with_isr_nodes(v.isr)
                    // DLog has no eligible leader replicas (KIP-966's ELR): empty, as
                    // Kafka answers with ELR off.
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(v.offline)
            })
            .collect();
        remaining -= partitions.len();
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(wire_topic(&meta.name)))
                .with_topic_id(wire_uuid(meta.id))
                .with_is_internal(is_internal(&meta.name))
                .with_partitions(partitions)
                .with_topic_authorized_operations(operations),
        );
        if end < count {
            next_cursor = Some(Cursor::default().with_topic_name(wire_topic(&name)).with_partition_index(end as i32));
            break;
        }
    }
    DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next_cursor)
}
