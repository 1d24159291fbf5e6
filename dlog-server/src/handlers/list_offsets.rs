//! ListOffsets: the earliest offset, the latest (high watermark), the first offset at or
//! after a timestamp, or the offset of the largest timestamp (KIP-734).
//!
//! Storage finds the batch; the exact record inside it is found here by walking that
//! one batch's records (bounded inflation, nothing decoded but offsets and timestamps).

use std::rc::Rc;

use dlog_core::{Error, Result, TopicPartition};
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use dlog_protocol::kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use dlog_storage::batch::BatchHeader;
use dlog_storage::records::{walk_records, RecordLimits};

use crate::shard::Shard;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub async fn handle(shard: &Rc<Shard>, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let name: std::sync::Arc<str> = t.name.0.to_string().into();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let tp = TopicPartition::new(name.clone(), p.partition_index);
            let spec = p.timestamp;
            let epoch = p.current_leader_epoch;
            let result = shard
                .with_partition(tp, move |part| {
                    let part = part.borrow();
                    part.check_epoch(epoch)?;
                    lookup(&part, spec)
                })
                .await;
            partitions.push(match result {
                Ok((offset, timestamp, leader_epoch)) => ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_offset(offset)
                    .with_timestamp(timestamp)
                    // the field exists from v4; older versions must keep its default
                    .with_leader_epoch(if version >= 4 { leader_epoch } else { -1 }),
                Err(e) => ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(error_code(&e))
                    .with_offset(-1)
                    .with_timestamp(-1)
                    .with_leader_epoch(-1),
            });
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// (offset, timestamp, leader epoch) for one lookup; offset -1 when nothing matches.
fn lookup(part: &crate::partition::Partition, spec: i64) -> Result<(i64, i64, i32)> {
    let epoch = part.leader_epoch.0;
    match spec {
        LATEST | LATEST_TIERED => Ok((part.high_watermark().0, -1, epoch)),
        EARLIEST | EARLIEST_LOCAL => Ok((part.log.log_start_offset().0, -1, epoch)),
        MAX_TIMESTAMP => match part.log.max_timestamp_batch()? {
            // The record holding the largest timestamp (the first one on ties).
            Some((_, batch)) => match pick_record(part, &batch, |best, _, ts| best.is_none_or(|(_, b)| ts > b))? {
                Some((offset, ts)) => Ok((offset, ts, epoch)),
                None => Ok((-1, -1, -1)),
            },
            None => Ok((-1, -1, -1)),
        },
        ts if ts >= 0 => {
            let start = part.log.log_start_offset().0;
            match part.log.find_batch_by_timestamp(ts)? {
                Some(batch) => {
                    // The first record at or after `ts`; records below the log start
                    // offset (DeleteRecords mid-batch) are gone.
                    let found =
                        pick_record(part, &batch, |best, offset, t| best.is_none() && offset >= start && t >= ts)?;
                    match found {
                        Some((offset, t)) => Ok((offset, t, epoch)),
                        // The batch's max timestamp matched a record below the start: the
                        // answer is the next record, i.e. the next batch's first.
                        None => Ok((-1, -1, -1)),
                    }
                }
                None => Ok((-1, -1, -1)),
            }
        }
        other => Err(Error::InvalidRequest(format!("unknown ListOffsets timestamp {other}"))),
    }
}

/// Walks the records of one stored batch (never a control batch's), keeping the
/// (offset, timestamp) of the record `better` prefers over the best so far. Inflation is
/// bounded as on produce.
fn pick_record(
    part: &crate::partition::Partition,
    batch: &bytes::Bytes,
    better: impl Fn(Option<(i64, i64)>, i64, i64) -> bool,
) -> Result<Option<(i64, i64)>> {
    let header = BatchHeader::parse(batch).map_err(|e| Error::Storage(format!("stored batch: {e}")))?;
    if header.is_control() {
        return Ok(None);
    }
    let bound = RecordLimits::for_max_message_bytes(part.log.config().max_message_bytes).max_inflated_bytes;
    let mut best = None;
    walk_records(batch, &header, bound, |r| {
        let offset = header.base_offset.0 + i64::from(r.offset_delta);
        if better(best, offset, r.timestamp) {
            best = Some((offset, r.timestamp));
        }
        Ok(())
    })
    .map_err(|e| Error::Storage(format!("cannot walk a stored batch: {e}")))?;
    Ok(best)
}
