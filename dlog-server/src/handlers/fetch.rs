//! Fetch: return stored batches as they are on disk, up to the high watermark, within
//! the request's byte limits, waiting up to `max_wait_ms` for `min_bytes` to arrive.
//!
//! Limits as Kafka applies them (KIP-74): the first batch of the first partition with
//! data is returned whole even when larger than the limits, so a consumer always makes
//! progress; after that, partitions stop at `partition_max_bytes` and the response at
//! `max_bytes`. The limits bound what is *read*, not only what is sent: partitions are
//! read in request order while the budget lasts. Fetch sessions (KIP-227) are not kept: every response says session 0,
//! which clients read as "send full fetch requests".

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use dlog_core::{limits, Error, Offset, Result, ShardId, TopicPartition};
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use dlog_protocol::kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use futures_util::future::{join_all, select_all};

use crate::shard::Shard;

struct Want {
    topic: usize,
    tp: Option<TopicPartition>,
    partition: i32,
    fetch_offset: i64,
    partition_max_bytes: usize,
    current_leader_epoch: i32,
}

struct Got {
    bytes: Bytes,
    high_watermark: i64,
    log_start_offset: i64,
}

pub async fn handle(shard: &Rc<Shard>, request: FetchRequest, version: i16) -> FetchResponse {
    // Resolve names (v13+ sends topic ids) once.
    let mut topics: Vec<(TopicName, uuid::Uuid, Option<Error>)> = Vec::with_capacity(request.topics.len());
    let mut wants = Vec::new();
    for (i, t) in request.topics.iter().enumerate() {
        let name = super::requested_topic(shard, version >= 13, &t.topic, t.topic_id);
        let unknown = match (&name, version >= 13) {
            (None, true) => Some(Error::UnknownTopicId(t.topic_id.to_string())),
            _ => None,
        };
        topics.push((t.topic.clone(), t.topic_id, unknown));
        for p in &t.partitions {
            wants.push(Want {
                topic: i,
                tp: name.as_ref().map(|n| TopicPartition::new(n.clone(), p.partition)),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes.max(0) as usize,
                current_leader_epoch: p.current_leader_epoch,
            });
        }
    }
    let max_bytes = if request.max_bytes <= 0 { i32::MAX as usize } else { request.max_bytes as usize };
    let min_bytes = request.min_bytes.max(0) as usize;
    let wait = Duration::from_millis(request.max_wait_ms.clamp(0, limits::FETCH_MAX_WAIT_MS as i32) as u64);
    let deadline = Instant::now() + wait;

    // Watches are taken, and marked seen, before each read so that data arriving
    // between the read and the wait still wakes the wait.
    let mut watches: Vec<_> =
        wants.iter().filter_map(|w| w.tp.as_ref().and_then(|tp| shard.shared.watch(tp))).collect();
    let mut results;
    loop {
        for w in &mut watches {
            w.borrow_and_update();
        }
        results = read_all(shard, &wants, max_bytes).await;
        let total: usize = results.iter().map(|r| r.as_ref().map_or(0, |g| g.bytes.len())).sum();
        let any_error = results.iter().any(|r| r.is_err());
        if total >= min_bytes.max(1) || any_error || Instant::now() >= deadline {
            break;
        }
        // Wait until some requested partition's high watermark moves, or the deadline.
        if watches.is_empty() {
            tokio::time::sleep_until(deadline.into()).await;
            continue;
        }
        let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        if let Ok((Err(_), _, _)) = tokio::time::timeout_at(deadline.into(), changed).await {
            // The partition went away (topic deleted): nothing will wake us; wait out the deadline.
            tokio::time::sleep_until(deadline.into()).await;
        }
    }

    let mut responses: Vec<FetchableTopicResponse> = topics
        .iter()
        .map(|(name, id, _)| FetchableTopicResponse::default().with_topic(name.clone()).with_topic_id(*id))
        .collect();
    let mut sent: u64 = 0;
    for (want, result) in wants.iter().zip(results) {
        let result = match &topics[want.topic].2 {
            Some(e) => Err(e.clone()),
            None => result,
        };
        let data = match result {
            Ok(g) => {
                sent += g.bytes.len() as u64;
                PartitionData::default()
                    .with_partition_index(want.partition)
                    .with_high_watermark(g.high_watermark)
                    .with_last_stable_offset(g.high_watermark)
                    .with_log_start_offset(g.log_start_offset)
                    .with_preferred_read_replica((-1).into())
                    .with_records(Some(g.bytes))
            }
            Err(e) => PartitionData::default()
                .with_partition_index(want.partition)
                .with_error_code(error_code(&e))
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica((-1).into())
                .with_records(Some(Bytes::new())),
        };
        responses[want.topic].partitions.push(data);
    }
    metrics::counter!("dlog_fetch_bytes_total").increment(sent);
    FetchResponse::default().with_responses(responses).with_session_id(0)
}

/// What is left of a response's byte budget as the reads go, in request order.
#[derive(Clone, Copy)]
struct Budget {
    /// Bytes the response may still carry (`max_bytes` minus what was read).
    left: usize,
    /// Whether some partition already returned data: until then, the first batch is
    /// returned whole even past the limits (KIP-74); after, a batch that does not fit is
    /// not read at all.
    any_data: bool,
}

/// Reads the wanted partitions within the response's budget, however many are named
/// (10,000, or one partition 10,000 times).
///
/// When the partitions' own limits add up to no more than `max_bytes` (an ordinary
/// consumer's fetch), the budget cannot run out: every shard reads its partitions at
/// once, in parallel, and the response is trimmed in request order (KIP-74); at most one
/// batch per shard is read in vain. Otherwise partitions are read in request order, each
/// up to `min(partition_max_bytes, what is left)`, so the bytes read never exceed
/// `max_bytes` plus the one batch KIP-74 allows; consecutive partitions of one shard
/// are read in one job, and once the budget is spent the rest only report their
/// watermarks (and errors), read in parallel.
async fn read_all(shard: &Rc<Shard>, wants: &[Want], max_bytes: usize) -> Vec<Result<Got>> {
    let limits_fit = wants
        .iter()
        .try_fold(0usize, |sum, w| sum.checked_add(w.partition_max_bytes))
        .is_some_and(|sum| sum <= max_bytes);
    if limits_fit {
        return read_in_parallel(shard, wants, max_bytes).await;
    }
    let mut out: Vec<Option<Result<Got>>> = (0..wants.len()).map(|_| None).collect();
    let mut runs: Vec<(ShardId, Vec<Read>)> = Vec::new();
    for (index, w) in wants.iter().enumerate() {
        let Some(tp) = w.tp.clone() else {
            out[index] = Some(Err(Error::UnknownTopicOrPartition(format!("topic of partition {}", w.partition))));
            continue;
        };
        let owner = shard.shared.owner(&tp);
        let read = Read {
            index,
            fetch_offset: w.fetch_offset,
            partition_max_bytes: w.partition_max_bytes,
            epoch: w.current_leader_epoch,
            tp,
        };
        match runs.last_mut() {
            Some((o, reads)) if *o == owner => reads.push(read),
            _ => runs.push((owner, vec![read])),
        }
    }
    let mut budget = Budget { left: max_bytes, any_data: false };
    let mut spent_runs = Vec::new();
    for (owner, reads) in runs {
        if budget.any_data && budget.left == 0 {
            spent_runs.push((owner, reads));
            continue;
        }
        let indexes: Vec<usize> = reads.iter().map(|r| r.index).collect();
        let start = budget;
        match shard.run_on(owner, move |s| async move { read_run(&s, reads, start) }).await {
            Ok((results, after)) => {
                budget = after;
                for (index, result) in results {
                    out[index] = Some(result);
                }
            }
            Err(e) => {
                // The shard is gone (shutdown): every read it owed fails alike.
                for index in indexes {
                    out[index] = Some(Err(e.clone()));
                }
            }
        }
    }
    let spent = Budget { left: 0, any_data: true };
    let jobs = spent_runs.into_iter().map(|(owner, reads)| {
        let indexes: Vec<usize> = reads.iter().map(|r| r.index).collect();
        let job = shard.run_on(owner, move |s| async move { read_run(&s, reads, spent).0 });
        async move { (indexes, job.await) }
    });
    store_results(&mut out, join_all(jobs).await);
    out.into_iter().map(|r| r.expect("every wanted partition was read or failed")).collect()
}

/// The parallel path of [`read_all`]: each shard reads all of its partitions with the
/// whole budget, then the answers are trimmed in request order as Kafka fills a
/// response: after the first partition with data, one that exceeds its own limit or the
/// response's is returned empty (its high watermark still tells the client there is more).
async fn read_in_parallel(shard: &Rc<Shard>, wants: &[Want], max_bytes: usize) -> Vec<Result<Got>> {
    let mut out: Vec<Option<Result<Got>>> = (0..wants.len()).map(|_| None).collect();
    let mut by_shard: BTreeMap<ShardId, Vec<Read>> = BTreeMap::new();
    for (index, w) in wants.iter().enumerate() {
        let Some(tp) = w.tp.clone() else {
            out[index] = Some(Err(Error::UnknownTopicOrPartition(format!("topic of partition {}", w.partition))));
            continue;
        };
        let read = Read {
            index,
            fetch_offset: w.fetch_offset,
            partition_max_bytes: w.partition_max_bytes,
            epoch: w.current_leader_epoch,
            tp,
        };
        by_shard.entry(shard.shared.owner(&read.tp)).or_default().push(read);
    }
    let fresh = Budget { left: max_bytes, any_data: false };
    let jobs = by_shard.into_iter().map(|(owner, reads)| {
        let indexes: Vec<usize> = reads.iter().map(|r| r.index).collect();
        let job = shard.run_on(owner, move |s| async move { read_run(&s, reads, fresh).0 });
        async move { (indexes, job.await) }
    });
    store_results(&mut out, join_all(jobs).await);
    let mut total = 0usize;
    out.into_iter()
        .zip(wants)
        .map(|(result, w)| match result.expect("every wanted partition was read or failed") {
            Ok(g) if total > 0 && (g.bytes.len() > w.partition_max_bytes || total + g.bytes.len() > max_bytes) => {
                Ok(Got { bytes: Bytes::new(), ..g })
            }
            Ok(g) => {
                total += g.bytes.len();
                Ok(g)
            }
            Err(e) => Err(e),
        })
        .collect()
}

/// One shard job's answers: (request slot, read) per partition.
type RunResults = Vec<(usize, Result<Got>)>;

/// Puts each shard job's answers in their request slots; a shard gone (shutdown) fails
/// every read it owed alike.
fn store_results(out: &mut [Option<Result<Got>>], done: Vec<(Vec<usize>, Result<RunResults>)>) {
    for (indexes, results) in done {
        match results {
            Ok(results) => {
                for (index, result) in results {
                    out[index] = Some(result);
                }
            }
            Err(e) => {
                for index in indexes {
                    out[index] = Some(Err(e.clone()));
                }
            }
        }
    }
}

/// One partition read, as sent to its owner shard.
struct Read {
    index: usize,
    tp: TopicPartition,
    fetch_offset: i64,
    partition_max_bytes: usize,
    epoch: i32,
}

/// Reads consecutive partitions of one shard in order, spending `budget`.
fn read_run(shard: &Shard, reads: Vec<Read>, mut budget: Budget) -> (Vec<(usize, Result<Got>)>, Budget) {
    let mut results = Vec::with_capacity(reads.len());
    for r in reads {
        let limit = r.partition_max_bytes.min(budget.left);
        let result = read_one(shard, &r, limit, !budget.any_data);
        if let Ok(g) = &result {
            if !g.bytes.is_empty() {
                budget.any_data = true;
                budget.left = budget.left.saturating_sub(g.bytes.len());
            }
        }
        results.push((r.index, result));
    }
    (results, budget)
}

fn read_one(shard: &Shard, r: &Read, limit: usize, min_one: bool) -> Result<Got> {
    let p = shard.leading(&r.tp)?;
    let p = p.borrow();
    p.check_epoch(r.epoch)?;
    let hw = p.high_watermark();
    let read = p.log.read_within(Offset(r.fetch_offset), limit, hw, min_one)?;
    Ok(Got { bytes: read.bytes, high_watermark: hw.0, log_start_offset: read.log_start_offset.0 })
}
