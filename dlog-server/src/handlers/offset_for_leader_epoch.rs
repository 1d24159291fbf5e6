//! OffsetForLeaderEpoch (KIP-101, KIP-320): the end offset of a leader epoch, which
//! clients use to detect log truncation: the largest epoch of the leader's log at or
//! below the one asked about, and where it ends (capped at the high watermark, as a
//! client never saw more); "undefined" (-1, -1) below every epoch the log has.

use std::rc::Rc;

use dlog_core::TopicPartition;
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use dlog_protocol::kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let name: std::sync::Arc<str> = t.topic.0.to_string().into();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let tp = TopicPartition::new(name.clone(), p.partition);
            let (current, wanted) = (p.current_leader_epoch, p.leader_epoch);
            let result = shard
                .with_partition(tp, move |part| {
                    let part = part.borrow();
                    part.check_epoch(current)?;
                    let hw = part.high_watermark();
                    Ok(match part.log.epoch_end(dlog_core::LeaderEpoch(wanted)) {
                        Some((e, end)) => (e.0, end.min(hw).0),
                        // A log without epochs (empty, or written before epochs were
                        // recorded) has the one epoch it is led at.
                        None if wanted == part.leader_epoch.0 && part.log.latest_epoch().is_none() => {
                            (wanted, part.log.log_end_offset().0)
                        }
                        None => (-1, -1),
                    })
                })
                .await;
            partitions.push(match result {
                Ok((epoch, end)) => {
                    EpochEndOffset::default().with_partition(p.partition).with_leader_epoch(epoch).with_end_offset(end)
                }
                Err(e) => EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_error_code(error_code(&e))
                    .with_leader_epoch(-1)
                    .with_end_offset(-1),
            });
        }
        topics.push(OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions));
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
