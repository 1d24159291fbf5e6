//! OffsetForLeaderEpoch (KIP-101, KIP-320): the end offset of a leader epoch, which
//! clients use to detect log truncation. A single node has one epoch per partition, so
//! the answer is the log end offset for that epoch and "undefined" for any other.

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
                    let epoch = part.leader_epoch.0;
                    // One epoch per partition: any other epoch is undefined (-1, -1).
                    Ok(if wanted == epoch { (epoch, part.log.log_end_offset().0) } else { (-1, -1) })
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
