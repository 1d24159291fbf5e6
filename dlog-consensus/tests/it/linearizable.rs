//! Linearizability of one register under concurrent readers, writers and
//! compare-and-set writers, each client on another node of a 3-node Raft cluster: the
//! recorded history (invocation and response instants, results) must have a
//! linearization, found by a Wing & Gong search with memoization (as Knossos and
//! Porcupine do). A fabricated stale read shows the checker refuses what it must.
//!
//! The checker also serves the simulation (`sim`), whose histories hold operations of
//! unknown outcome (a timeout, a crash): those may take effect or not, any time after
//! they began.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use dlog_consensus::{Comparison, ExpectedVersion, MetadataError, MetadataStore, PutOptions, VersionId};
use dlog_core::NodeId;

use crate::cluster::{config, Cluster};

const KEY: &str = "register";

/// The register: its value and version, or absent. The version is `None` after a write
/// whose outcome is unknown, until an operation observes it: the version that write got
/// is a free variable, bound by the first observation (versions are unique store-wide,
/// so which one it is does not matter).
pub type State = Option<(String, Option<i64>)>;

/// An observed register.
pub type Seen = Option<(String, i64)>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    /// Observed this state.
    Read(Seen),
    /// Stored `value`; the store named the new version (`None`: the write's outcome is
    /// unknown and nobody saw its value).
    Write { value: String, version: Option<i64> },
    /// Stored `value` if the version was `expected`.
    Cas { expected: i64, value: String, outcome: CasOutcome },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CasOutcome {
    /// Stored, with this new version.
    Stored(i64),
    /// Refused: the version was `actual` (`None`: no such key).
    Refused { actual: Option<i64> },
    /// The store did not answer (timeout, crash): it may have happened or not.
    Unknown,
}

/// One operation of a history: `returned` is `None` when its outcome is unknown, in
/// which case it may take effect at any point after `invoked`, or never.
#[derive(Debug, Clone)]
pub struct Event {
    pub invoked: Instant,
    pub returned: Option<Instant>,
    pub op: Op,
}

/// The state after applying `op` to `state`, if `op` could have happened there.
fn step(state: &State, op: &Op) -> Option<State> {
    // The version the register has, binding an unknown one to `observed`.
    let bind = |observed: i64| -> Option<State> {
        match state {
            Some((value, None)) => Some(Some((value.clone(), Some(observed)))),
            Some((_, Some(v))) if *v == observed => Some(state.clone()),
            _ => None,
        }
    };
    match op {
        Op::Read(None) => state.is_none().then_some(None),
        Op::Read(Some((seen, version))) => match state {
            Some((value, _)) if value == seen => bind(*version),
            _ => None,
        },
        // Versions grow (an unknown one is taken to be lower).
        Op::Write { value, version: Some(new) } => {
            let old = state.as_ref().and_then(|(_, v)| *v);
            (old < Some(*new)).then(|| Some((value.clone(), Some(*new))))
        }
        Op::Write { value, version: None } => Some(Some((value.clone(), None))),
        Op::Cas { expected, value, outcome: CasOutcome::Stored(new) } => {
            (*new > *expected && bind(*expected).is_some()).then(|| Some((value.clone(), Some(*new))))
        }
        Op::Cas { expected, outcome: CasOutcome::Refused { actual }, .. } => match actual {
            Some(a) if a == expected => None,
            Some(a) => bind(*a),
            None => state.is_none().then_some(None),
        },
        Op::Cas { expected, value, outcome: CasOutcome::Unknown } => {
            bind(*expected).map(|_| Some((value.clone(), None)))
        }
    }
}

/// Fills in what later reads tell of operations whose outcome is unknown: a value is
/// written once, so a read of it names the version the write got.
pub fn resolve_unknown(history: &mut [Event]) {
    let seen: std::collections::BTreeMap<String, i64> = history
        .iter()
        .filter_map(|e| match &e.op {
            Op::Read(Some((value, version))) => Some((value.clone(), *version)),
            _ => None,
        })
        .collect();
    for e in history.iter_mut().filter(|e| e.returned.is_none()) {
        match &mut e.op {
            Op::Write { value, version } => {
                if let Some(&v) = seen.get(value.as_str()) {
                    *version = Some(v);
                }
            }
            Op::Cas { value, outcome, .. } => {
                if let Some(&v) = seen.get(value.as_str()) {
                    *outcome = CasOutcome::Stored(v);
                }
            }
            Op::Read(_) => {}
        }
    }
}

/// Whether the history of one register has a linearization starting from an absent
/// register. Operations whose outcome is unknown may be left out.
pub fn linearizable(history: &[Event]) -> bool {
    assert!(history.len() <= 128, "the search keeps the done set in a u128");
    fn search(h: &[Event], done: u128, state: &State, seen: &mut HashSet<(u128, State)>) -> bool {
        let pending = || h.iter().enumerate().filter(|(i, _)| done & (1u128 << i) == 0);
        // An operation may come next only if no pending one returned before it began.
        let Some(first_return) = pending().filter_map(|(_, e)| e.returned).min() else {
            return true; // every operation that returned is placed
        };
        if !seen.insert((done, state.clone())) {
            return false;
        }
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
    let write = |v: &str, ver, a, b| Event {
        invoked: at(a),
        returned: Some(at(b)),
        op: Op::Write { value: v.into(), version: Some(ver) },
    };
    let read = |s: Seen, a, b| Event { invoked: at(a), returned: Some(at(b)), op: Op::Read(s) };
    // w(x) completes, then a read that begins later sees nothing: not linearizable
    let stale = [write("x", 1, 0, 10), read(None, 20, 30)];
    assert!(!linearizable(&stale));
    // the same read overlapping the write may see either
    assert!(linearizable(&[write("x", 1, 0, 10), read(None, 5, 30)]));
    assert!(linearizable(&[write("x", 1, 0, 10), read(Some(("x".into(), 1)), 5, 30)]));
    // a CAS that succeeded against a version nobody wrote is impossible
    let cas = |expected, outcome, a, b: Option<u64>| Event {
        invoked: at(a),
        returned: b.map(at),
        op: Op::Cas { expected, value: "y".into(), outcome },
    };
    assert!(!linearizable(&[write("x", 1, 0, 10), cas(7, CasOutcome::Stored(8), 20, Some(30))]));

    // A write of unknown outcome may have happened, or not...
    let unknown =
        |v: &str, a| Event { invoked: at(a), returned: None, op: Op::Write { value: v.into(), version: None } };
    assert!(linearizable(&[unknown("x", 0), read(None, 20, 30)]));
    let mut seen_later = [unknown("x", 0), read(None, 20, 30), read(Some(("x".into(), 4)), 40, 50)];
    resolve_unknown(&mut seen_later);
    assert!(linearizable(&seen_later), "it took effect between the reads");
    // ...but not both before a read that missed it and after one that saw it.
    let mut flickers = [unknown("x", 0), read(Some(("x".into(), 4)), 20, 30), read(None, 40, 50)];
    resolve_unknown(&mut flickers);
    assert!(!linearizable(&flickers));
    // An unseen write of unknown outcome hides the version a CAS expected.
    let refused = CasOutcome::Refused { actual: Some(2) };
    let hidden = [write("x", 1, 0, 10), unknown("z", 20), cas(1, refused, 30, Some(40))];
    assert!(linearizable(&hidden));
    assert!(!linearizable(&[hidden[0].clone(), hidden[2].clone()]));
    // ...and the version it got is the one a refusal then names, and no other.
    let named = [hidden[0].clone(), hidden[1].clone(), hidden[2].clone(), cas(2, CasOutcome::Stored(5), 50, Some(60))];
    assert!(linearizable(&named));
    let other = [hidden[0].clone(), hidden[1].clone(), hidden[2].clone(), cas(3, CasOutcome::Stored(5), 50, Some(60))];
    assert!(!linearizable(&other));
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
                        let seen = e.map(|e| (String::from_utf8_lossy(&e.value).into_owned(), e.stat.version_id.0));
                        known = seen.as_ref().map(|(_, v)| *v);
                        Op::Read(seen)
                    }
                    1 => {
                        let (_, stat) =
                            store.put(KEY, Bytes::from(value.clone()), PutOptions::default()).await.expect("write");
                        known = Some(stat.version_id.0);
                        Op::Write { value, version: Some(stat.version_id.0) }
                    }
                    _ => {
                        let expected = known.unwrap_or(-1);
                        let options = PutOptions::expect(ExpectedVersion::Is(VersionId(expected)));
                        let outcome = match store.put(KEY, Bytes::from(value.clone()), options).await {
                            Ok((_, stat)) => {
                                known = Some(stat.version_id.0);
                                CasOutcome::Stored(stat.version_id.0)
                            }
                            Err(MetadataError::UnexpectedVersion { actual, .. }) => {
                                known = actual.map(|v| v.0);
                                CasOutcome::Refused { actual: known }
                            }
                            Err(e) => panic!("cas: {e}"),
                        };
                        Op::Cas { expected, value, outcome }
                    }
                };
                events.push(Event { invoked, returned: Some(Instant::now()), op });
            }
            events
        }));
    }
    let mut history = Vec::new();
    for t in tasks {
        history.extend(t.await.expect("client task"));
    }
    let successes = history.iter().filter(|e| matches!(e.op, Op::Cas { outcome: CasOutcome::Stored(_), .. })).count();
    let refusals =
        history.iter().filter(|e| matches!(e.op, Op::Cas { outcome: CasOutcome::Refused { .. }, .. })).count();
    println!("{} operations, {successes} CAS succeeded, {refusals} refused", history.len());
    assert!(linearizable(&history), "no linearization of {history:#?}");
}
