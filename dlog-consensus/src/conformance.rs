//! The conformance suite of [`MetadataStore`]: every implementation must pass it.
//!
//! Each check is a `pub async fn` taking a fresh, empty store and panicking on the first
//! broken promise, so a test can run one alone. [`run_all`] runs every check of
//! [`CHECKS`], each against a new store from the caller's factory and in its own task,
//! and panics at the end naming every check that failed (or timed out).
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use dlog_consensus::{conformance, LocalStore, LocalStoreConfig, SystemClock};
//! # async fn demo() {
//! conformance::run_all(|| async { LocalStore::start(LocalStoreConfig::default(), Arc::new(SystemClock)) }).await;
//! # }
//! ```
//!
//! The checks use real time where the contract is about time (session expiry) and
//! bounded waits everywhere: a check never hangs longer than [`CHECK_TIMEOUT`]. They
//! need a multi-threaded tokio runtime to exercise concurrent writers for real.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::kv::{Comparison, Entry, ExpectedVersion, Notification, SessionId, VersionId};
use crate::store::{MetadataError, MetadataStore, PutOptions, Watch, WatchEvent};

/// The longest a check may run.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a check waits for one notification.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Above every key the checks write.
const END: &str = "\u{10FFFF}";

/// What a check returns: a boxed future, so checks fit in one table.
pub type CheckFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One named check of the suite.
#[derive(Clone, Copy)]
pub struct Check {
    pub name: &'static str,
    pub run: fn(Arc<dyn MetadataStore>) -> CheckFuture,
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        /// Every check, in the order [`run_all`] runs them.
        pub const CHECKS: &[Check] = &[$(Check { name: stringify!($name), run: |store| Box::pin($name(store)) }),*];
    };
}

checks![
    put_get_round_trip,
    invalid_arguments_are_refused,
    cas_put,
    cas_delete,
    delete_range,
    get_comparisons,
    list_and_range_scan,
    sequential_keys,
    ephemeral_keys_end_with_their_session,
    unknown_sessions_are_refused,
    sessions_expire_without_keep_alive,
    watch_sees_its_prefix_in_order,
    concurrent_cas_is_linearizable,
];

/// Runs every check of [`CHECKS`], each on a store fresh from `make`, and panics naming
/// the checks that failed.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: MetadataStore + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    run_checks(make, CHECKS).await;
}

/// Runs `checks` as [`run_all`] runs all of them.
pub async fn run_checks<S, F, Fut>(make: F, checks: &[Check])
where
    S: MetadataStore + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let mut failures = Vec::new();
    for check in checks {
        let store: Arc<dyn MetadataStore> = Arc::new(make().await);
        // In a task of its own, so that a panic is caught and reported by name.
        let mut task = tokio::spawn((check.run)(store));
        let failure = match tokio::time::timeout(CHECK_TIMEOUT, &mut task).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) if e.is_panic() => Some(panic_message(e.into_panic())),
            Ok(Err(e)) => Some(format!("task ended: {e}")),
            Err(_) => {
                task.abort();
                Some(format!("timed out after {CHECK_TIMEOUT:?}"))
            }
        };
        match failure {
            None => eprintln!("conformance check {} ... ok", check.name),
            Some(message) => {
                eprintln!("conformance check {} ... FAILED: {message}", check.name);
                failures.push(format!("{}: {message}", check.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} MetadataStore conformance checks failed:\n{}",
        failures.len(),
        checks.len(),
        failures.join("\n")
    );
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload.downcast::<&str>().map_or_else(|_| "panicked".to_string(), |s| s.to_string()),
    }
}

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn put(store: &Arc<dyn MetadataStore>, key: &str, value: &str) -> crate::kv::Stat {
    let (written, stat) =
        store.put(key, bytes(value), PutOptions::default()).await.unwrap_or_else(|e| panic!("put {key:?}: {e}"));
    assert_eq!(written, key);
    stat
}

async fn get(store: &Arc<dyn MetadataStore>, key: &str, comparison: Comparison) -> Option<Entry> {
    store.get(key, comparison).await.unwrap_or_else(|e| panic!("get {key:?} {comparison:?}: {e}"))
}

async fn found_key(store: &Arc<dyn MetadataStore>, key: &str, comparison: Comparison) -> Option<String> {
    get(store, key, comparison).await.map(|e| e.key)
}

async fn list(store: &Arc<dyn MetadataStore>, start: &str, end: &str) -> Vec<String> {
    store.list(start, end).await.unwrap_or_else(|e| panic!("list [{start:?}, {end:?}): {e}"))
}

async fn next_notification(watch: &mut Watch) -> Notification {
    match tokio::time::timeout(EVENT_TIMEOUT, watch.recv()).await {
        Ok(Some(WatchEvent::Notification(n))) => n,
        Ok(other) => panic!("watch of {:?}: expected a notification, got {other:?}", watch.prefix()),
        Err(_) => panic!("watch of {:?}: no notification within {EVENT_TIMEOUT:?}", watch.prefix()),
    }
}

fn invalid(result: Result<impl std::fmt::Debug, MetadataError>, what: &str) {
    match result {
        Err(MetadataError::InvalidArgument(_)) => {}
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// A put returns the key and a fresh stat that a get returns with the value; a put
/// over it raises the version and the modification count and keeps the creation time.
pub async fn put_get_round_trip(store: Arc<dyn MetadataStore>) {
    let first = put(&store, "a", "one").await;
    assert_eq!(first.modifications_count, 0);
    assert_eq!(first.created_ms, first.modified_ms);
    assert_eq!(first.session, None);
    assert_eq!(
        get(&store, "a", Comparison::Equal).await,
        Some(Entry { key: "a".into(), value: bytes("one"), stat: first })
    );

    let second = put(&store, "a", "two").await;
    assert!(second.version_id > first.version_id, "{second:?} after {first:?}");
    assert_eq!(second.modifications_count, 1);
    assert_eq!(second.created_ms, first.created_ms);
    assert!(second.modified_ms >= first.modified_ms);
    assert_eq!(
        get(&store, "a", Comparison::Equal).await,
        Some(Entry { key: "a".into(), value: bytes("two"), stat: second })
    );

    // Version ids increase across the whole store, not per key.
    let other = put(&store, "b", "").await;
    assert!(other.version_id > second.version_id);
    assert_eq!(other.modifications_count, 0);
    assert_eq!(get(&store, "b", Comparison::Equal).await.map(|e| e.value), Some(Bytes::new()));
    assert_eq!(get(&store, "c", Comparison::Equal).await, None);

    // A deleted key put again is a new key.
    assert!(store.delete("a", ExpectedVersion::Any).await.unwrap());
    let again = put(&store, "a", "three").await;
    assert_eq!(again.modifications_count, 0);
    assert!(again.version_id > other.version_id);
}

/// Empty and too long keys, too large values, impossible session timeouts and a
/// sequential put with an expectation are refused, and change nothing.
pub async fn invalid_arguments_are_refused(store: Arc<dyn MetadataStore>) {
    invalid(store.put("", bytes("v"), PutOptions::default()).await, "put of an empty key");
    let longest = "k".repeat(crate::kv::KEY_BYTES_MAX);
    invalid(store.put(&format!("{longest}k"), bytes("v"), PutOptions::default()).await, "put of a too long key");
    let too_large = Bytes::from(vec![0u8; crate::kv::VALUE_BYTES_MAX + 1]);
    invalid(store.put("k", too_large, PutOptions::default()).await, "put of a too large value");
    let sequential_cas = PutOptions { expected: ExpectedVersion::NotExists, ..PutOptions::sequential() };
    invalid(store.put("k", bytes("v"), sequential_cas).await, "sequential put with an expectation");
    invalid(store.delete("", ExpectedVersion::Any).await, "delete of an empty key");
    invalid(store.create_session(Duration::ZERO, "zero").await, "session with a zero timeout");
    invalid(store.create_session(Duration::from_secs(24 * 3600), "day").await, "session with a day's timeout");
    assert_eq!(list(&store, "", END).await, Vec::<String>::new(), "a refused put wrote something");

    put(&store, &longest, "v").await;
    assert_eq!(list(&store, "", END).await, vec![longest]);
}

/// Puts conditioned on absence or on a version succeed only when it holds; a failed one
/// reports the actual version and changes nothing.
pub async fn cas_put(store: Arc<dyn MetadataStore>) {
    let (_, v1) = store.put("k", bytes("1"), PutOptions::expect(ExpectedVersion::NotExists)).await.unwrap();
    let err = store.put("k", bytes("x"), PutOptions::expect(ExpectedVersion::NotExists)).await.unwrap_err();
    assert_eq!(
        err,
        MetadataError::UnexpectedVersion {
            key: "k".into(),
            expected: ExpectedVersion::NotExists,
            actual: Some(v1.version_id)
        }
    );

    let (_, v2) = store.put("k", bytes("2"), PutOptions::expect(ExpectedVersion::Is(v1.version_id))).await.unwrap();
    assert_eq!(v2.modifications_count, 1);
    let stale = ExpectedVersion::Is(v1.version_id);
    let err = store.put("k", bytes("x"), PutOptions::expect(stale)).await.unwrap_err();
    assert_eq!(err, MetadataError::UnexpectedVersion { key: "k".into(), expected: stale, actual: Some(v2.version_id) });
    assert_eq!(get(&store, "k", Comparison::Equal).await, Some(Entry { key: "k".into(), value: bytes("2"), stat: v2 }));

    let expected = ExpectedVersion::Is(v2.version_id);
    let err = store.put("missing", bytes("x"), PutOptions::expect(expected)).await.unwrap_err();
    assert_eq!(err, MetadataError::UnexpectedVersion { key: "missing".into(), expected, actual: None });
    assert_eq!(get(&store, "missing", Comparison::Equal).await, None);

    let (_, v3) = store.put("k", bytes("3"), PutOptions::expect(ExpectedVersion::Any)).await.unwrap();
    assert!(v3.version_id > v2.version_id);
}

/// Deletes honour expectations; deleting an absent key is `Ok(false)`.
pub async fn cas_delete(store: Arc<dyn MetadataStore>) {
    assert_eq!(store.delete("missing", ExpectedVersion::Any).await, Ok(false));
    assert_eq!(store.delete("missing", ExpectedVersion::NotExists).await, Ok(false));
    let any_version = ExpectedVersion::Is(VersionId(0));
    assert_eq!(
        store.delete("missing", any_version).await,
        Err(MetadataError::UnexpectedVersion { key: "missing".into(), expected: any_version, actual: None })
    );

    let v1 = put(&store, "k", "1").await;
    let v2 = put(&store, "k", "2").await;
    let stale = ExpectedVersion::Is(v1.version_id);
    assert_eq!(
        store.delete("k", stale).await,
        Err(MetadataError::UnexpectedVersion { key: "k".into(), expected: stale, actual: Some(v2.version_id) })
    );
    assert_eq!(
        store.delete("k", ExpectedVersion::NotExists).await,
        Err(MetadataError::UnexpectedVersion {
            key: "k".into(),
            expected: ExpectedVersion::NotExists,
            actual: Some(v2.version_id)
        })
    );
    assert_eq!(get(&store, "k", Comparison::Equal).await.map(|e| e.stat), Some(v2), "a refused delete deleted");

    assert_eq!(store.delete("k", ExpectedVersion::Is(v2.version_id)).await, Ok(true));
    assert_eq!(get(&store, "k", Comparison::Equal).await, None);
    assert_eq!(store.delete("k", ExpectedVersion::Any).await, Ok(false));
}

/// `delete_range` deletes exactly `[start, end)`; an empty range deletes nothing.
pub async fn delete_range(store: Arc<dyn MetadataStore>) {
    for key in ["a", "b", "b/1", "b/2", "c", "d"] {
        put(&store, key, key).await;
    }
    store.delete_range("b", "c").await.unwrap();
    assert_eq!(list(&store, "", END).await, ["a", "c", "d"]);
    store.delete_range("d", "c").await.unwrap();
    store.delete_range("c", "c").await.unwrap();
    store.delete_range("x", "z").await.unwrap();
    assert_eq!(list(&store, "", END).await, ["a", "c", "d"]);
    store.delete_range("", "c").await.unwrap();
    assert_eq!(list(&store, "", END).await, ["c", "d"]);
    store.delete_range("c", END).await.unwrap();
    assert_eq!(list(&store, "", END).await, Vec::<String>::new());
}

/// The five comparisons of a get, on keys present, between and beyond the stored ones.
pub async fn get_comparisons(store: Arc<dyn MetadataStore>) {
    for key in ["b", "d", "f"] {
        put(&store, key, key).await;
    }
    let cases: &[(&str, Comparison, Option<&str>)] = &[
        ("d", Comparison::Equal, Some("d")),
        ("c", Comparison::Equal, None),
        ("d", Comparison::Floor, Some("d")),
        ("e", Comparison::Floor, Some("d")),
        ("z", Comparison::Floor, Some("f")),
        ("a", Comparison::Floor, None),
        ("d", Comparison::Ceiling, Some("d")),
        ("c", Comparison::Ceiling, Some("d")),
        ("a", Comparison::Ceiling, Some("b")),
        ("g", Comparison::Ceiling, None),
        ("d", Comparison::Lower, Some("b")),
        ("e", Comparison::Lower, Some("d")),
        ("b", Comparison::Lower, None),
        ("a", Comparison::Lower, None),
        ("d", Comparison::Higher, Some("f")),
        ("c", Comparison::Higher, Some("d")),
        ("f", Comparison::Higher, None),
        ("a", Comparison::Higher, Some("b")),
    ];
    for &(key, comparison, expected) in cases {
        assert_eq!(found_key(&store, key, comparison).await.as_deref(), expected, "get {key:?} {comparison:?}");
    }
    // The entry found is the found key's, value and stat.
    let d = get(&store, "d", Comparison::Equal).await.unwrap();
    assert_eq!(get(&store, "e", Comparison::Floor).await, Some(d.clone()));
    assert_eq!(get(&store, "c", Comparison::Higher).await, Some(d));
}

/// `list` and `range_scan` return `[start, end)` in byte order ('/' sorts before '0':
/// natural, not hierarchical, order).
pub async fn list_and_range_scan(store: Arc<dyn MetadataStore>) {
    for key in ["b", "a/b", "a0", "a", "a/b/c", "c", "b/x"] {
        put(&store, key, &format!("value of {key}")).await;
    }
    assert_eq!(list(&store, "", END).await, ["a", "a/b", "a/b/c", "a0", "b", "b/x", "c"]);
    assert_eq!(list(&store, "a/", "b").await, ["a/b", "a/b/c", "a0"]);
    assert_eq!(list(&store, "a/b", "a0").await, ["a/b", "a/b/c"]);
    assert_eq!(list(&store, "b", "b").await, Vec::<String>::new());
    assert_eq!(list(&store, "c", "a").await, Vec::<String>::new());

    let scanned = store.range_scan("a/", "b").await.unwrap();
    let mut expected = Vec::new();
    for key in ["a/b", "a/b/c", "a0"] {
        expected.push(get(&store, key, Comparison::Equal).await.unwrap());
    }
    assert_eq!(scanned, expected);
    assert_eq!(scanned[2].value, bytes("value of a0"));
    assert_eq!(store.range_scan("c", "a").await.unwrap(), Vec::new());
}

/// Sequential puts create `{prefix}-{n:020}` with n = 1, 2, 3… per prefix.
pub async fn sequential_keys(store: Arc<dyn MetadataStore>) {
    let mut last: Option<(String, VersionId)> = None;
    for n in 1..=3 {
        let (key, stat) = store.put("seq/x", bytes(&n.to_string()), PutOptions::sequential()).await.unwrap();
        assert_eq!(key, format!("seq/x-{n:020}"));
        assert_eq!(stat.modifications_count, 0);
        if let Some((last_key, last_version)) = &last {
            assert!(key > *last_key && stat.version_id > *last_version);
        }
        last = Some((key, stat.version_id));
    }
    let (other, _) = store.put("seq/y", bytes("1"), PutOptions::sequential()).await.unwrap();
    assert_eq!(other, "seq/y-00000000000000000001");
    assert_eq!(get(&store, "seq/x-00000000000000000002", Comparison::Equal).await.map(|e| e.value), Some(bytes("2")));
    assert_eq!(list(&store, "seq/", "seq0").await.len(), 4);
}

/// Ephemeral keys belong to their session until a put says otherwise, and go when it
/// is closed; a closed session is refused everywhere.
pub async fn ephemeral_keys_end_with_their_session(store: Arc<dyn MetadataStore>) {
    let session = store.create_session(Duration::from_secs(30), "conformance").await.unwrap();
    let (_, a) = store.put("eph/a", bytes("a"), PutOptions::ephemeral(session)).await.unwrap();
    assert_eq!(a.session, Some(session));
    put(&store, "eph/b", "b").await;
    // A persistent put over an ephemeral key makes it persistent...
    store.put("eph/c", bytes("c"), PutOptions::ephemeral(session)).await.unwrap();
    assert_eq!(put(&store, "eph/c", "c").await.session, None);
    // ...and an ephemeral put over a persistent key makes it ephemeral.
    put(&store, "eph/d", "d").await;
    let (_, d) = store.put("eph/d", bytes("d"), PutOptions::ephemeral(session)).await.unwrap();
    assert_eq!((d.session, d.modifications_count), (Some(session), 1));
    assert_eq!(get(&store, "eph/a", Comparison::Equal).await.map(|e| e.stat.session), Some(Some(session)));

    store.keep_alive(session).await.unwrap();
    store.close_session(session).await.unwrap();
    assert_eq!(list(&store, "eph/", "eph0").await, ["eph/b", "eph/c"]);
    assert_eq!(store.keep_alive(session).await, Err(MetadataError::SessionNotFound(session)));
    assert_eq!(
        store.put("eph/e", bytes("e"), PutOptions::ephemeral(session)).await,
        Err(MetadataError::SessionNotFound(session))
    );
    assert_eq!(store.close_session(session).await, Err(MetadataError::SessionNotFound(session)));
    assert_eq!(list(&store, "eph/", "eph0").await, ["eph/b", "eph/c"]);
}

/// A session that was never created is refused by puts, keep-alives and closes.
pub async fn unknown_sessions_are_refused(store: Arc<dyn MetadataStore>) {
    let real = store.create_session(Duration::from_secs(30), "conformance").await.unwrap();
    let unknown = SessionId(real.0.wrapping_add(1_000_003));
    assert_eq!(
        store.put("k", bytes("v"), PutOptions::ephemeral(unknown)).await,
        Err(MetadataError::SessionNotFound(unknown))
    );
    assert_eq!(store.keep_alive(unknown).await, Err(MetadataError::SessionNotFound(unknown)));
    assert_eq!(store.close_session(unknown).await, Err(MetadataError::SessionNotFound(unknown)));
    assert_eq!(get(&store, "k", Comparison::Equal).await, None);
    store.keep_alive(real).await.unwrap();
}

/// Keep-alives hold a session across several timeouts; without them it expires, its
/// ephemeral keys are deleted (and notified) and it is refused.
pub async fn sessions_expire_without_keep_alive(store: Arc<dyn MetadataStore>) {
    let timeout = Duration::from_millis(500);
    let session = store.create_session(timeout, "conformance-expiry").await.unwrap();
    store.put("exp/a", bytes("a"), PutOptions::ephemeral(session)).await.unwrap();
    put(&store, "exp/persistent", "p").await;
    let mut watch = store.watch("exp/").await.unwrap();

    let started = tokio::time::Instant::now();
    while started.elapsed() < 3 * timeout {
        tokio::time::sleep(timeout / 5).await;
        store.keep_alive(session).await.expect("a session kept alive stays");
        assert!(get(&store, "exp/a", Comparison::Equal).await.is_some(), "ephemeral key of a live session gone");
    }

    let stopped = tokio::time::Instant::now();
    assert_eq!(next_notification(&mut watch).await, Notification::KeyDeleted { key: "exp/a".into() });
    assert!(stopped.elapsed() >= timeout.mul_f64(0.8), "expired {:?} after the last keep-alive", stopped.elapsed());
    assert_eq!(get(&store, "exp/a", Comparison::Equal).await, None);
    assert!(get(&store, "exp/persistent", Comparison::Equal).await.is_some());
    assert_eq!(store.keep_alive(session).await, Err(MetadataError::SessionNotFound(session)));
}

/// A watch gets the creations, modifications, deletions and range deletions of its
/// prefix, in order, and nothing else.
pub async fn watch_sees_its_prefix_in_order(store: Arc<dyn MetadataStore>) {
    let mut w = store.watch("w/").await.unwrap();
    let mut x = store.watch("x/").await.unwrap();

    let a1 = put(&store, "w/a", "1").await;
    let other = put(&store, "x/other", "o").await;
    let a2 = put(&store, "w/a", "2").await;
    put(&store, "w", "not under w/").await;
    let b1 = put(&store, "w/b", "1").await;
    assert!(store.delete("w/a", ExpectedVersion::Any).await.unwrap());
    store.delete_range("x/", "x0").await.unwrap();
    store.delete_range("w/b", "w/c").await.unwrap();
    store.delete_range("v", "x").await.unwrap();
    let w_end = put(&store, "w/end", "").await;
    let x_end = put(&store, "x/end", "").await;

    let created =
        |key: &str, stat: crate::kv::Stat| Notification::KeyCreated { key: key.into(), version_id: stat.version_id };
    let range = |start: &str, end: &str| Notification::KeyRangeDeleted { start: start.into(), end: end.into() };
    let expected_w = [
        created("w/a", a1),
        Notification::KeyModified { key: "w/a".into(), version_id: a2.version_id },
        created("w/b", b1),
        Notification::KeyDeleted { key: "w/a".into() },
        range("w/b", "w/c"),
        range("v", "x"),
        created("w/end", w_end),
    ];
    for expected in expected_w {
        assert_eq!(next_notification(&mut w).await, expected);
    }
    for expected in [created("x/other", other), range("x/", "x0"), created("x/end", x_end)] {
        assert_eq!(next_notification(&mut x).await, expected);
    }
}

/// Eight writers each add one 50 times to a counter by compare-and-set, retrying on
/// `UnexpectedVersion`: the counter ends at 400, and the successful sets form a single
/// chain of versions (no two succeeded from the same version, none is lost).
pub async fn concurrent_cas_is_linearizable(store: Arc<dyn MetadataStore>) {
    const WRITERS: u64 = 8;
    const INCREMENTS: u64 = 50;
    const ATTEMPTS_MAX: u64 = 100_000;

    let (_, initial) = store.put("counter", bytes("0"), PutOptions::expect(ExpectedVersion::NotExists)).await.unwrap();
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for _ in 0..ATTEMPTS_MAX {
                if done.len() as u64 == INCREMENTS {
                    return done;
                }
                let entry = get(&store, "counter", Comparison::Equal).await.expect("the counter exists");
                let n: u64 = std::str::from_utf8(&entry.value).unwrap().parse().unwrap();
                // Let the others run between the read and the write.
                tokio::task::yield_now().await;
                let expected = PutOptions::expect(ExpectedVersion::Is(entry.stat.version_id));
                match store.put("counter", bytes(&(n + 1).to_string()), expected).await {
                    Ok((_, stat)) => done.push((entry.stat.version_id, stat.version_id, n + 1)),
                    Err(MetadataError::UnexpectedVersion { .. }) => {}
                    Err(e) => panic!("CAS increment failed: {e}"),
                }
            }
            panic!("{INCREMENTS} increments took more than {ATTEMPTS_MAX} attempts");
        }));
    }
    let mut successor: BTreeMap<VersionId, (VersionId, u64)> = BTreeMap::new();
    for writer in writers {
        for (old, new, value) in writer.await.expect("writer panicked") {
            if let Some(other) = successor.insert(old, (new, value)) {
                panic!("two CAS succeeded from version {old}: to {new} and to {}", other.0);
            }
        }
    }
    assert_eq!(successor.len() as u64, WRITERS * INCREMENTS);
    let mut version = initial.version_id;
    for n in 1..=WRITERS * INCREMENTS {
        let (next, value) = successor.remove(&version).unwrap_or_else(|| panic!("the chain breaks after {n} sets"));
        assert_eq!(value, n, "set number {n} wrote {value}");
        assert!(next > version);
        version = next;
    }
    let last = get(&store, "counter", Comparison::Equal).await.unwrap();
    assert_eq!(last.value, bytes(&(WRITERS * INCREMENTS).to_string()));
    assert_eq!(last.stat.version_id, version);
    assert_eq!(last.stat.modifications_count, (WRITERS * INCREMENTS) as i64);
}
