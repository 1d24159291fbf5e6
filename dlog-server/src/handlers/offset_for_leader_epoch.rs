//! OffsetForLeaderEpoch (KIP-101, KIP-320): the end offset of a leader epoch, which
//! clients use to detect log truncation: the largest epoch of the leader's log at or
//! below the one asked about, and where it ends; "undefined" (-1, -1) below every
//! epoch the log has.
//!
//! As in Kafka, the end is not capped at the high watermark: a new leader's high
//! watermark starts at what it last heard as a follower and reaches the end of the
//! previous epoch only once its own first batch is committed, and a capped answer
//! would be below a position a consumer reached on the old leader, a truncation that
//! did not happen. For the same reason a leader still recovering its epoch (catching
//! up from the most advanced replicas) does not answer: LEADER_NOT_AVAILABLE, which
//! clients retry.

use std::rc::Rc;

use dlog_core::{Error, LeaderEpoch, Result, TopicPartition};
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use dlog_protocol::kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::partition::{Partition, Role};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let name: std::sync::Arc<str> = t.topic.0.to_string().into();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let tp = TopicPartition::new(name.clone(), p.partition);
            let (current, wanted) = (p.current_leader_epoch, p.leader_epoch);
            let result = shard.with_partition(tp, move |part| epoch_end(&part.borrow(), current, wanted)).await;
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

/// The answer of a partition this node leads: (epoch, end offset) for `wanted`, asked
/// by a client that knows the partition at leader epoch `current`.
fn epoch_end(part: &Partition, current: i32, wanted: i32) -> Result<(i32, i64)> {
    part.check_epoch(current)?;
    if let Role::Recovering(epoch) = part.role {
        return Err(Error::LeaderNotAvailable(format!(
            "{}: leader epoch {epoch} is opening; its log may lack records of earlier epochs",
            part.tp
        )));
    }
    Ok(match part.log.epoch_end(LeaderEpoch(wanted)) {
        Some((e, end)) => (e.0, end.0),
        // A log without epochs (empty, or written before epochs were recorded) has the
        // one epoch it is led at.
        None if wanted == part.leader_epoch.0 && part.log.latest_epoch().is_none() => {
            (wanted, part.log.log_end_offset().0)
        }
        None => (-1, -1),
    })
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use dlog_core::{Offset, TopicId};
    use dlog_storage::log::PartitionLog;

    use super::*;

    #[test]
    fn answers_the_uncapped_epoch_end_and_nothing_while_recovering() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), Default::default(), 0).unwrap();
        let (mut p, _hw) = Partition::new(TopicPartition::new("t", 0), TopicId::NONE, log);
        // offsets 0-2 in epoch 0, 3 in epoch 1
        for epoch in [0, 0, 0, 1] {
            let mut batch = BytesMut::from(&dlog_protocol::control::leader_change_batch(1, &[1, 2, 3], 0)[..]);
            p.log.append(&mut batch, LeaderEpoch(epoch), 0).unwrap();
        }
        p.role = Role::Idle;
        p.leader_epoch = LeaderEpoch(1);
        // a new leader's high watermark, as it last heard it as a follower
        p.set_high_watermark(Offset(1));
        assert_eq!(epoch_end(&p, 1, 0).unwrap(), (0, 3), "where epoch 1 starts, not the high watermark");
        assert_eq!(epoch_end(&p, 1, 1).unwrap(), (1, 4));
        assert_eq!(epoch_end(&p, -1, 0).unwrap(), (0, 3), "no current epoch: not checked");
        assert!(matches!(epoch_end(&p, 0, 0), Err(Error::FencedLeaderEpoch { client: 0, current: 1 })));
        assert!(matches!(epoch_end(&p, 2, 0), Err(Error::UnknownLeaderEpoch { client: 2, current: 1 })));
        // still copying what the last epoch's replicas hold: no answer from this log
        p.role = Role::Recovering(LeaderEpoch(1));
        assert!(matches!(epoch_end(&p, 1, 0), Err(Error::LeaderNotAvailable(_))));
        assert!(matches!(epoch_end(&p, 0, 0), Err(Error::FencedLeaderEpoch { .. })));
    }
}
