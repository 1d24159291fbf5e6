//! Linearizability of one register under concurrent readers, writers and
//! compare-and-set writers, each client on another node of a 3-node Raft cluster: the
//! recorded history (invocation and response instants, results) must have a
//! linearization, found by a Wing & Gong search with memoization (as Knossos and
//! Porcupine do). A fabricated stale read shows the checker refuses what it must.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use dlog_consensus::{Comparison, ExpectedVersion, MetadataError, MetadataStore, PutOptions, VersionId};
use dlog_core::NodeId;

use crate::cluster::{config, Cluster};

const KEY: &str = "register";

/// The register: its value and version, or absent.
type State = Option<(String, i64)>;

#[derive(Debug, Clone)]
enum Op {
    /// Observed this state.
    Read(State),
    /// Stored `value`; the store named the new version.
    Write { value: String, version: i64 },
    /// Stored `value` if the version was `expected`: `Ok(new version)`, or refused.
    Cas { expected: i64, value: String, outcome: Result<i64, ()> },
}

#[derive(Debug, Clone)]
struct Event {
    invoked: Instant,
    returned: Instant,
    op: Op,
}

/// The state after applying `op` to `state`, if `op` could have happened there.
fn step(state: &State, op: &Op) -> Option<State> {
    let version = state.as_ref().map(|(_, v)| *v);
    match op {
        Op::Read(seen) => (seen == state).then(|| state.clone()),
        Op::Write { value, version: new } => (version < Some(*new)).then(|| Some((value.clone(), *new))),
        Op::Cas { expected, value, outcome: Ok(new) } => {
            (version == Some(*expected) && Some(*new) > version).then(|| Some((value.clone(), *new)))
        }
        Op::Cas { expected, outcome: Err(()), .. } => (version != Some(*expected)).then(|| state.clone()),
    }
}

/// Whether the history has a linearization starting from an absent register.
fn linearizable(history: &[Event]) -> bool {
    assert!(history.len() <= 128, "the search keeps the done set in a u128");
    fn search(h: &[Event], done: u128, state: &State, seen: &mut HashSet<(u128, State)>) -> bool {
        if done.count_ones() as usize == h.len() {
            return true;
        }
        if !seen.insert((done, state.clone())) {
            return false;
        }
        // An operation may come next only if no pending one returned before it began.
        let pending = || h.iter().enumerate().filter(|(i, _)| done & (1u128 << i) == 0);
        let first_return = pending().map(|(_, e)| e.returned).min().expect("something is pending");
        for (i, e) in pending() {
            if e.invoked > first_return {
                continue;
            }
            if let Some(next) = step(state, &e.op) {
                if search(h, done | (1u128 << i), &next, seen) {
                    return true;
                }
            }
        }
        false
    }
    search(history, 0, &None, &mut HashSet::new())
}

#[test]
fn the_checker_refuses_a_stale_read_and_accepts_overlap() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + std::time::Duration::from_millis(ms);
    let write =
        |v: &str, ver, a, b| Event { invoked: at(a), returned: at(b), op: Op::Write { value: v.into(), version: ver } };
    let read = |s: State, a, b| Event { invoked: at(a), returned: at(b), op: Op::Read(s) };
    // w(x) completes, then a read that begins later sees nothing: not linearizable
    let stale = [write("x", 1, 0, 10), read(None, 20, 30)];
    assert!(!linearizable(&stale));
    // the same read overlapping the write may see either
    assert!(linearizable(&[write("x", 1, 0, 10), read(None, 5, 30)]));
    assert!(linearizable(&[write("x", 1, 0, 10), read(Some(("x".into(), 1)), 5, 30)]));
    // a CAS that succeeded against a version nobody wrote is impossible
    let cas =
        Event { invoked: at(20), returned: at(30), op: Op::Cas { expected: 7, value: "y".into(), outcome: Ok(8) } };
    assert!(!linearizable(&[write("x", 1, 0, 10), cas]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_writers_on_three_nodes_are_linearizable() {
    let cluster = Cluster::start(3, config()).await;
    let clients = 4;
    let ops_per_client = 14;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let store: Arc<dyn MetadataStore> = cluster.node(NodeId(c % 3 + 1));
        tasks.push(tokio::spawn(async move {
            let mut events = Vec::new();
            let mut known: Option<i64> = None;
            for i in 0..ops_per_client {
                let value = format!("c{c}-{i}");
                let invoked = Instant::now();
                let op = match (i + c) % 3 {
                    0 => {
                        let e = store.get(KEY, Comparison::Equal).await.expect("read");
                        let state = e.map(|e| (String::from_utf8_lossy(&e.value).into_owned(), e.stat.version_id.0));
                        known = state.as_ref().map(|(_, v)| *v);
                        Op::Read(state)
                    }
                    1 => {
                        let (_, stat) =
                            store.put(KEY, Bytes::from(value.clone()), PutOptions::default()).await.expect("write");
                        known = Some(stat.version_id.0);
                        Op::Write { value, version: stat.version_id.0 }
                    }
                    _ => {
                        let expected = known.unwrap_or(-1);
                        let options = PutOptions::expect(ExpectedVersion::Is(VersionId(expected)));
                        let outcome = match store.put(KEY, Bytes::from(value.clone()), options).await {
                            Ok((_, stat)) => {
                                known = Some(stat.version_id.0);
                                Ok(stat.version_id.0)
                            }
                            Err(MetadataError::UnexpectedVersion { actual, .. }) => {
                                known = actual.map(|v| v.0);
                                Err(())
                            }
                            Err(e) => panic!("cas: {e}"),
                        };
                        Op::Cas { expected, value, outcome }
                    }
                };
                events.push(Event { invoked, returned: Instant::now(), op });
            }
            events
        }));
    }
    let mut history = Vec::new();
    for t in tasks {
        history.extend(t.await.expect("client task"));
    }
    let successes = history.iter().filter(|e| matches!(e.op, Op::Cas { outcome: Ok(_), .. })).count();
    let refusals = history.iter().filter(|e| matches!(e.op, Op::Cas { outcome: Err(()), .. })).count();
    println!("{} operations, {successes} CAS succeeded, {refusals} refused", history.len());
    assert!(linearizable(&history), "no linearization of {history:#?}");
}
