//! Produce: validate each partition's batch by header and CRC, walk its records as
//! Kafka's LogValidator does (count, offset deltas, timestamps; compressed ones inflated
//! with a bound), append them on the owning shard, and answer per `acks`: 0 never, 1 once
//! appended, -1 once the high watermark passes the batch (on a single node, the log end)
//! — and, for topics that fsync every write, only once the batches are durable.

use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use dlog_core::config::TimestampType;
use dlog_core::{Error, Result, TopicPartition};
use dlog_protocol::errors::{error_code, ResponseError};
use dlog_protocol::kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use dlog_protocol::kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use dlog_storage::batch::{validate_batches, BatchError};
use dlog_storage::compression::recompress;
use dlog_storage::records::{check_records, RecordLimits};

use super::{topic_admin, wire, Reply};
use crate::partition::{DurableReceiver, Partition, Role};
use crate::shard::Shard;

struct Appended {
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
    durable: Option<DurableReceiver>,
}

pub async fn handle(shard: &Rc<Shard>, request: ProduceRequest, version: i16) -> Reply {
    let acks = request.acks;
    if !matches!(acks, -1..=1) {
        let body = error_response(&request, ResponseError::InvalidRequiredAcks.code(), "acks must be -1, 0 or 1");
        return Reply::now(ResponseKind::Produce(body));
    }
    if request.transactional_id.is_some() {
        let e = Error::TransactionsNotSupported("produce with a transactional id".into());
        let body = error_response(&request, error_code(&e), &e.to_string());
        return Reply::now(ResponseKind::Produce(body));
    }
    let timeout = Duration::from_millis(request.timeout_ms.clamp(0, 300_000) as u64);
    let mut results = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        // v13+ names topics by id (KIP-516); an id no topic has answers UNKNOWN_TOPIC_ID.
        let name = super::requested_topic(shard, version >= 13, &topic.name, topic.topic_id);
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            let outcome = match &name {
                Some(name) => append_partition(shard, name, p.index, p.records, acks).await,
                None => Err(Error::UnknownTopicId(topic.topic_id.to_string())),
            };
            metrics::counter!("dlog_produce_partitions_total", "result" => if outcome.is_ok() { "ok" } else { "error" })
                .increment(1);
            partitions.push((p.index, outcome));
        }
        results.push((topic.name, topic.topic_id, partitions));
    }
    if acks == 0 {
        return Reply::Nothing;
    }
    Reply::Later(Box::pin(async move {
        let mut responses = Vec::with_capacity(results.len());
        for (name, topic_id, partitions) in results {
            let mut out = Vec::with_capacity(partitions.len());
            for (index, outcome) in partitions {
                let outcome = match outcome {
                    Ok(mut a) => match a.durable.take() {
                        None => Ok(a),
                        Some(rx) => match tokio::time::timeout(timeout, rx).await {
                            Ok(Ok(Ok(()))) => Ok(a),
                            Ok(Ok(Err(e))) => Err(e),
                            Ok(Err(_)) => Err(Error::ShuttingDown),
                            Err(_) => Err(Error::Timeout(
                                "the records were not committed (fsynced, or held by the write quorum) within the request timeout"
                                    .into(),
                            )),
                        },
                    },
                    Err(e) => Err(e),
                };
                out.push(partition_response(index, outcome));
            }
            responses.push(
                TopicProduceResponse::default().with_name(name).with_topic_id(topic_id).with_partition_responses(out),
            );
        }
        ResponseKind::Produce(ProduceResponse::default().with_responses(responses))
    }))
}

async fn append_partition(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    records: Option<bytes::Bytes>,
    acks: i16,
) -> Result<Appended> {
    let meta = topic_admin::get_or_auto_create(shard, topic, true).await?;
    if partition < 0 || partition >= meta.partitions {
        return Err(Error::UnknownTopicOrPartition(format!("{topic}-{partition}")));
    }
    let records = records.filter(|r| !r.is_empty()).ok_or_else(|| Error::CorruptMessage("no record batches".into()))?;
    let batches = validate_batches(&records).map_err(|e| Error::CorruptMessage(e.to_string()))?;
    if batches.len() != 1 {
        // As Kafka: a v3+ produce carries exactly one batch per partition.
        return Err(Error::InvalidRecord(format!(
            "produce requests must carry exactly one record batch per partition, got {}",
            batches.len()
        )));
    }
    let max = meta.config.max_message_bytes as usize;
    let mut limits = RecordLimits::for_max_message_bytes(meta.config.max_message_bytes);
    if meta.config.timestamp_type == TimestampType::CreateTime {
        let (before, after) = (meta.config.timestamp_before_max_ms, meta.config.timestamp_after_max_ms);
        limits = limits.with_timestamp_window(crate::now_ms(), before, after);
    }
    for (range, header) in &batches {
        if range.len() > max {
            return Err(Error::RecordTooLarge { size: range.len(), max });
        }
        // As Kafka's LogValidator: the records must be the ones the header counts, with
        // dense offset deltas (a header claiming 2^31 records would move the log end by
        // 2^31) and timestamps in the topic's window. Compressed records are inflated as
        // a stream, bounded by 64 x max.message.bytes.
        check_records(&records[range.clone()], header, &limits).map_err(|e| match e {
            BatchError::InvalidTimestamp(_) => Error::InvalidTimestamp(e.to_string()),
            BatchError::Undecodable(_) => Error::CorruptMessage(e.to_string()),
            _ => Error::InvalidRecord(e.to_string()),
        })?;
    }
    // compression.type names a codec: store the batch in it (the records' bytes are
    // the same in any codec, so only the compressed body and the header change).
    let records = match (meta.config.recompression(), batches.first()) {
        (Some(target), Some((range, header))) if header.compression_codec() != target.codec.id() => {
            let out = recompress(&records[range.clone()], header, target, limits.max_inflated_bytes)
                .map_err(|e| Error::CorruptMessage(e.to_string()))?;
            if out.len() > max {
                return Err(Error::RecordTooLarge { size: out.len(), max });
            }
            metrics::counter!("dlog_produce_recompressed_batches_total").increment(1);
            bytes::Bytes::from(out)
        }
        _ => records,
    };
    // Idempotent batches are checked by the log (epoch and sequence per producer id).
    if batches.iter().any(|(_, h)| h.is_transactional()) {
        return Err(Error::TransactionsNotSupported("transactional batches are refused".into()));
    }
    if batches.iter().any(|(_, h)| h.is_control()) {
        // As Kafka: control batches are written by the broker, never by clients.
        return Err(Error::InvalidRecord("clients may not write control batches".into()));
    }
    // The log rewrites base offsets and epochs in place: one copy out of the request frame.
    let mut bytes = BytesMut::from(&records[..]);
    let tp = TopicPartition::new(meta.name.clone(), partition);
    metrics::counter!("dlog_produce_bytes_total").increment(bytes.len() as u64);
    shard
        .with_partition(tp, move |p| {
            let replicated = !matches!(p.borrow().role, Role::Solo);
            if replicated && acks == -1 {
                crate::replica::check_write_quorum(&p.borrow())?;
            }
            let (info, mut durable) = Partition::append(p, &mut bytes, crate::now_ms())?;
            if replicated && acks == -1 {
                // acks=all completes at the high watermark, which counts only what
                // each replica holds as its write-caching setting asks.
                durable = Some(p.borrow_mut().wait_committed(info.last_offset.plus(1)));
            }
            Ok(Appended {
                base_offset: info.first_offset.0,
                log_append_time_ms: info.log_append_time_ms.unwrap_or(-1),
                log_start_offset: info.log_start_offset.0,
                durable,
            })
        })
        .await
}

fn partition_response(index: i32, outcome: Result<Appended>) -> PartitionProduceResponse {
    match outcome {
        Ok(a) => PartitionProduceResponse::default()
            .with_index(index)
            .with_base_offset(a.base_offset)
            .with_log_append_time_ms(a.log_append_time_ms)
            .with_log_start_offset(a.log_start_offset),
        Err(e) => PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(error_code(&e))
            .with_error_message(Some(wire(&e.to_string())))
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1),
    }
}

fn error_response(request: &ProduceRequest, code: i16, message: &str) -> ProduceResponse {
    let responses = request
        .topic_data
        .iter()
        .map(|t| {
            let partitions = t
                .partition_data
                .iter()
                .map(|p| {
                    PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_error_code(code)
                        .with_error_message(Some(wire(message)))
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1)
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}
