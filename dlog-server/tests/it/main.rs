//! Integration tests of a whole broker, started in-process on an ephemeral port and
//! driven over real sockets with the CLI's Kafka client.

mod admin;
mod cluster;
mod groups;
mod idempotence;
mod produce_fetch;
mod robustness;

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use dlog_protocol::kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use dlog_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use dlog_protocol::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use dlog_protocol::kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, FetchRequest, ProduceRequest, ProduceResponse, TopicName,
};
use dlog_protocol::kafka_protocol::protocol::StrBytes;
use dlog_protocol::records::{encode_batch, new_record, Compression, Record};
use dlog_server::broker::Broker;
use dlog_server::cli::client::Client;
use dlog_server::config::{BrokerArgs, BrokerConfig};

pub struct TestBroker {
    pub broker: Option<Broker>,
    pub addr: String,
    pub dir: tempfile::TempDir,
    tune: fn(&mut BrokerConfig),
}

impl TestBroker {
    pub fn start() -> TestBroker {
        TestBroker::start_with(|_| {})
    }

    /// Starts with settings changed by `tune` (kept across restarts).
    pub fn start_with(tune: fn(&mut BrokerConfig)) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TestBroker { broker: None, addr: String::new(), dir, tune };
        t.restart();
        t
    }

    /// (Re)starts on the same data directory, on a new port.
    pub fn restart(&mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown();
        }
        self.broker = Some(start_on(self.dir.path(), self.tune));
        self.addr = self.broker.as_ref().unwrap().local_addr.to_string();
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.addr).unwrap()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown();
        }
    }
}

fn start_on(dir: &Path, tune: fn(&mut BrokerConfig)) -> Broker {
    let args = BrokerArgs {
        data_dir: Some(dir.to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        shards: Some(2),
        ..Default::default()
    };
    let mut config = BrokerConfig::resolve(&args).unwrap();
    tune(&mut config);
    Broker::start(config).unwrap()
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub fn create_topic(client: &mut Client, name: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
    let request = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(-1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        )]);
    client.call_any(ApiKey::CreateTopics, request).unwrap().topics[0].error_code
}

pub fn record(key: &str, value: &str, timestamp: i64) -> Record {
    new_record(Some(Bytes::from(key.to_string())), Some(Bytes::from(value.to_string())), timestamp)
}

pub fn batch(records: &mut [Record], compression: Compression) -> Bytes {
    encode_batch(records, compression).unwrap()
}

pub fn produce(client: &mut Client, topic: &str, partition: i32, records: Bytes) -> ProduceResponse {
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
        TopicProduceData::default().with_name(topic_name(topic)).with_partition_data(vec![
            PartitionProduceData::default().with_index(partition).with_records(Some(records)),
        ]),
    ]);
    client.call_any(ApiKey::Produce, request).unwrap()
}

/// Fetches from one partition: (error code, high watermark, records bytes).
pub fn fetch(client: &mut Client, topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> (i16, i64, Bytes) {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(50 * 1024 * 1024)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default().with_topic(topic_name(topic)).with_partitions(vec![
            FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(10 * 1024 * 1024),
        ])]);
    let resp = client.call_any(ApiKey::Fetch, request).unwrap();
    let p = &resp.responses[0].partitions[0];
    (p.error_code, p.high_watermark, p.records.clone().unwrap_or_default())
}

/// Decodes records as (offset, key, value).
pub fn decode(bytes: &Bytes) -> Vec<(i64, String, String)> {
    dlog_protocol::records::decode_records(bytes)
        .unwrap()
        .into_iter()
        .filter(|r| !r.control)
        .map(|r| {
            let s = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).to_string()).unwrap_or_default();
            (r.offset, s(r.key), s(r.value))
        })
        .collect()
}

#[allow(dead_code)]
pub fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
