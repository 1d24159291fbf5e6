//! `dlog-loadgen`: a neutral Kafka-protocol load generator.
//!
//! It drives any Kafka-compatible broker (DLog or Apache Kafka) through librdkafka (the
//! `rdkafka` crate with its bundled C library), so it shares no code with DLog's own
//! protocol codec. It measures:
//!
//! * produce throughput (MiB/s of record values acknowledged) and the per-record ack
//!   latency (from the moment librdkafka accepted the record to its delivery report) as an
//!   HDR histogram: p50 / p99 / p99.9 / max;
//! * consume throughput (MiB/s of record values) reading back exactly the produced count
//!   from the start of every partition, with `assign()` (no consumer group is needed).
//!
//! The topic is created with the admin API before producing and deleted at the end (see
//! `--no-create` / `--keep-topic`). Results print as text, or as one JSON object with
//! `--json`. Targets are reported by `benches/run.sh`, never asserted here.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use serde::Serialize;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Produce,
    Consume,
    Both,
    /// Print the topic's partitions (leader, replicas, ISR) and the brokers as JSON; no load.
    Metadata,
}

#[derive(Debug, Parser)]
#[command(name = "dlog-loadgen", version, about = "Neutral Kafka-protocol load generator (librdkafka)")]
struct Args {
    /// Broker to bootstrap from, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic to use (default: a fresh `dlog-bench-<pid>-<millis>`).
    #[arg(long)]
    topic: Option<String>,
    /// Partitions of the created topic; records go round-robin over them.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Replication factor of the created topic.
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// A config of the created topic, KEY=VALUE (repeatable), e.g. min.insync.replicas=2.
    #[arg(long = "topic-config", value_name = "KEY=VALUE")]
    topic_configs: Vec<String>,
    /// A librdkafka setting for every client, KEY=VALUE (repeatable), e.g.
    /// retry.backoff.max.ms=250.
    #[arg(long = "client-config", value_name = "KEY=VALUE")]
    client_configs: Vec<String>,
    /// Write one line per measured record to this file: partition, the wall-clock times
    /// (Unix microseconds) at which librdkafka accepted it and reported its delivery, and
    /// 1 if it was acknowledged (0 if it failed). For failover measurements.
    #[arg(long, value_name = "FILE")]
    ack_log: Option<std::path::PathBuf>,
    /// Bytes of each record value (records have no key).
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Give each record its own value (slices of a 64 MiB incompressible pool), so a
    /// codec finds no repeats between the records of a batch. Default: one value for all.
    #[arg(long)]
    distinct_values: bool,
    /// Records to produce (and read back). Default: 1,000,000 unless --duration-secs is given.
    #[arg(long, conflicts_with = "duration_secs")]
    records: Option<u64>,
    /// Produce for this long instead of a fixed count (consume then reads back what was produced).
    #[arg(long)]
    duration_secs: Option<f64>,
    /// Producer acks: all, 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// Producer compression.type (none, gzip, snappy, lz4, zstd; only none is built in).
    #[arg(long, default_value = "none")]
    compression: String,
    /// Fixed produce rate in records/s (default: as fast as possible).
    #[arg(long)]
    rate: Option<u64>,
    /// Producer linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Producer batch.size in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    batch_bytes: u64,
    /// Do not create the topic (it must exist).
    #[arg(long)]
    no_create: bool,
    /// Do not delete the topic at the end.
    #[arg(long)]
    keep_topic: bool,
    /// Start measuring at once instead of first probing until the topic acks promptly.
    #[arg(long)]
    no_probe: bool,
    /// Give up when no progress is made for this many seconds.
    #[arg(long, default_value_t = 60)]
    stall_secs: u64,
    /// A label copied into the report (e.g. the broker's name).
    #[arg(long)]
    label: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    label: Option<String>,
    bootstrap: String,
    topic: String,
    mode: Mode,
    partitions: i32,
    record_bytes: usize,
    acks: String,
    compression: String,
    linger_ms: u64,
    batch_bytes: u64,
    rate: Option<u64>,
    produce: Option<ProduceStats>,
    consume: Option<ConsumeStats>,
    /// First few warnings/errors librdkafka reported (connection trouble and the like).
    client_errors: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ProduceStats {
    /// Probe records acked before the clock started (they are in the topic too).
    probe_records: u64,
    /// Time until probe rounds were acked promptly (see `probe_until_ready`).
    topic_ready_ms: f64,
    records_sent: u64,
    records_acked: u64,
    delivery_errors: u64,
    first_delivery_error: Option<String>,
    bytes_acked: u64,
    elapsed_secs: f64,
    mib_per_sec: f64,
    records_per_sec: f64,
    latency_ms: Latency,
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

#[derive(Debug, Serialize)]
struct ConsumeStats {
    records: u64,
    bytes: u64,
    elapsed_secs: f64,
    mib_per_sec: f64,
    records_per_sec: f64,
    first_record_ms: f64,
    poll_errors: u64,
}

/// Shared client context: librdkafka's warnings and errors go to a short list (and stderr)
/// instead of the `log` crate, which nothing here initialises.
struct Ctx {
    quiet: bool,
    errors: Mutex<Vec<String>>,
    /// Ack bookkeeping (producer only).
    base: Instant,
    hist: Mutex<Histogram<u64>>,
    acked: AtomicU64,
    delivery_errors: AtomicU64,
    first_delivery_error: Mutex<Option<String>>,
    /// Wall-clock time of `base`, Unix microseconds (for `--ack-log`).
    base_unix_us: u64,
    /// Per-record outcomes, kept only with `--ack-log`.
    ack_log: Option<Mutex<Vec<AckEntry>>>,
}

/// One record's outcome for `--ack-log`: partition, accepted and delivered at (Unix us), acked.
type AckEntry = (i32, u64, u64, bool);

const MAX_KEPT_ERRORS: usize = 20;

impl Ctx {
    fn new(quiet: bool) -> anyhow::Result<Ctx> {
        Ok(Ctx {
            quiet,
            errors: Mutex::new(Vec::new()),
            base: Instant::now(),
            // Microseconds, 1 us .. 1 h, 3 significant digits.
            hist: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3)?),
            acked: AtomicU64::new(0),
            delivery_errors: AtomicU64::new(0),
            first_delivery_error: Mutex::new(None),
            base_unix_us: unix_micros(),
            ack_log: None,
        })
    }

    fn with_ack_log(mut self, on: bool) -> Ctx {
        self.ack_log = on.then(|| Mutex::new(Vec::new()));
        self
    }

    fn unix_us(&self, ns: usize) -> u64 {
        self.base_unix_us + (ns / 1000) as u64
    }

    fn note(&self, msg: String) {
        if !self.quiet {
            eprintln!("dlog-loadgen: {msg}");
        }
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < MAX_KEPT_ERRORS {
            errors.push(msg);
        }
    }

    fn now_ns(&self) -> usize {
        self.base.elapsed().as_nanos() as usize
    }
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if (level as i32) <= RDKafkaLogLevel::Warning as i32 {
            self.note(format!("librdkafka {level:?} {fac}: {log_message}"));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.note(format!("librdkafka error: {error}: {reason}"));
    }
}

impl ConsumerContext for Ctx {}

impl ProducerContext for Ctx {
    /// Nanoseconds since `base` at which librdkafka accepted the record.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        if let Some(log) = &self.ack_log {
            let (partition, ok) = match result {
                Ok(m) => (m.partition(), true),
                Err((_, m)) => (m.partition(), false),
            };
            log.lock().unwrap().push((partition, self.unix_us(sent_ns), self.unix_us(self.now_ns()), ok));
        }
        match result {
            Ok(_) => {
                let micros = (self.now_ns().saturating_sub(sent_ns) / 1000).max(1) as u64;
                self.hist.lock().unwrap().saturating_record(micros);
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                if self.delivery_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    *self.first_delivery_error.lock().unwrap() = Some(e.to_string());
                    self.note(format!("delivery failed: {e}"));
                }
            }
        }
    }
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or_default()
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        // Results were printed, but some records failed.
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("dlog-loadgen: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn base_config(args: &Args) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &args.bootstrap).set("client.id", "dlog-loadgen");
    for kv in &args.client_configs {
        // Checked in `run`.
        if let Some((key, value)) = kv.split_once('=') {
            c.set(key, value);
        }
    }
    c
}

fn run(args: Args) -> anyhow::Result<bool> {
    if args.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    if args.mode == Mode::Consume && args.records.is_none() {
        bail!("--mode consume needs --records N (how many records to read back)");
    }
    if args.rate == Some(0) {
        bail!("--rate must be positive");
    }
    if let Some(kv) = args.client_configs.iter().find(|kv| !kv.contains('=')) {
        bail!("--client-config {kv:?}: expected KEY=VALUE");
    }
    let topic = args.topic.clone().unwrap_or_else(|| {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        format!("dlog-bench-{}-{millis}", std::process::id())
    });
    let ctx_quiet = args.json;
    if args.mode == Mode::Metadata {
        print_metadata(&args, args.topic.as_deref())?;
        return Ok(true);
    }

    let admin: AdminClient<Ctx> =
        base_config(&args).create_with_context(Ctx::new(ctx_quiet)?).context("creating the admin client")?;
    let created = args.mode != Mode::Consume && !args.no_create;
    if created {
        create_topic(&admin, &topic, &args)?;
    }

    let result = measure(&args, &topic);

    if !args.keep_topic && (created || args.mode == Mode::Consume) {
        if let Err(e) = delete_topic(&admin, &topic) {
            eprintln!("dlog-loadgen: warning: deleting topic {topic}: {e:#}");
        }
    }
    let (produce, consume, client_errors) = result?;
    let ok = produce.as_ref().is_none_or(|p| p.delivery_errors == 0 && p.records_acked == p.records_sent);
    let report = Report {
        label: args.label.clone(),
        bootstrap: args.bootstrap.clone(),
        topic,
        mode: args.mode,
        partitions: args.partitions,
        record_bytes: args.record_bytes,
        acks: args.acks.clone(),
        compression: args.compression.clone(),
        linger_ms: args.linger_ms,
        batch_bytes: args.batch_bytes,
        rate: args.rate,
        produce,
        consume,
        client_errors,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report);
    }
    Ok(ok)
}

type Measured = (Option<ProduceStats>, Option<ConsumeStats>, Vec<String>);

fn measure(args: &Args, topic: &str) -> anyhow::Result<Measured> {
    let mut client_errors = Vec::new();
    let mut produce = None;
    let mut to_read = args.records.unwrap_or(1_000_000);
    if args.mode != Mode::Consume {
        let (stats, errors) = produce_phase(args, topic)?;
        to_read = stats.records_acked + stats.probe_records;
        produce = Some(stats);
        client_errors.extend(errors);
    }
    let mut consume = None;
    if args.mode != Mode::Produce {
        let (stats, errors) = consume_phase(args, topic, to_read)?;
        consume = Some(stats);
        client_errors.extend(errors);
    }
    Ok((produce, consume, client_errors))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

fn create_topic(admin: &AdminClient<Ctx>, topic: &str, args: &Args) -> anyhow::Result<()> {
    let partitions = args.partitions;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(args.replication_factor));
    for kv in &args.topic_configs {
        let (key, value) = kv.split_once('=').with_context(|| format!("--topic-config {kv:?}: expected KEY=VALUE"))?;
        new = new.set(key, value);
    }
    let results = block_on(admin.create_topics([&new], &opts)).context("CreateTopics")?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    // Wait until every partition has a leader in the metadata.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = match admin.inner().fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(md) => md.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0 && p.error().is_none())
            }),
            Err(_) => false,
        };
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("topic {topic} has no leader for all {partitions} partitions after 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One JSON object: the brokers, and each partition's leader, replicas and ISR (of
/// `topic`, or of no topic).
fn print_metadata(args: &Args, topic: Option<&str>) -> anyhow::Result<()> {
    let consumer: BaseConsumer<Ctx> =
        base_config(args).create_with_context(Ctx::new(true)?).context("creating the metadata client")?;
    let md = consumer.fetch_metadata(topic, Duration::from_secs(10)).context("Metadata")?;
    let brokers: Vec<i32> = md.brokers().iter().map(|b| b.id()).collect();
    let partitions: Vec<serde_json::Value> = md
        .topics()
        .iter()
        .filter(|t| Some(t.name()) == topic)
        .flat_map(|t| t.partitions())
        .map(|p| {
            serde_json::json!({
                "partition": p.id(),
                "leader": p.leader(),
                "replicas": p.replicas(),
                "isr": p.isr(),
                "error": p.error().map(|e| format!("{e:?}")),
            })
        })
        .collect();
    println!("{}", serde_json::json!({ "topic": topic, "brokers": brokers, "partitions": partitions }));
    Ok(())
}

fn delete_topic(admin: &AdminClient<Ctx>, topic: &str) -> anyhow::Result<()> {
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in block_on(admin.delete_topics(&[topic], &opts)).context("DeleteTopics")? {
        if let Err((name, code)) = r {
            bail!("{name}: {code}");
        }
    }
    Ok(())
}

/// The pool `--distinct-values` slices record values from: larger than any codec's window.
const VALUE_POOL_BYTES: usize = 64 << 20;

/// Bytes that do not compress (a splitmix64 stream).
fn payload(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn produce_phase(args: &Args, topic: &str) -> anyhow::Result<(ProduceStats, Vec<String>)> {
    let producer: BaseProducer<Ctx> = base_config(args)
        .set("acks", &args.acks)
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", args.batch_bytes.to_string())
        .set("compression.type", &args.compression)
        // A neutral client: plain produce requests, no idempotence/transactions, which a
        // broker under test may not implement.
        .set("enable.idempotence", "false")
        .create_with_context(Ctx::new(args.json)?.with_ack_log(args.ack_log.is_some()))
        .context("creating the producer")?;
    // Warm up: metadata (and the connection) before the clock starts.
    producer.client().fetch_metadata(Some(topic), Duration::from_secs(10)).context("producer metadata")?;

    // One value, or a pool each record takes its own slice of.
    let pool = payload(args.record_bytes + if args.distinct_values { VALUE_POOL_BYTES } else { 0 });
    let value = &pool[..args.record_bytes];
    let slots = (pool.len() / args.record_bytes.max(1)).max(1);
    let ctx = producer.context();
    let (probe_records, topic_ready) = probe_until_ready(&producer, topic, args, value)?;
    let limit = args.records.or(if args.duration_secs.is_some() { None } else { Some(1_000_000) });
    let deadline = args.duration_secs.map(Duration::from_secs_f64);
    let stall = Duration::from_secs(args.stall_secs);
    let partitions = args.partitions as u64;

    let start = Instant::now();
    let mut sent: u64 = 0;
    loop {
        match (limit, deadline) {
            (Some(n), _) if sent >= n => break,
            (None, Some(d)) if start.elapsed() >= d => break,
            _ => {}
        }
        if let Some(rate) = args.rate {
            let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
            loop {
                let now = Instant::now();
                if now >= due {
                    break;
                }
                producer.poll(due - now);
            }
        }
        let part = (sent % partitions) as i32;
        let at = (sent as usize % slots) * args.record_bytes;
        let value = &pool[at..at + args.record_bytes];
        let mut record =
            BaseRecord::<(), [u8], usize>::with_opaque_to(topic, ctx.now_ns()).payload(value).partition(part);
        let mut blocked_since: Option<Instant> = None;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Local queue full: serve delivery reports, then retry. The latency clock
                    // of this record starts when librdkafka finally accepts it.
                    let since = *blocked_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > stall {
                        bail!(
                            "produce stalled: local queue full for {} s ({} acked of {sent} sent)",
                            args.stall_secs,
                            ctx.acked.load(Ordering::Relaxed)
                        );
                    }
                    producer.poll(Duration::from_millis(1));
                    record = back.delivery_opaque(ctx.now_ns());
                }
                Err((e, _)) => bail!("produce failed after {sent} records: {e}"),
            }
        }
        sent += 1;
        if sent & 63 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    // Drain: wait for every outstanding delivery report, watching for stalls.
    let mut last = (ctx.acked.load(Ordering::Relaxed), Instant::now());
    while producer.in_flight_count() > 0 {
        producer.poll(Duration::from_millis(1));
        let acked = ctx.acked.load(Ordering::Relaxed) + ctx.delivery_errors.load(Ordering::Relaxed);
        if acked != last.0 {
            last = (acked, Instant::now());
        } else if last.1.elapsed() > stall {
            bail!("produce stalled: {} records unacknowledged for {} s", producer.in_flight_count(), args.stall_secs);
        }
    }
    producer.flush(Duration::from_secs(5)).context("flush")?;
    let elapsed = start.elapsed().as_secs_f64();

    let acked = ctx.acked.load(Ordering::Relaxed);
    let hist = ctx.hist.lock().unwrap();
    let ms = |us: u64| us as f64 / 1000.0;
    let bytes_acked = acked * args.record_bytes as u64;
    let stats = ProduceStats {
        probe_records,
        topic_ready_ms: topic_ready.as_secs_f64() * 1000.0,
        records_sent: sent,
        records_acked: acked,
        delivery_errors: ctx.delivery_errors.load(Ordering::Relaxed),
        first_delivery_error: ctx.first_delivery_error.lock().unwrap().clone(),
        bytes_acked,
        elapsed_secs: elapsed,
        mib_per_sec: bytes_acked as f64 / MIB / elapsed,
        records_per_sec: acked as f64 / elapsed,
        latency_ms: Latency {
            p50: ms(hist.value_at_quantile(0.50)),
            p99: ms(hist.value_at_quantile(0.99)),
            p999: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
            mean: hist.mean() / 1000.0,
        },
    };
    drop(hist);
    if let (Some(path), Some(log)) = (&args.ack_log, &ctx.ack_log) {
        write_ack_log(path, &log.lock().unwrap()).with_context(|| format!("writing {}", path.display()))?;
    }
    let errors = ctx.errors.lock().unwrap().clone();
    Ok((stats, errors))
}

fn write_ack_log(path: &std::path::Path, entries: &[AckEntry]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "# partition accepted_unix_us delivered_unix_us acked")?;
    for (partition, sent, done, ok) in entries {
        writeln!(out, "{partition} {sent} {done} {}", u8::from(*ok))?;
    }
    out.flush()
}

/// A freshly created topic is not always ready to ack promptly: Apache Kafka, for one,
/// holds `acks=all` produce requests to a new partition for up to about a second. So that
/// the measurement sees steady state (on any broker), one record per partition is sent in
/// rounds, each waited for, until three rounds in a row are acked within 50 ms (at most
/// 30 s). Returns the probe records acked and the time that took; the ack bookkeeping is
/// then reset.
fn probe_until_ready(
    producer: &BaseProducer<Ctx>,
    topic: &str,
    args: &Args,
    value: &[u8],
) -> anyhow::Result<(u64, Duration)> {
    const FAST: Duration = Duration::from_millis(50);
    const LIMIT: Duration = Duration::from_secs(30);
    let ctx = producer.context();
    let start = Instant::now();
    let mut fast_rounds = 0;
    while fast_rounds < 3 && !args.no_probe {
        if start.elapsed() > LIMIT {
            ctx.note(format!(
                "topic {topic} still slow to ack after {} s of probing; measuring anyway",
                LIMIT.as_secs()
            ));
            break;
        }
        let round = Instant::now();
        for p in 0..args.partitions {
            let record = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, ctx.now_ns()).payload(value).partition(p);
            producer.send(record).map_err(|(e, _)| anyhow::anyhow!("probe produce failed: {e}"))?;
        }
        // Not `flush()`: rdkafka's polls in 100 ms steps, which would hide a prompt ack.
        let deadline = Instant::now() + Duration::from_secs(args.stall_secs);
        while producer.in_flight_count() > 0 {
            if Instant::now() > deadline {
                bail!("probe: records to {topic} unacknowledged for {} s", args.stall_secs);
            }
            producer.poll(Duration::from_millis(1));
        }
        if let Some(e) = ctx.first_delivery_error.lock().unwrap().as_ref() {
            bail!("probe record to {topic} failed: {e}");
        }
        if round.elapsed() < FAST {
            fast_rounds += 1;
        } else {
            fast_rounds = 0;
        }
    }
    let acked = ctx.acked.swap(0, Ordering::Relaxed);
    ctx.delivery_errors.store(0, Ordering::Relaxed);
    *ctx.first_delivery_error.lock().unwrap() = None;
    ctx.hist.lock().unwrap().reset();
    if let Some(log) = &ctx.ack_log {
        log.lock().unwrap().clear();
    }
    Ok((acked, start.elapsed()))
}

fn consume_phase(args: &Args, topic: &str, want: u64) -> anyhow::Result<(ConsumeStats, Vec<String>)> {
    let consumer: BaseConsumer<Ctx> = base_config(args)
        // Required by librdkafka for a consumer, but unused: partitions are assigned
        // explicitly and nothing is committed.
        .set("group.id", "dlog-loadgen")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create_with_context(Ctx::new(args.json)?)
        .context("creating the consumer")?;
    consumer.client().fetch_metadata(Some(topic), Duration::from_secs(10)).context("consumer metadata")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..args.partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }

    let stall = Duration::from_secs(args.stall_secs);
    let start = Instant::now();
    consumer.assign(&tpl).context("assign")?;
    let mut records: u64 = 0;
    let mut bytes: u64 = 0;
    let mut poll_errors: u64 = 0;
    let mut first_record = None;
    let mut last_progress = Instant::now();
    while records < want {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += (m.payload_len() + m.key_len()) as u64;
                if first_record.is_none() {
                    first_record = Some(start.elapsed());
                }
                if records & 1023 == 0 {
                    last_progress = Instant::now();
                }
            }
            Some(Err(e)) => {
                poll_errors += 1;
                if poll_errors <= 5 {
                    consumer.context().note(format!("consume error: {e}"));
                }
            }
            None => {}
        }
        if last_progress.elapsed() > stall {
            bail!("consume stalled: read {records} of {want} records, nothing new for {} s", args.stall_secs);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stats = ConsumeStats {
        records,
        bytes,
        elapsed_secs: elapsed,
        mib_per_sec: bytes as f64 / MIB / elapsed,
        records_per_sec: records as f64 / elapsed,
        first_record_ms: first_record.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(f64::NAN),
        poll_errors,
    };
    let errors = consumer.context().errors.lock().unwrap().clone();
    Ok((stats, errors))
}

fn print_text(r: &Report) {
    println!(
        "{}bootstrap {} topic {} ({} partitions, {} B records, acks={}, compression={}, linger.ms={}, batch.size={}{})",
        r.label.as_deref().map(|l| format!("[{l}] ")).unwrap_or_default(),
        r.bootstrap,
        r.topic,
        r.partitions,
        r.record_bytes,
        r.acks,
        r.compression,
        r.linger_ms,
        r.batch_bytes,
        r.rate.map(|x| format!(", rate {x}/s")).unwrap_or_default(),
    );
    if let Some(p) = &r.produce {
        println!(
            "produce: {} records acked of {} sent ({} errors) in {:.2} s: {:.1} MiB/s, {:.0} records/s",
            p.records_acked, p.records_sent, p.delivery_errors, p.elapsed_secs, p.mib_per_sec, p.records_per_sec
        );
        println!("topic acked promptly after {:.0} ms ({} probe records)", p.topic_ready_ms, p.probe_records);
        println!(
            "ack latency ms: p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2}",
            p.latency_ms.p50, p.latency_ms.p99, p.latency_ms.p999, p.latency_ms.max, p.latency_ms.mean
        );
        if let Some(e) = &p.first_delivery_error {
            println!("first delivery error: {e}");
        }
    }
    if let Some(c) = &r.consume {
        println!(
            "consume: {} records in {:.2} s: {:.1} MiB/s, {:.0} records/s (first record after {:.1} ms)",
            c.records, c.elapsed_secs, c.mib_per_sec, c.records_per_sec, c.first_record_ms
        );
    }
}
