//! DeleteRecords: move a partition's log start offset forward (-1: to the high
//! watermark); whole segments below it are deleted.

use std::rc::Rc;

use dlog_core::{Error, Offset, TopicPartition};
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use dlog_protocol::kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let name: std::sync::Arc<str> = t.name.0.to_string().into();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let tp = TopicPartition::new(name.clone(), p.partition_index);
            let offset = p.offset;
            let result = shard
                .with_partition(tp, move |part| {
                    let mut part = part.borrow_mut();
                    let hw = part.high_watermark();
                    let target = if offset == -1 { hw } else { Offset(offset) };
                    if target.0 < 0 || target > hw {
                        return Err(Error::OffsetOutOfRange {
                            offset,
                            start: part.log.log_start_offset().0,
                            end: hw.0,
                        });
                    }
                    Ok(part.log.delete_records_before(target)?)
                })
                .await;
            partitions.push(match result {
                Ok(low) => DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(low.0),
                Err(e) => DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(-1)
                    .with_error_code(error_code(&e)),
            });
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions));
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
