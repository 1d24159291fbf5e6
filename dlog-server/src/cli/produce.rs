//! `dlog produce TOPIC`: one record per line of standard input, keyed when
//! `--key-separator` is given, partitioned as Kafka's default partitioner does
//! (murmur2 of the key; unkeyed records round-robin per batch).

use std::collections::BTreeMap;
use std::io::BufRead;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use dlog_protocol::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use dlog_protocol::kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use dlog_protocol::kafka_protocol::protocol::StrBytes;
use dlog_protocol::records::{encode_batch, new_record, Compression, Record};

use super::client::{describe_error, Client};
use super::BootstrapArgs;

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    topic: String,
    /// Split each line at the first SEP into key and value.
    #[arg(long)]
    key_separator: Option<String>,
    /// Send every record to this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all", "-1"])]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    compression: String,
    /// Records per request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_records: u32,
    #[command(flatten)]
    bootstrap: BootstrapArgs,
}

/// Kafka's default partitioner for keyed records.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    let hash = murmur2::murmur2(key, murmur2::KAFKA_SEED);
    ((hash & 0x7fff_ffff) % partitions as u32) as i32
}

pub fn run(args: ProduceArgs) -> Result<()> {
    let mut client = Client::connect(&args.bootstrap.bootstrap)?;
    let compression = match args.compression.as_str() {
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => Compression::None,
    };
    let acks: i16 = match args.acks.as_str() {
        "0" => 0,
        "1" => 1,
        _ => -1,
    };
    let md = client.metadata(Some(&[&args.topic]), true)?;
    let t = md.topics.first().context("empty Metadata response")?;
    if t.error_code != 0 {
        bail!("topic {:?}: {}", args.topic, describe_error(t.error_code));
    }
    let leaders: BTreeMap<i32, i32> = t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
    let partitions = leaders.len() as i32;
    if partitions == 0 {
        bail!("topic {:?} has no partitions", args.topic);
    }
    if let Some(p) = args.partition {
        if !leaders.contains_key(&p) {
            bail!("--partition {p}: topic {:?} has partitions 0..{}", args.topic, partitions - 1);
        }
    }
    let stdin = std::io::stdin();
    let mut pending: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    let mut count = 0usize;
    let mut round_robin = 0i32;
    let mut sent = 0u64;
    for line in stdin.lock().lines() {
        let line = line.context("reading standard input")?;
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(Bytes::from(k.to_string())), Bytes::from(v.to_string())),
                None => (None, Bytes::from(line)),
            },
            None => (None, Bytes::from(line)),
        };
        let partition = match (args.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, partitions),
            (None, None) => round_robin,
        };
        pending.entry(partition).or_default().push(new_record(key, Some(value), crate::now_ms()));
        count += 1;
        if count >= args.batch_records as usize {
            sent += flush(&mut client, &args.topic, &leaders, &mut pending, compression, acks)?;
            count = 0;
            round_robin = (round_robin + 1) % partitions;
        }
    }
    sent += flush(&mut client, &args.topic, &leaders, &mut pending, compression, acks)?;
    eprintln!("produced {sent} records to {}", args.topic);
    Ok(())
}

fn flush(
    client: &mut Client,
    topic: &str,
    leaders: &BTreeMap<i32, i32>,
    pending: &mut BTreeMap<i32, Vec<Record>>,
    compression: Compression,
    acks: i16,
) -> Result<u64> {
    let mut by_leader: BTreeMap<i32, Vec<PartitionProduceData>> = BTreeMap::new();
    let mut sent = 0u64;
    for (partition, mut records) in std::mem::take(pending) {
        let batch = encode_batch(&mut records, compression).map_err(|e| anyhow::anyhow!("encoding records: {e}"))?;
        sent += records.len() as u64;
        by_leader
            .entry(leaders[&partition])
            .or_default()
            .push(PartitionProduceData::default().with_index(partition).with_records(Some(batch)));
    }
    for (leader, data) in by_leader {
        let request = ProduceRequest::default().with_acks(acks).with_timeout_ms(30_000).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(data),
        ]);
        if acks == 0 {
            bail!("--acks 0 is not supported by this tool: it could not report failures");
        }
        let resp = client.call_node(leader, ApiKey::Produce, request)?;
        for t in &resp.responses {
            for p in &t.partition_responses {
                if p.error_code != 0 {
                    let msg = p.error_message.as_ref().map(|m| format!(" - {m}")).unwrap_or_default();
                    bail!("producing to {topic}-{}: {}{msg}", p.index, describe_error(p.error_code));
                }
            }
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_where_the_java_partitioner_puts_them() {
        // Values from Kafka's own partitioner tests (Utils.murmur2 of "a" etc.) via
        // the documented seed; positive, stable and within range.
        for n in [1, 3, 6, 100] {
            for k in ["a", "key", "k123"] {
                let p = partition_for_key(k.as_bytes(), n);
                assert!((0..n).contains(&p));
                assert_eq!(p, partition_for_key(k.as_bytes(), n));
            }
        }
        assert_eq!(murmur2::murmur2(b"21", murmur2::KAFKA_SEED) as i32, -973932308);
    }
}
