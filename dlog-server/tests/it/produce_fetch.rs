use std::time::{Duration, Instant};

use dlog_protocol::kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use dlog_protocol::kafka_protocol::messages::{ApiKey, BrokerId, ListOffsetsRequest, ProduceRequest};

use super::*;

fn list_offset(c: &mut dlog_server::cli::client::Client, topic: &str, spec: i64) -> (i16, i64, i64) {
    let request =
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(-1)
                .with_timestamp(spec)])]);
    let resp = c.call_any(ApiKey::ListOffsets, request).unwrap();
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

#[test]
fn list_offsets_answers_every_supported_version() {
    // v1-v3 have no leader epoch field: an answer that sets one cannot be encoded, and
    // kafkajs (ListOffsets v3) then waited forever for a group's start offsets.
    let t = TestBroker::start();
    let mut c = t.client();
    assert_eq!(create_topic(&mut c, "versions", 1, &[]), 0);
    let mut records: Vec<_> = (0..3).map(|j| record("k", &format!("v{j}"), 1000 + j)).collect();
    produce(&mut c, "versions", 0, batch(&mut records, Compression::None));
    for version in 1..=10 {
        for (spec, want) in [(-2, 0), (-1, 3)] {
            let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
                ListOffsetsTopic::default().with_name(topic_name("versions")).with_partitions(vec![
                    ListOffsetsPartition::default().with_partition_index(0).with_timestamp(spec),
                ]),
            ]);
            let r = c.call_version(request, version).unwrap_or_else(|e| panic!("ListOffsets v{version}: {e}"));
            let p = &r.topics[0].partitions[0];
            assert_eq!((p.error_code, p.offset), (0, want), "ListOffsets v{version} at {spec}");
        }
    }
}

#[test]
fn produced_batches_are_fetched_byte_exact_with_dense_offsets() {
    let t = TestBroker::start();
    let mut c = t.client();
    assert_eq!(create_topic(&mut c, "events", 1, &[]), 0);
    let mut next = 0i64;
    for (i, compression) in
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
            .into_iter()
            .enumerate()
    {
        let mut records: Vec<_> = (0..100).map(|j| record(&format!("k{j}"), &format!("v{i}-{j}"), 1000 + j)).collect();
        let r = produce(&mut c, "events", 0, batch(&mut records, compression));
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, next));
        next += 100;
    }
    let mut seen = Vec::new();
    let mut offset = 0;
    while offset < next {
        let (err, hw, bytes) = fetch(&mut c, "events", 0, offset, 0);
        assert_eq!((err, hw), (0, next));
        let recs = decode(&bytes);
        assert!(!recs.is_empty());
        offset = recs.last().unwrap().0 + 1;
        seen.extend(recs);
    }
    assert_eq!(seen.len(), 500);
    for (i, (offset, key, value)) in seen.iter().enumerate() {
        assert_eq!(*offset, i as i64, "offsets are dense from 0");
        assert_eq!(key, &format!("k{}", i % 100));
        assert_eq!(value, &format!("v{}-{}", i / 100, i % 100));
    }
    assert_eq!(list_offset(&mut c, "events", -2), (0, 0, -1));
    assert_eq!(list_offset(&mut c, "events", -1), (0, 500, -1));
    assert_eq!(list_offset(&mut c, "events", 1050), (0, 50, 1050), "first record at or after the time");
    assert_eq!(list_offset(&mut c, "events", 5000).1, -1, "nothing that late");
    assert_eq!(list_offset(&mut c, "events", -3).2, 1099, "max timestamp");
}

#[test]
fn fetch_at_the_end_waits_for_new_data() {
    let t = TestBroker::start();
    let mut c = t.client();
    assert_eq!(create_topic(&mut c, "tail", 1, &[]), 0);
    let addr = t.addr.clone();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut c = dlog_server::cli::client::Client::connect(&addr).unwrap();
        let mut records = vec![record("k", "late", 1)];
        produce(&mut c, "tail", 0, batch(&mut records, Compression::None));
    });
    let started = Instant::now();
    let (err, hw, bytes) = fetch(&mut c, "tail", 0, 0, 10_000);
    producer.join().unwrap();
    assert_eq!((err, hw), (0, 1));
    assert_eq!(decode(&bytes)[0].2, "late");
    assert!(started.elapsed() < Duration::from_secs(5), "woken by the append, not the timeout");
    // With nothing to wait for, max_wait bounds the wait.
    let started = Instant::now();
    let (err, _, bytes) = fetch(&mut c, "tail", 0, 1, 200);
    assert_eq!(err, 0);
    assert!(bytes.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[test]
fn bad_produce_requests_get_kafka_errors() {
    let t = TestBroker::start();
    let mut c = t.client();
    assert_eq!(create_topic(&mut c, "strict", 1, &[("max.message.bytes", "2000")]), 0);
    let mut records = vec![record("k", "v", 1)];
    let good = batch(&mut records, Compression::None);
    let mut corrupt = good.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let r = produce(&mut c, "strict", 0, corrupt.into());
    assert_eq!(r.responses[0].partition_responses[0].error_code, 2, "CORRUPT_MESSAGE");
    let mut big = vec![record("k", &"x".repeat(5000), 1)];
    let r = produce(&mut c, "strict", 0, batch(&mut big, Compression::None));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 10, "MESSAGE_TOO_LARGE");
    let r = produce(&mut c, "strict", 7, good.clone());
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let mut two = good.to_vec();
    two.extend_from_slice(&good);
    let r = produce(&mut c, "strict", 0, two.into());
    assert_eq!(r.responses[0].partition_responses[0].error_code, 87, "INVALID_RECORD: one batch per partition");
    // One record under a header claiming 2,000,000,000 (its last offset delta agreeing,
    // CRC valid): refused, or the log end would move by 2^31.
    let mut claimed = good.to_vec();
    claimed[23..27].copy_from_slice(&1_999_999_999i32.to_be_bytes());
    claimed[57..61].copy_from_slice(&2_000_000_000i32.to_be_bytes());
    let crc = dlog_storage::batch::compute_crc(&claimed);
    claimed[17..21].copy_from_slice(&crc.to_be_bytes());
    let r = produce(&mut c, "strict", 0, claimed.into());
    assert_eq!(r.responses[0].partition_responses[0].error_code, 87, "INVALID_RECORD: the records are not 2e9");
    // The same lie inside every codec's compressed records, and a record two hours
    // ahead of the broker's clock (message.timestamp.after.max.ms is one hour).
    for compression in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let mut three: Vec<_> = (0..3).map(|j| record("k", &format!("v{j}"), 1)).collect();
        let mut lie = batch(&mut three, compression).to_vec();
        lie[23..27].copy_from_slice(&1_999_999_999i32.to_be_bytes());
        lie[57..61].copy_from_slice(&2_000_000_000i32.to_be_bytes());
        let crc = dlog_storage::batch::compute_crc(&lie);
        lie[17..21].copy_from_slice(&crc.to_be_bytes());
        let r = produce(&mut c, "strict", 0, lie.into());
        assert_eq!(r.responses[0].partition_responses[0].error_code, 87, "{compression:?}: INVALID_RECORD");
    }
    let future = dlog_server::now_ms() + 2 * 3_600_000;
    let mut late = vec![record("k", "v", future)];
    let r = produce(&mut c, "strict", 0, batch(&mut late, Compression::Zstd));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 32, "INVALID_TIMESTAMP");
    // Nothing was appended by the failures.
    let r = produce(&mut c, "strict", 0, good);
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 0);
    let (err, _, _) = fetch(&mut c, "strict", 0, 99, 0);
    assert_eq!(err, 1, "OFFSET_OUT_OF_RANGE");
}

/// Produce v13 names topics by id (KIP-516), as Fetch v13+ does; an id no topic has
/// answers UNKNOWN_TOPIC_ID and appends nothing, and the answer names the topic by id.
#[test]
fn produce_v13_names_topics_by_id() {
    use dlog_protocol::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let t = TestBroker::start();
    let mut c = t.client();
    assert_eq!(create_topic(&mut c, "by-id", 1, &[]), 0);
    let id = c.metadata(Some(&["by-id"]), false).unwrap().topics[0].topic_id;
    assert!(!id.is_nil());
    let by_id = |topic_id: uuid::Uuid, value: &str| {
        let mut records = vec![record("k", value, 1)];
        ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
            TopicProduceData::default().with_topic_id(topic_id).with_partition_data(vec![
                PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&mut records, Compression::None))),
            ]),
        ])
    };
    let r = c.call_version(by_id(id, "first"), 13).unwrap();
    assert_eq!(r.responses[0].topic_id, id);
    assert_eq!(
        (r.responses[0].partition_responses[0].error_code, r.responses[0].partition_responses[0].base_offset),
        (0, 0)
    );
    let r = c.call_version(by_id(uuid::Uuid::from_u128(7), "lost"), 13).unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, 100, "UNKNOWN_TOPIC_ID");
    let mut records = vec![record("k", "second", 1)];
    let r = produce(&mut c, "by-id", 0, batch(&mut records, Compression::None));
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 1, "by name, the same log");
    let (_, _, bytes) = fetch(&mut c, "by-id", 0, 0, 0);
    let values: Vec<String> = decode(&bytes).into_iter().map(|(_, _, v)| v).collect();
    assert_eq!(values, ["first", "second"]);
}

#[test]
fn produce_auto_creates_topics() {
    let t = TestBroker::start();
    let mut c = t.client();
    let mut records = vec![record("k", "v", 1)];
    let r = produce(&mut c, "fresh", 0, batch(&mut records, Compression::None));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let md = c.metadata(Some(&["fresh"]), false).unwrap();
    assert_eq!((md.topics[0].error_code, md.topics[0].partitions.len()), (0, 1));
    let md = c.metadata(Some(&["by-metadata"]), true).unwrap();
    assert_eq!(md.topics[0].error_code, 0);
}

#[test]
fn flush_every_write_topics_survive_a_restart_and_delete_records_moves_the_start() {
    let mut t = TestBroker::start();
    let mut c = t.client();
    assert_eq!(create_topic(&mut c, "durable", 1, &[("flush.messages", "1")]), 0);
    for i in 0..20 {
        let mut records = vec![record("k", &format!("v{i}"), i)];
        let r = produce(&mut c, "durable", 0, batch(&mut records, Compression::None));
        assert_eq!(r.responses[0].partition_responses[0].base_offset, i);
    }
    let request = dlog_protocol::kafka_protocol::messages::DeleteRecordsRequest::default().with_topics(vec![
        dlog_protocol::kafka_protocol::messages::delete_records_request::DeleteRecordsTopic::default()
            .with_name(topic_name("durable"))
            .with_partitions(vec![
                dlog_protocol::kafka_protocol::messages::delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(5),
            ]),
    ]);
    let resp = c.call_any(ApiKey::DeleteRecords, request).unwrap();
    assert_eq!(resp.topics[0].partitions[0].low_watermark, 5);
    t.restart();
    let mut c = t.client();
    assert_eq!(list_offset(&mut c, "durable", -2).1, 5);
    assert_eq!(list_offset(&mut c, "durable", -1).1, 20);
    let (err, _, _) = fetch(&mut c, "durable", 0, 2, 0);
    assert_eq!(err, 1, "below the log start is OFFSET_OUT_OF_RANGE");
    let (_, _, bytes) = fetch(&mut c, "durable", 0, 5, 0);
    assert_eq!(decode(&bytes)[0], (5, "k".into(), "v5".into()));
}
