//! OffsetFetch: a group's committed offsets, for the partitions asked or (v2+, topics
//! null) all of them; v8+ asks for several groups at once. Partitions without a commit
//! get offset -1. `require_stable` needs nothing: without transactions no commit is
//! ever pending.

use std::collections::BTreeMap;
use std::rc::Rc;

use dlog_core::Result;
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use dlog_protocol::kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{wire, wire_topic};
use crate::groups::{self, coordinator::Committed};
use crate::shard::Shard;

/// (topic, partitions) asked for; `None`: every committed one.
type Asked = Option<Vec<(TopicName, Vec<i32>)>>;
/// Per topic: (partition, committed).
type Found = Vec<(TopicName, Vec<(i32, Option<Committed>)>)>;

pub async fn handle(shard: &Rc<Shard>, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let mut out = Vec::with_capacity(request.groups.len());
        for g in request.groups {
            let asked: Asked = g.topics.map(|ts| ts.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
            let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            out.push(match fetch(shard, &g.group_id, asked).await {
                Ok(found) => group.with_topics(
                    found
                        .into_iter()
                        .map(|(name, ps)| {
                            OffsetFetchResponseTopics::default().with_name(name).with_partitions(
                                ps.into_iter()
                                    .map(|(i, c)| {
                                        let c = c.unwrap_or(Committed {
                                            offset: -1,
                                            leader_epoch: -1,
                                            metadata: String::new(),
                                            commit_timestamp: -1,
                                        });
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(i)
                                            .with_committed_offset(c.offset)
                                            .with_committed_leader_epoch(c.leader_epoch)
                                            .with_metadata(Some(wire(&c.metadata)))
                                    })
                                    .collect(),
                            )
                        })
                        .collect(),
                ),
                Err(e) => group.with_error_code(error_code(&e)),
            });
        }
        return OffsetFetchResponse::default().with_groups(out);
    }
    let asked: Asked = request.topics.map(|ts| ts.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
    let partition = |i: i32, c: Option<Committed>, code: i16| {
        let c = c.unwrap_or(Committed { offset: -1, leader_epoch: -1, metadata: String::new(), commit_timestamp: -1 });
        let p = OffsetFetchResponsePartition::default()
            .with_partition_index(i)
            .with_committed_offset(c.offset)
            .with_metadata(Some(wire(&c.metadata)))
            .with_error_code(code);
        if version >= 5 {
            p.with_committed_leader_epoch(c.leader_epoch)
        } else {
            p
        }
    };
    match fetch(shard, &request.group_id, asked.clone()).await {
        Ok(found) => OffsetFetchResponse::default().with_topics(
            found
                .into_iter()
                .map(|(name, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(name)
                        .with_partitions(ps.into_iter().map(|(i, c)| partition(i, c, 0)).collect())
                })
                .collect(),
        ),
        Err(e) if version >= 2 => OffsetFetchResponse::default().with_error_code(error_code(&e)),
        Err(e) => OffsetFetchResponse::default().with_topics(
            asked
                .unwrap_or_default()
                .into_iter()
                .map(|(name, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(name)
                        .with_partitions(ps.into_iter().map(|i| partition(i, None, error_code(&e))).collect())
                })
                .collect(),
        ),
    }
}

async fn fetch(shard: &Rc<Shard>, group: &GroupId, asked: Asked) -> Result<Found> {
    let g = group.0.to_string();
    let offsets: BTreeMap<(String, i32), Committed> =
        groups::on_coordinator(shard, &g.clone(), move |s| async move { Ok(s.coordinator.offsets_of(&g)) }).await?;
    Ok(match asked {
        Some(topics) => topics
            .into_iter()
            .map(|(name, ps)| {
                let found = ps.into_iter().map(|i| (i, offsets.get(&(name.0.to_string(), i)).cloned())).collect();
                (name, found)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<(i32, Option<Committed>)>> = BTreeMap::new();
            for ((t, i), c) in offsets {
                by_topic.entry(t).or_default().push((i, Some(c)));
            }
            by_topic.into_iter().map(|(t, ps)| (wire_topic(&t), ps)).collect()
        }
    })
}
