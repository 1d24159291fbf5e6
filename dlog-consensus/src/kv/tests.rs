use proptest::prelude::*;

use super::*;

const T0: i64 = 1_000;

/// A put, built with struct update syntax (which enum variants lack).
#[derive(Clone)]
struct P {
    key: String,
    value: Bytes,
    expected: ExpectedVersion,
    session: Option<SessionId>,
    sequential: bool,
    now_ms: i64,
}

impl P {
    fn new(key: &str, value: &str, now_ms: i64) -> P {
        P {
            key: key.to_string(),
            value: Bytes::copy_from_slice(value.as_bytes()),
            expected: ExpectedVersion::Any,
            session: None,
            sequential: false,
            now_ms,
        }
    }

    fn cmd(self) -> Command {
        let P { key, value, expected, session, sequential, now_ms } = self;
        Command::Put { key, value, expected, session, sequential, now_ms }
    }
}

fn put_cmd(key: &str, value: &str, now_ms: i64) -> Command {
    P::new(key, value, now_ms).cmd()
}

fn ok(state: &mut KvState, cmd: Command) -> (CommandOutcome, Vec<Notification>) {
    let (result, notifications) = state.apply(cmd.clone());
    let outcome = result.unwrap_or_else(|e| panic!("{cmd:?} failed: {e}"));
    state.validate().unwrap();
    (outcome, notifications)
}

fn put(state: &mut KvState, key: &str, value: &str, now_ms: i64) -> Stat {
    match ok(state, put_cmd(key, value, now_ms)).0 {
        CommandOutcome::Put { stat, .. } => stat,
        other => panic!("{other:?}"),
    }
}

fn session(state: &mut KvState, timeout_ms: u64, now_ms: i64) -> SessionId {
    match ok(state, Command::CreateSession { timeout_ms, identity: "test".into(), now_ms }).0 {
        CommandOutcome::SessionCreated { session } => session,
        other => panic!("{other:?}"),
    }
}

fn ephemeral(key: &str, session: SessionId, now_ms: i64) -> Command {
    P { session: Some(session), ..P::new(key, "e", now_ms) }.cmd()
}

fn sequential(prefix: &str, now_ms: i64) -> Command {
    P { sequential: true, ..P::new(prefix, "s", now_ms) }.cmd()
}

fn invalid(result: Result<CommandOutcome, KvError>) -> bool {
    matches!(result, Err(KvError::InvalidArgument(_)))
}

#[test]
fn puts_create_then_modify_with_store_wide_versions() {
    let mut state = KvState::new();
    let (outcome, notifications) = ok(&mut state, put_cmd("a", "1", T0));
    let a0 = Stat { version_id: VersionId(0), modifications_count: 0, created_ms: T0, modified_ms: T0, session: None };
    assert_eq!(outcome, CommandOutcome::Put { key: "a".into(), stat: a0 });
    assert_eq!(notifications, [Notification::KeyCreated { key: "a".into(), version_id: VersionId(0) }]);

    assert_eq!(put(&mut state, "b", "1", T0 + 1).version_id, VersionId(1));
    let (_, notifications) = ok(&mut state, put_cmd("a", "2", T0 + 2));
    assert_eq!(notifications, [Notification::KeyModified { key: "a".into(), version_id: VersionId(2) }]);
    let a = state.get("a", Comparison::Equal).unwrap();
    assert_eq!(a.value, Bytes::from_static(b"2"));
    assert_eq!(a.stat, Stat { version_id: VersionId(2), modifications_count: 1, modified_ms: T0 + 2, ..a0 });
}

#[test]
fn a_failed_expectation_changes_nothing() {
    let mut state = KvState::new();
    let v = put(&mut state, "k", "1", T0).version_id;
    let before = state.clone();
    let stale = ExpectedVersion::Is(VersionId(v.0 + 7));
    for (cmd, expected) in [
        (P { expected: ExpectedVersion::NotExists, ..P::new("k", "x", T0 + 5) }.cmd(), ExpectedVersion::NotExists),
        (P { expected: stale, ..P::new("k", "x", T0 + 5) }.cmd(), stale),
        (Command::Delete { key: "k".into(), expected: stale, now_ms: T0 + 5 }, stale),
        (
            Command::Delete { key: "k".into(), expected: ExpectedVersion::NotExists, now_ms: T0 + 5 },
            ExpectedVersion::NotExists,
        ),
    ] {
        let (result, notifications) = state.apply(cmd);
        assert_eq!(result, Err(KvError::UnexpectedVersion { key: "k".into(), expected, actual: Some(v) }));
        assert!(notifications.is_empty());
        assert_eq!(state, before, "not even the clock moves");
    }
    let (result, _) = state.apply(P { expected: stale, ..P::new("new", "x", T0) }.cmd());
    assert_eq!(result, Err(KvError::UnexpectedVersion { key: "new".into(), expected: stale, actual: None }));
    assert_eq!(state, before);
}

#[test]
fn deleting_an_absent_key_is_not_an_error() {
    let mut state = KvState::new();
    for expected in [ExpectedVersion::Any, ExpectedVersion::NotExists] {
        let (outcome, notifications) = ok(&mut state, Command::Delete { key: "k".into(), expected, now_ms: T0 });
        assert_eq!(outcome, CommandOutcome::Delete { existed: false });
        assert!(notifications.is_empty());
    }
    let v = put(&mut state, "k", "1", T0).version_id;
    let (outcome, notifications) =
        ok(&mut state, Command::Delete { key: "k".into(), expected: ExpectedVersion::Is(v), now_ms: T0 });
    assert_eq!(outcome, CommandOutcome::Delete { existed: true });
    assert_eq!(notifications, [Notification::KeyDeleted { key: "k".into() }]);
    assert!(state.is_empty());
}

#[test]
fn delete_range_notifies_the_range_once_even_when_empty() {
    let mut state = KvState::new();
    for key in ["a", "b", "b/1", "c"] {
        put(&mut state, key, key, T0);
    }
    let (outcome, notifications) =
        ok(&mut state, Command::DeleteRange { start: "b".into(), end: "c".into(), now_ms: T0 });
    assert_eq!(outcome, CommandOutcome::DeleteRange { deleted: 2 });
    assert_eq!(notifications, [Notification::KeyRangeDeleted { start: "b".into(), end: "c".into() }]);
    assert_eq!(state.list("", "z"), ["a", "c"]);

    let (outcome, notifications) =
        ok(&mut state, Command::DeleteRange { start: "x".into(), end: "a".into(), now_ms: T0 });
    assert_eq!(outcome, CommandOutcome::DeleteRange { deleted: 0 });
    assert_eq!(notifications.len(), 1);
    assert_eq!(state.list("", "z"), ["a", "c"]);
}

#[test]
fn reads_with_comparisons_and_empty_ranges() {
    let mut state = KvState::new();
    for key in ["b", "d"] {
        put(&mut state, key, key, T0);
    }
    let key = |k: &str, c| state.get(k, c).map(|e| e.key);
    assert_eq!(key("c", Comparison::Floor).as_deref(), Some("b"));
    assert_eq!(key("c", Comparison::Ceiling).as_deref(), Some("d"));
    assert_eq!(key("b", Comparison::Lower), None);
    assert_eq!(key("d", Comparison::Higher), None);
    assert_eq!(key("", Comparison::Ceiling).as_deref(), Some("b"));
    assert_eq!(key("", Comparison::Floor), None);
    assert!(state.list("d", "b").is_empty());
    assert!(state.range_scan("b", "b").is_empty());
    assert_eq!(state.list("", "\u{10FFFF}"), ["b", "d"]);
}

#[test]
fn limits_on_keys_values_and_sessions() {
    let mut state = KvState::new();
    assert!(invalid(state.apply(put_cmd("", "v", T0)).0));
    assert!(invalid(state.apply(put_cmd(&"k".repeat(KEY_BYTES_MAX + 1), "v", T0)).0));
    let big = Bytes::from(vec![7u8; VALUE_BYTES_MAX + 1]);
    assert!(invalid(state.apply(P { value: big, ..P::new("k", "", T0) }.cmd()).0));
    assert!(invalid(state.apply(Command::Delete { key: String::new(), expected: ExpectedVersion::Any, now_ms: T0 }).0));
    let long = "k".repeat(KEY_BYTES_MAX + 1);
    assert!(invalid(state.apply(Command::DeleteRange { start: long, end: "z".into(), now_ms: T0 }).0));
    for timeout_ms in [0, SESSION_TIMEOUT_MS_MIN - 1, SESSION_TIMEOUT_MS_MAX + 1] {
        let cmd = Command::CreateSession { timeout_ms, identity: "t".into(), now_ms: T0 };
        assert!(invalid(state.apply(cmd).0));
    }
    let cmd = Command::CreateSession { timeout_ms: 1000, identity: "i".repeat(IDENTITY_BYTES_MAX + 1), now_ms: T0 };
    assert!(invalid(state.apply(cmd).0));
    assert_eq!(state, KvState::new());

    put(&mut state, &"k".repeat(KEY_BYTES_MAX), "v", T0);
    let largest = Bytes::from(vec![7u8; VALUE_BYTES_MAX]);
    ok(&mut state, P { value: largest, ..P::new("k", "", T0) }.cmd());
    session(&mut state, SESSION_TIMEOUT_MS_MIN, T0);
    session(&mut state, SESSION_TIMEOUT_MS_MAX, T0);
}

#[test]
fn sequential_keys_count_per_prefix_and_are_never_reused() {
    let mut state = KvState::new();
    let key_of = |outcome: CommandOutcome| match outcome {
        CommandOutcome::Put { key, stat } => {
            assert_eq!(stat.modifications_count, 0);
            key
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(key_of(ok(&mut state, sequential("q", T0)).0), "q-00000000000000000001");
    assert_eq!(key_of(ok(&mut state, sequential("q", T0)).0), "q-00000000000000000002");
    assert_eq!(key_of(ok(&mut state, sequential("r", T0)).0), "r-00000000000000000001");
    // Deleted numbers are not handed out again.
    ok(&mut state, Command::DeleteRange { start: "q".into(), end: "r".into(), now_ms: T0 });
    assert_eq!(key_of(ok(&mut state, sequential("q", T0)).0), "q-00000000000000000003");
    // A number whose key exists is skipped: a sequential put always creates.
    put(&mut state, "q-00000000000000000004", "by hand", T0);
    put(&mut state, "q-00000000000000000005", "by hand", T0);
    let (outcome, notifications) = ok(&mut state, sequential("q", T0));
    assert_eq!(key_of(outcome), "q-00000000000000000006");
    assert!(matches!(&notifications[..], [Notification::KeyCreated { .. }]));

    let with_expectation = P { expected: ExpectedVersion::NotExists, sequential: true, ..P::new("q", "s", T0) }.cmd();
    assert!(invalid(state.apply(with_expectation).0));
    // The generated key must fit too.
    assert!(invalid(state.apply(sequential(&"p".repeat(KEY_BYTES_MAX - 20), T0)).0));
    assert!(state.apply(sequential(&"p".repeat(KEY_BYTES_MAX - 21), T0)).0.is_ok());
}

#[test]
fn sessions_own_ephemeral_keys_until_closed() {
    let mut state = KvState::new();
    let s1 = session(&mut state, 1000, T0);
    let s2 = session(&mut state, 1000, T0);
    assert_eq!((s1, s2), (SessionId(1), SessionId(2)));
    for key in ["e/b", "e/a", "e/c"] {
        ok(&mut state, ephemeral(key, s1, T0));
    }
    // Moved to s2, then made persistent.
    ok(&mut state, ephemeral("e/c", s2, T0));
    assert_eq!(state.get("e/c", Comparison::Equal).unwrap().stat.session, Some(s2));
    ok(&mut state, ephemeral("e/p", s1, T0));
    put(&mut state, "e/p", "persistent", T0);
    assert_eq!(state.get("e/p", Comparison::Equal).unwrap().stat.session, None);

    let (outcome, notifications) = ok(&mut state, Command::CloseSession { session: s1, now_ms: T0 });
    assert_eq!(outcome, CommandOutcome::SessionClosed { deleted_keys: 2 });
    assert_eq!(
        notifications,
        [Notification::KeyDeleted { key: "e/a".into() }, Notification::KeyDeleted { key: "e/b".into() }]
    );
    assert_eq!(state.list("e/", "e0"), ["e/c", "e/p"]);
    assert_eq!(state.apply(ephemeral("e/x", s1, T0)).0, Err(KvError::SessionNotFound(s1)));
    assert_eq!(state.apply(Command::CloseSession { session: s1, now_ms: T0 }).0, Err(KvError::SessionNotFound(s1)));
}

#[test]
fn sessions_expire_at_their_deadline() {
    let mut state = KvState::new();
    let s = session(&mut state, 1000, T0);
    ok(&mut state, ephemeral("e", s, T0));
    ok(&mut state, Command::KeepAlive { session: s, now_ms: T0 + 999 });
    assert_eq!(state.session(s).unwrap().deadline_ms(), T0 + 1999);
    let (outcome, _) = ok(&mut state, Command::ExpireSessions { now_ms: T0 + 1998 });
    assert_eq!(outcome, CommandOutcome::SessionsExpired { sessions: vec![] });

    // At the deadline: refused, but its key stays until expiry or close.
    let before = state.clone();
    assert_eq!(state.apply(Command::KeepAlive { session: s, now_ms: T0 + 1999 }).0, Err(KvError::SessionNotFound(s)));
    assert_eq!(state.apply(ephemeral("f", s, T0 + 1999)).0, Err(KvError::SessionNotFound(s)));
    assert_eq!(state, before);
    assert!(state.get("e", Comparison::Equal).is_some());

    let (outcome, notifications) = ok(&mut state, Command::ExpireSessions { now_ms: T0 + 1999 });
    assert_eq!(outcome, CommandOutcome::SessionsExpired { sessions: vec![s] });
    assert_eq!(notifications, [Notification::KeyDeleted { key: "e".into() }]);
    assert!(state.session(s).is_none() && state.is_empty());
}

#[test]
fn closing_an_expired_session_does_what_expiry_would() {
    let mut state = KvState::new();
    let s = session(&mut state, 100, T0);
    ok(&mut state, ephemeral("e", s, T0));
    let (outcome, _) = ok(&mut state, Command::CloseSession { session: s, now_ms: T0 + 500 });
    assert_eq!(outcome, CommandOutcome::SessionClosed { deleted_keys: 1 });
}

#[test]
fn time_never_goes_back() {
    let mut state = KvState::new();
    put(&mut state, "k", "1", T0);
    let stat = put(&mut state, "k", "2", T0 - 500);
    assert_eq!((stat.created_ms, stat.modified_ms), (T0, T0));
    assert_eq!(state.clock_ms(), T0);
    // A session created "in the past" starts now.
    let s = session(&mut state, 100, 0);
    assert_eq!(state.session(s).unwrap().last_keep_alive_ms, T0);
}

#[test]
fn which_notifications_concern_a_prefix() {
    let created = |key: &str| Notification::KeyCreated { key: key.into(), version_id: VersionId(0) };
    let range = |s: &str, e: &str| Notification::KeyRangeDeleted { start: s.into(), end: e.into() };
    assert!(created("w/a").concerns("w/"));
    assert!(!created("w").concerns("w/"));
    assert!(created("anything").concerns(""));
    for (n, expected) in [
        (range("w/", "w0"), true),
        (range("a", "z"), true),
        (range("w/m", "w/n"), true),
        (range("v", "w/"), false),
        (range("v", "w/\u{0}"), true),
        (range("w0", "z"), false),
        (range("w/z", "w/a"), false),
        (range("w/", "w/"), false),
        (range("", ""), false),
    ] {
        assert_eq!(n.concerns("w/"), expected, "{n:?}");
    }
}

#[test]
fn snapshots_restore_exactly_and_refuse_garbage() {
    let mut state = KvState::new();
    let s = session(&mut state, 1000, T0);
    ok(&mut state, ephemeral("e", s, T0));
    put(&mut state, "p", "v", T0 + 3);
    ok(&mut state, sequential("q", T0 + 4));
    let bytes = state.snapshot();
    assert_eq!(bytes[0], SNAPSHOT_FORMAT_V1);
    let restored = KvState::restore(&bytes).unwrap();
    assert_eq!(restored, state);
    assert_eq!(restored.snapshot(), bytes);

    // Through serde too.
    let via_serde: KvState = postcard::from_bytes(&postcard::to_stdvec(&state).unwrap()).unwrap();
    assert_eq!(via_serde, state);

    assert_eq!(KvState::restore(&[]), Err(SnapshotError::Empty));
    assert_eq!(KvState::restore(&[9, 0]), Err(SnapshotError::UnknownFormat(9)));
    assert!(matches!(KvState::restore(&bytes[..bytes.len() - 1]), Err(SnapshotError::Decode(_))));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(KvState::restore(&trailing), Err(SnapshotError::Decode(_))));

    // A record owned by a session the snapshot does not hold.
    let mut broken = state.clone();
    broken.durable.sessions.clear();
    assert!(matches!(KvState::restore(&broken.snapshot()), Err(SnapshotError::Inconsistent(_))));
}

// ---- Model-based property test -------------------------------------------------------
//
// `Model` follows the documented rules as naively as possible: unsorted vectors, linear
// scans, sorting on every read. KvState must agree with it on every outcome,
// notification and read.

#[derive(Debug, Clone)]
struct ModelSession {
    id: SessionId,
    timeout_ms: u64,
    last_ms: i64,
}

#[derive(Debug, Clone)]
struct Model {
    records: Vec<Entry>,
    sessions: Vec<ModelSession>,
    sequences: Vec<(String, u64)>,
    next_version: i64,
    next_session: u64,
    clock_ms: i64,
}

impl Model {
    fn new() -> Model {
        Model {
            records: vec![],
            sessions: vec![],
            sequences: vec![],
            next_version: 0,
            next_session: 1,
            clock_ms: i64::MIN,
        }
    }

    fn find(&self, key: &str) -> Option<usize> {
        self.records.iter().position(|e| e.key == key)
    }

    fn version(&self, key: &str) -> Option<VersionId> {
        self.find(key).map(|i| self.records[i].stat.version_id)
    }

    fn live(&self, id: SessionId, now: i64) -> bool {
        self.sessions.iter().any(|s| s.id == id && now < s.last_ms + s.timeout_ms as i64)
    }

    fn bad_key(key: &str) -> bool {
        key.is_empty() || key.len() > KEY_BYTES_MAX
    }

    fn invalid() -> KvError {
        KvError::InvalidArgument(String::new())
    }

    fn close(&mut self, id: SessionId, out: &mut Vec<Notification>) -> u64 {
        self.sessions.retain(|s| s.id != id);
        let mut keys: Vec<String> =
            self.records.iter().filter(|e| e.stat.session == Some(id)).map(|e| e.key.clone()).collect();
        keys.sort();
        self.records.retain(|e| e.stat.session != Some(id));
        for key in &keys {
            out.push(Notification::KeyDeleted { key: key.clone() });
        }
        keys.len() as u64
    }

    fn apply(&mut self, cmd: &Command) -> (Result<CommandOutcome, KvError>, Vec<Notification>) {
        let now = self.clock_ms.max(cmd.now_ms());
        let mut out = vec![];
        let result = self.apply_at(cmd, now, &mut out);
        if result.is_ok() {
            self.clock_ms = now;
        }
        (result, out)
    }

    fn apply_at(&mut self, cmd: &Command, now: i64, out: &mut Vec<Notification>) -> Result<CommandOutcome, KvError> {
        match cmd.clone() {
            Command::Put { key, value, expected, session, sequential, .. } => {
                if Model::bad_key(&key) || value.len() > VALUE_BYTES_MAX {
                    return Err(Model::invalid());
                }
                if let Some(s) = session {
                    if !self.live(s, now) {
                        return Err(KvError::SessionNotFound(s));
                    }
                }
                let mut sequence = None;
                let key = if sequential {
                    if expected != ExpectedVersion::Any {
                        return Err(Model::invalid());
                    }
                    let mut n = self.sequences.iter().find(|(p, _)| *p == key).map_or(0, |(_, n)| *n) + 1;
                    while self.find(&format!("{key}-{n:020}")).is_some() {
                        n += 1;
                    }
                    let full = format!("{key}-{n:020}");
                    if Model::bad_key(&full) {
                        return Err(Model::invalid());
                    }
                    sequence = Some((key, n));
                    full
                } else {
                    key
                };
                let actual = self.version(&key);
                let admitted = match expected {
                    ExpectedVersion::Any => true,
                    ExpectedVersion::NotExists => actual.is_none(),
                    ExpectedVersion::Is(v) => actual == Some(v),
                };
                if !admitted {
                    return Err(KvError::UnexpectedVersion { key, expected, actual });
                }
                if let Some((prefix, n)) = sequence {
                    self.sequences.retain(|(p, _)| *p != prefix);
                    self.sequences.push((prefix, n));
                }
                let version_id = VersionId(self.next_version);
                self.next_version += 1;
                let stat = match self.find(&key) {
                    None => {
                        out.push(Notification::KeyCreated { key: key.clone(), version_id });
                        let stat =
                            Stat { version_id, modifications_count: 0, created_ms: now, modified_ms: now, session };
                        self.records.push(Entry { key: key.clone(), value, stat });
                        stat
                    }
                    Some(i) => {
                        out.push(Notification::KeyModified { key: key.clone(), version_id });
                        let old = self.records[i].stat;
                        let stat = Stat {
                            version_id,
                            modifications_count: old.modifications_count + 1,
                            created_ms: old.created_ms,
                            modified_ms: now,
                            session,
                        };
                        self.records[i] = Entry { key: key.clone(), value, stat };
                        stat
                    }
                };
                Ok(CommandOutcome::Put { key, stat })
            }
            Command::Delete { key, expected, .. } => {
                if Model::bad_key(&key) {
                    return Err(Model::invalid());
                }
                let actual = self.version(&key);
                let admitted = match expected {
                    ExpectedVersion::Any => true,
                    ExpectedVersion::NotExists => actual.is_none(),
                    ExpectedVersion::Is(v) => actual == Some(v),
                };
                if !admitted {
                    return Err(KvError::UnexpectedVersion { key, expected, actual });
                }
                let existed = actual.is_some();
                if existed {
                    self.records.retain(|e| e.key != key);
                    out.push(Notification::KeyDeleted { key });
                }
                Ok(CommandOutcome::Delete { existed })
            }
            Command::DeleteRange { start, end, .. } => {
                if start.len() > KEY_BYTES_MAX || end.len() > KEY_BYTES_MAX {
                    return Err(Model::invalid());
                }
                let before = self.records.len();
                self.records.retain(|e| !(start <= e.key && e.key < end));
                out.push(Notification::KeyRangeDeleted { start, end });
                Ok(CommandOutcome::DeleteRange { deleted: (before - self.records.len()) as u64 })
            }
            Command::CreateSession { timeout_ms, identity, .. } => {
                if !(SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&timeout_ms)
                    || identity.len() > IDENTITY_BYTES_MAX
                {
                    return Err(Model::invalid());
                }
                let id = SessionId(self.next_session);
                self.next_session += 1;
                self.sessions.push(ModelSession { id, timeout_ms, last_ms: now });
                Ok(CommandOutcome::SessionCreated { session: id })
            }
            Command::KeepAlive { session, .. } => {
                if !self.live(session, now) {
                    return Err(KvError::SessionNotFound(session));
                }
                self.sessions.iter_mut().find(|s| s.id == session).unwrap().last_ms = now;
                Ok(CommandOutcome::KeptAlive)
            }
            Command::CloseSession { session, .. } => {
                if !self.sessions.iter().any(|s| s.id == session) {
                    return Err(KvError::SessionNotFound(session));
                }
                Ok(CommandOutcome::SessionClosed { deleted_keys: self.close(session, out) })
            }
            Command::ExpireSessions { .. } => {
                let mut expired: Vec<SessionId> =
                    self.sessions.iter().filter(|s| now >= s.last_ms + s.timeout_ms as i64).map(|s| s.id).collect();
                expired.sort();
                for &id in &expired {
                    self.close(id, out);
                }
                Ok(CommandOutcome::SessionsExpired { sessions: expired })
            }
        }
    }

    fn sorted(&self) -> Vec<Entry> {
        let mut all = self.records.clone();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    fn get(&self, key: &str, comparison: Comparison) -> Option<Entry> {
        let all = self.sorted();
        match comparison {
            Comparison::Equal => all.into_iter().find(|e| e.key == key),
            Comparison::Floor => all.into_iter().filter(|e| e.key.as_str() <= key).last(),
            Comparison::Ceiling => all.into_iter().find(|e| e.key.as_str() >= key),
            Comparison::Lower => all.into_iter().filter(|e| e.key.as_str() < key).last(),
            Comparison::Higher => all.into_iter().find(|e| e.key.as_str() > key),
        }
    }

    fn list(&self, start: &str, end: &str) -> Vec<String> {
        self.sorted().into_iter().filter(|e| start <= e.key.as_str() && e.key.as_str() < end).map(|e| e.key).collect()
    }
}

/// Keys that collide, nest, sort around '/' and '-', include an invalid one and a key
/// that a sequential put on "a" will generate.
const KEYS: &[&str] = &["", "a", "a/b", "a-00000000000000000001", "a-00000000000000000002", "a0", "b", "b/c", "c"];
const PROBES: &[&str] = &["", "a", "a-", "a/", "a/b", "a/c", "a0", "b", "b/c", "bb", "c", "d"];
const COMPARISONS: [Comparison; 5] =
    [Comparison::Equal, Comparison::Floor, Comparison::Ceiling, Comparison::Lower, Comparison::Higher];
const RANGES: &[(&str, &str)] = &[("", "\u{10FFFF}"), ("a", "b"), ("a/", "a0"), ("a-", "a."), ("b", "a")];

#[derive(Debug, Clone)]
enum Expect {
    Any,
    NotExists,
    /// The key's current version (a stale one if absent).
    Current,
    Stale(i64),
}

#[derive(Debug, Clone)]
enum Op {
    Put { key: usize, value: Vec<u8>, expect: Expect, session: Option<u64>, sequential: bool },
    Delete { key: usize, expect: Expect },
    DeleteRange { start: usize, end: usize },
    CreateSession { timeout_ms: u64 },
    KeepAlive { session: u64 },
    CloseSession { session: u64 },
    Expire,
}

fn expect_strategy() -> impl Strategy<Value = Expect> {
    prop_oneof![
        3 => Just(Expect::Any),
        1 => Just(Expect::NotExists),
        2 => Just(Expect::Current),
        1 => (-1i64..20).prop_map(Expect::Stale),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    // Mostly sessions that get created, sometimes ones that never are (0, 4, 5).
    let session = prop_oneof![9 => 1u64..4, 1 => 0u64..6];
    prop_oneof![
        6 => (key.clone(), prop::collection::vec(any::<u8>(), 0..4), expect_strategy(),
              prop::option::weighted(0.4, session.clone()), prop::bool::weighted(0.15))
            .prop_map(|(key, value, expect, session, sequential)| Op::Put { key, value, expect, session, sequential }),
        2 => (key.clone(), expect_strategy()).prop_map(|(key, expect)| Op::Delete { key, expect }),
        1 => (key.clone(), key).prop_map(|(start, end)| Op::DeleteRange { start, end }),
        2 => prop::sample::select(vec![50u64, 100, 1000, 5000, 20_000])
            .prop_map(|timeout_ms| Op::CreateSession { timeout_ms }),
        2 => session.clone().prop_map(|session| Op::KeepAlive { session }),
        1 => session.prop_map(|session| Op::CloseSession { session }),
        1 => Just(Op::Expire),
    ]
}

/// Operations with the time step before each: mostly short, sometimes past session
/// timeouts, sometimes backwards.
fn steps_strategy(max: usize) -> impl Strategy<Value = Vec<(Op, i64)>> {
    let dt = prop_oneof![8 => 0i64..60, 1 => -100i64..0, 1 => 0i64..6000];
    prop::collection::vec((op_strategy(), dt), 1..max)
}

/// The command of `op` at `now_ms`, resolving `Expect::Current` with `version`.
fn command(op: &Op, now_ms: i64, version: impl Fn(&str) -> Option<VersionId>) -> Command {
    let expected = |key: &str, expect: &Expect| match expect {
        Expect::Any => ExpectedVersion::Any,
        Expect::NotExists => ExpectedVersion::NotExists,
        Expect::Current => ExpectedVersion::Is(version(key).unwrap_or(VersionId(0))),
        Expect::Stale(v) => ExpectedVersion::Is(VersionId(*v)),
    };
    match op {
        Op::Put { key, value, expect, session, sequential } => Command::Put {
            key: KEYS[*key].to_string(),
            value: Bytes::from(value.clone()),
            expected: expected(KEYS[*key], expect),
            session: session.map(SessionId),
            sequential: *sequential,
            now_ms,
        },
        Op::Delete { key, expect } => {
            Command::Delete { key: KEYS[*key].to_string(), expected: expected(KEYS[*key], expect), now_ms }
        }
        Op::DeleteRange { start, end } => {
            Command::DeleteRange { start: KEYS[*start].to_string(), end: KEYS[*end].to_string(), now_ms }
        }
        Op::CreateSession { timeout_ms } => {
            Command::CreateSession { timeout_ms: *timeout_ms, identity: "prop".into(), now_ms }
        }
        Op::KeepAlive { session } => Command::KeepAlive { session: SessionId(*session), now_ms },
        Op::CloseSession { session } => Command::CloseSession { session: SessionId(*session), now_ms },
        Op::Expire => Command::ExpireSessions { now_ms },
    }
}

/// Error messages are free text: compare their kind only.
fn kind(result: Result<CommandOutcome, KvError>) -> Result<CommandOutcome, KvError> {
    result.map_err(|e| match e {
        KvError::InvalidArgument(_) => Model::invalid(),
        other => other,
    })
}

/// Applies `steps` to `state` (resolving expectations against it). Returns the results.
fn run(
    state: &mut KvState,
    steps: &[(Op, i64)],
    clock_ms: &mut i64,
) -> Vec<(Result<CommandOutcome, KvError>, Vec<Notification>)> {
    steps
        .iter()
        .map(|(op, dt)| {
            *clock_ms += dt;
            let cmd = command(op, *clock_ms, |k| state.get(k, Comparison::Equal).map(|e| e.stat.version_id));
            state.apply(cmd)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_the_model(steps in steps_strategy(80)) {
        let mut state = KvState::new();
        let mut model = Model::new();
        let mut clock_ms = T0;
        for (op, dt) in &steps {
            clock_ms += dt;
            let cmd = command(op, clock_ms, |k| model.version(k));
            let (expected, expected_notifications) = model.apply(&cmd);
            let (actual, actual_notifications) = state.apply(cmd.clone());
            prop_assert_eq!(kind(actual), kind(expected), "outcome of {:?}", cmd);
            prop_assert_eq!(actual_notifications, expected_notifications, "notifications of {:?}", cmd);
            prop_assert_eq!(state.validate(), Ok(()));
            prop_assert_eq!(state.clock_ms(), model.clock_ms);

            prop_assert_eq!(state.range_scan("", "\u{10FFFF}"), model.sorted());
            for probe in PROBES {
                for comparison in COMPARISONS {
                    let (actual, expected) = (state.get(probe, comparison), model.get(probe, comparison));
                    prop_assert_eq!(actual, expected, "get {:?} {:?}", probe, comparison);
                }
            }
            for (start, end) in RANGES {
                prop_assert_eq!(state.list(start, end), model.list(start, end));
            }
            for id in 0..6 {
                let actual = state.session(SessionId(id)).map(|s| (s.timeout_ms, s.last_keep_alive_ms));
                let expected = model.sessions.iter().find(|s| s.id.0 == id).map(|s| (s.timeout_ms, s.last_ms));
                prop_assert_eq!(actual, expected, "session {}", id);
            }
        }
    }

    #[test]
    fn a_restored_snapshot_is_the_same_state_with_the_same_future(
        before in steps_strategy(60),
        after in steps_strategy(60),
    ) {
        let mut state = KvState::new();
        let mut clock_ms = T0;
        run(&mut state, &before, &mut clock_ms);
        let snapshot = state.snapshot();
        let mut restored = KvState::restore(&snapshot).expect("restores");
        prop_assert_eq!(&restored, &state);
        prop_assert_eq!(restored.snapshot(), snapshot, "snapshot bytes are deterministic");

        let mut restored_clock_ms = clock_ms;
        let expected = run(&mut state, &after, &mut clock_ms);
        let actual = run(&mut restored, &after, &mut restored_clock_ms);
        prop_assert_eq!(actual, expected);
        prop_assert_eq!(&restored, &state);
        prop_assert_eq!(restored.snapshot(), state.snapshot());
    }
}
