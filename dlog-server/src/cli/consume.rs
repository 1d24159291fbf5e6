//! `dlog consume TOPIC`: print record values (or key TAB value) of one or all
//! partitions, from the end (default), the beginning, or an offset.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dlog_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use dlog_protocol::kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use dlog_protocol::kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, ListOffsetsRequest, TopicName};
use dlog_protocol::kafka_protocol::protocol::StrBytes;
use dlog_protocol::records::decode_records;

use super::client::{describe_error, Client};
use super::BootstrapArgs;

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    topic: String,
    /// Start at the earliest record instead of the end.
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Only this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition")]
    offset: Option<i64>,
    /// Stop after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Stop after this long without a new record (default: run until interrupted).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print key TAB value.
    #[arg(long)]
    print_key: bool,
    #[command(flatten)]
    bootstrap: BootstrapArgs,
}

pub fn run(args: ConsumeArgs) -> Result<()> {
    let mut client = Client::connect(&args.bootstrap.bootstrap)?;
    let md = client.metadata(Some(&[&args.topic]), false)?;
    let t = md.topics.first().context("empty Metadata response")?;
    if t.error_code != 0 {
        bail!("topic {:?}: {}", args.topic, describe_error(t.error_code));
    }
    let mut leaders: BTreeMap<i32, i32> = t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
    if let Some(p) = args.partition {
        if !leaders.contains_key(&p) {
            bail!("--partition {p}: topic {:?} has {} partitions", args.topic, leaders.len());
        }
        leaders.retain(|k, _| *k == p);
    }
    let topic = TopicName(StrBytes::from_string(args.topic.clone()));
    // Starting offsets.
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    for (&partition, &leader) in &leaders {
        let start = match args.offset {
            Some(o) => o,
            None => {
                let spec = if args.from_beginning { -2 } else { -1 };
                let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
                    ListOffsetsTopic::default().with_name(topic.clone()).with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(spec),
                    ]),
                ]);
                let resp = client.call_node(leader, ApiKey::ListOffsets, request)?;
                let p = resp.topics.first().and_then(|t| t.partitions.first()).context("empty ListOffsets response")?;
                if p.error_code != 0 {
                    bail!("{}-{partition}: {}", args.topic, describe_error(p.error_code));
                }
                p.offset
            }
        };
        positions.insert(partition, start);
    }
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    loop {
        let mut by_leader: BTreeMap<i32, Vec<FetchPartition>> = BTreeMap::new();
        for (&partition, &offset) in &positions {
            by_leader.entry(leaders[&partition]).or_default().push(
                FetchPartition::default()
                    .with_partition(partition)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(offset)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(1024 * 1024),
            );
        }
        for (leader, partitions) in by_leader {
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(16 * 1024 * 1024)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default().with_topic(topic.clone()).with_partitions(partitions)]);
            let resp = client.call_node(leader, ApiKey::Fetch, request)?;
            if resp.error_code != 0 {
                bail!("fetch: {}", describe_error(resp.error_code));
            }
            for t in resp.responses {
                for p in t.partitions {
                    if p.error_code != 0 {
                        bail!("{}-{}: {}", args.topic, p.partition_index, describe_error(p.error_code));
                    }
                    let Some(records) = p.records.filter(|r| !r.is_empty()) else { continue };
                    let position = positions.get_mut(&p.partition_index).context("unexpected partition")?;
                    for r in decode_records(&records).map_err(|e| anyhow::anyhow!("decoding records: {e}"))? {
                        if r.control || r.offset < *position {
                            continue;
                        }
                        *position = r.offset + 1;
                        let value = r.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                        if args.print_key {
                            let key = r.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                            writeln!(out, "{key}\t{value}")?;
                        } else {
                            writeln!(out, "{value}")?;
                        }
                        printed += 1;
                        last_record = Instant::now();
                        if args.max_messages.is_some_and(|m| printed >= m) {
                            out.flush()?;
                            return Ok(());
                        }
                    }
                }
            }
        }
        out.flush()?;
        if args.timeout_ms.is_some_and(|t| last_record.elapsed() >= Duration::from_millis(t)) {
            return Ok(());
        }
    }
}
