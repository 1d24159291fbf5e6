//! Record-level helpers for the few places that build or read whole records: the group
//! coordinator's offsets log and the CLI's own producer and consumer. Produce and Fetch
//! never decode records (validation walks them: `dlog_storage::records`).

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

    /// What kafka-protocol encodes (as Kafka's clients do, every codec) DLog's record
    /// walk reads back: offsets and timestamps, and the header's count.
    #[test]
    fn the_storage_walk_reads_what_the_codec_writes_in_every_compression() {
        use dlog_storage::records::{check_records, walk_records, RecordLimits};
        for compression in
            [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        {
            let mut records: Vec<_> = (0..5).map(|i| record(i, 1000 + 10 * i)).collect();
            let batch = encode_batch(&mut records, compression).unwrap();
            assert_eq!(batch.len(), dlog_protocol_batch_len(&batch), "one batch");
            let header = dlog_storage::batch::check_batch(&batch).unwrap();
            let limits = RecordLimits::for_max_message_bytes(1024 * 1024).with_timestamp_window(1040, 40, 0);
            assert_eq!(check_records(&batch, &header, &limits), Ok(()), "{compression:?}");
            let tight = RecordLimits::for_max_message_bytes(1024 * 1024).with_timestamp_window(1040, 39, 0);
            assert!(check_records(&batch, &header, &tight).is_err(), "{compression:?}: 1000 is before 1040 - 39");
            let mut seen = Vec::new();
            walk_records(&batch, &header, 1 << 20, |r| {
                seen.push((i64::from(r.offset_delta), r.timestamp));
                Ok(())
            })
            .unwrap();
            assert_eq!(seen, (0..5).map(|i| (i, 1000 + 10 * i)).collect::<Vec<_>>(), "{compression:?}");
        }
    }
}
