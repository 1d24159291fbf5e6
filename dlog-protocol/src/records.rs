//! Record-level helpers for the few places that must look inside a batch: finding the
//! exact offset of a timestamp within the batch storage located (ListOffsets), and the
//! CLI's own producer and consumer. Produce and Fetch never decode records.

use bytes::{Bytes, BytesMut};
pub use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Decodes every record of the batches in `bytes` (control batches included; callers
/// filter on `Record::control`).
pub fn decode_records(bytes: &Bytes) -> Result<Vec<Record>, String> {
    let mut buf = bytes.clone();
    let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| e.to_string())?;
    Ok(sets.into_iter().flat_map(|s| s.records).collect())
}

/// The first record at or after `timestamp` in a batch: (offset, timestamp).
pub fn first_record_at_or_after(batch: &Bytes, timestamp: i64) -> Result<Option<(i64, i64)>, String> {
    Ok(decode_records(batch)?
        .into_iter()
        .filter(|r| !r.control)
        .find(|r| r.timestamp >= timestamp)
        .map(|r| (r.offset, r.timestamp)))
}

/// The record holding the largest timestamp in a batch (the first one on ties).
pub fn max_timestamp_record(batch: &Bytes) -> Result<Option<(i64, i64)>, String> {
    let mut best: Option<(i64, i64)> = None;
    for r in decode_records(batch)?.into_iter().filter(|r| !r.control) {
        if best.is_none_or(|(_, ts)| r.timestamp > ts) {
            best = Some((r.offset, r.timestamp));
        }
    }
    Ok(best)
}

/// A plain record (no producer id, no headers) for a producer to encode.
pub fn new_record(key: Option<Bytes>, value: Option<Bytes>, timestamp: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key,
        value,
        headers: Default::default(),
    }
}

/// Encodes records into one v2 batch with base offset 0, numbering them: offsets from
/// 0 and, for a producer without idempotence, sequences from the batch's base sequence
/// -1 (the codec starts a new batch wherever `offset - sequence` changes, and Kafka
/// accepts only one batch per partition in a produce request).
pub fn encode_batch(records: &mut [Record], compression: Compression) -> Result<Bytes, String> {
    for (i, r) in records.iter_mut().enumerate() {
        r.offset = i as i64;
        if r.producer_id < 0 {
            r.sequence = i as i32 - 1;
        }
    }
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, timestamp: i64) -> Record {
        new_record(Some(Bytes::from(format!("k{offset}"))), Some(Bytes::from_static(b"v")), timestamp)
    }

    /// The size of the first batch in `bytes`.
    fn dlog_protocol_batch_len(bytes: &Bytes) -> usize {
        12 + i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    }

    #[test]
    fn timestamps_are_found_inside_a_compressed_batch() {
        let records: Vec<_> = (0..5).map(|i| record(i, 1000 + 10 * i)).collect();
        let mut records = records;
        let batch = encode_batch(&mut records, Compression::Lz4).unwrap();
        assert_eq!(batch.len(), dlog_protocol_batch_len(&batch), "one batch");
        assert_eq!(first_record_at_or_after(&batch, 1015).unwrap(), Some((2, 1020)));
        assert_eq!(first_record_at_or_after(&batch, 5000).unwrap(), None);
        assert_eq!(max_timestamp_record(&batch).unwrap(), Some((4, 1040)));
    }
}
