//! Idempotent producers: InitProducerId, retried batches answered with their original
//! offsets, refused sequences and epochs, and all of it across a restart.

use dlog_protocol::kafka_protocol::messages::{ApiKey, InitProducerIdRequest, ProducerId, TransactionalId};
use dlog_server::cli::client::Client;

use super::*;

/// InitProducerId (the client's newest common version): (error, producer id, epoch).
fn init_producer_id(c: &mut Client, current: Option<(i64, i16)>, transactional: Option<&str>) -> (i16, i64, i16) {
    let (id, epoch) = current.unwrap_or((-1, -1));
    let request = InitProducerIdRequest::default()
        .with_transactional_id(transactional.map(|t| TransactionalId(StrBytes::from_string(t.to_string()))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch);
    let r = c.call_any(ApiKey::InitProducerId, request).unwrap();
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

/// One batch of `values` from producer `pid` at `epoch`, first sequence `seq`.
fn idem_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    let mut records: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut r = record("k", v, 1000);
            r.producer_id = pid;
            r.producer_epoch = epoch;
            r.sequence = seq + i as i32;
            r
        })
        .collect();
    batch(&mut records, Compression::None)
}

/// Produces and returns (error code, base offset).
fn send(c: &mut Client, topic: &str, b: Bytes) -> (i16, i64) {
    let r = produce(c, topic, 0, b);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn values(c: &mut Client, topic: &str) -> Vec<String> {
    let (err, _, bytes) = fetch(c, topic, 0, 0, 0);
    assert_eq!(err, 0);
    decode(&bytes).into_iter().map(|(_, _, v)| v).collect()
}

#[test]
fn a_retried_batch_gets_its_original_offset_and_is_stored_once() {
    let t = TestBroker::start();
    let mut c = t.client();
    assert_eq!(create_topic(&mut c, "idem", 1, &[]), 0);
    let (err, pid, epoch) = init_producer_id(&mut c, None, None);
    assert_eq!((err, epoch), (0, 0));
    assert!(pid >= 0);
    let b0 = idem_batch(pid, epoch, 0, &["a0", "a1", "a2"]);
    assert_eq!(send(&mut c, "idem", b0.clone()), (0, 0));
    assert_eq!(send(&mut c, "idem", b0), (0, 0), "a retry is answered with the original offset");
    assert_eq!(send(&mut c, "idem", idem_batch(pid, epoch, 3, &["b3"])), (0, 3));
    assert_eq!(values(&mut c, "idem"), ["a0", "a1", "a2", "b3"]);
}

#[test]
fn a_sequence_gap_is_45_and_a_fenced_epoch_is_47() {
    let t = TestBroker::start();
    let mut c = t.client();
    assert_eq!(create_topic(&mut c, "idem", 1, &[]), 0);
    let (_, pid, epoch) = init_producer_id(&mut c, None, None);
    assert_eq!(send(&mut c, "idem", idem_batch(pid, epoch, 0, &["a0", "a1"])), (0, 0));
    assert_eq!(send(&mut c, "idem", idem_batch(pid, epoch, 5, &["gap"])).0, 45);

    // KIP-360: the producer asks for a bumped epoch of its own id.
    let (err, same, bumped) = init_producer_id(&mut c, Some((pid, epoch)), None);
    assert_eq!((err, same, bumped), (0, pid, epoch + 1));
    assert_eq!(send(&mut c, "idem", idem_batch(pid, bumped, 3, &["x"])).0, 45, "a new epoch starts at 0");
    assert_eq!(send(&mut c, "idem", idem_batch(pid, bumped, 0, &["c0"])), (0, 2));
    assert_eq!(send(&mut c, "idem", idem_batch(pid, epoch, 2, &["old"])).0, 47);
    assert_eq!(values(&mut c, "idem"), ["a0", "a1", "c0"]);

    // An exhausted epoch, or an id this node never gave, gets a fresh id at epoch 0.
    let (err, other, e) = init_producer_id(&mut c, Some((pid, i16::MAX - 1)), None);
    assert_eq!((err, e), (0, 0));
    assert_ne!(other, pid);
    let (_, stranger, e) = init_producer_id(&mut c, Some((1 << 40, 3)), None);
    assert_eq!(e, 0);
    assert_ne!(stranger, 1 << 40);
}

#[test]
fn transactional_ids_are_refused() {
    let t = TestBroker::start();
    let mut c = t.client();
    let (err, pid, epoch) = init_producer_id(&mut c, None, Some("txn-1"));
    assert_eq!((err, pid, epoch), (53, -1, -1));
}

#[test]
fn duplicates_and_producer_ids_survive_a_restart() {
    let mut t = TestBroker::start();
    let mut c = t.client();
    assert_eq!(create_topic(&mut c, "idem", 1, &[("internal.segment.bytes", "1024")]), 0);
    let mut issued = Vec::new();
    for _ in 0..5 {
        let (err, pid, _) = init_producer_id(&mut c, None, None);
        assert_eq!(err, 0);
        issued.push(pid);
    }
    let pid = issued[0];
    // Enough batches to roll a few segments.
    let mut offsets = Vec::new();
    for i in 0..30 {
        let v = format!("value-{i:04}-{}", "x".repeat(60));
        let (err, base) = send(&mut c, "idem", idem_batch(pid, 0, i, &[&v]));
        assert_eq!(err, 0);
        offsets.push(base);
    }
    drop(c);
    t.restart();
    let mut c = t.client();
    let v = format!("value-{:04}-{}", 29, "x".repeat(60));
    assert_eq!(send(&mut c, "idem", idem_batch(pid, 0, 29, &[&v])), (0, offsets[29]), "retry after restart");
    assert_eq!(send(&mut c, "idem", idem_batch(pid, 0, 31, &["gap"])).0, 45);
    assert_eq!(send(&mut c, "idem", idem_batch(pid, 0, 30, &["next"])), (0, 30));
    let (err, fresh, _) = init_producer_id(&mut c, None, None);
    assert_eq!(err, 0);
    assert!(fresh > *issued.iter().max().unwrap(), "id {fresh} was handed out before the restart: {issued:?}");
}
