//! The metadata key space as a deterministic state machine: [`KvState`] applies
//! [`Command`]s and answers reads, with Oxia's semantics.
//!
//! It does no I/O and reads no clock: it is the state machine every replica of the
//! metadata Raft group will apply, in the same order, to reach the same state. Time
//! comes in the commands (`now_ms`, chosen by the proposer), all maps are `BTreeMap`s,
//! and nothing depends on hash or allocation order, so the same commands give the same
//! results, notifications and snapshot bytes everywhere.
//!
//! # Semantics
//!
//! - **Keys** are non-empty UTF-8 strings of at most [`KEY_BYTES_MAX`] bytes; values are
//!   at most [`VALUE_BYTES_MAX`] bytes. Keys are ordered by their bytes ("natural"
//!   order). Oxia's default order is hierarchical (by the number of `/` first); it
//!   offers natural order per namespace, which the Oxia implementation must use so
//!   that both list and compare keys the same way.
//! - **Versions.** Every successful put gives the key a [`VersionId`] from one counter of
//!   the whole store, starting at 0 (as Oxia's): version ids are unique and increase
//!   strictly with every put. `modifications_count` is 0 when the key is created and
//!   grows by one with every put over it; `created_ms` survives those puts. A delete
//!   forgets the key: putting it again creates it anew.
//! - **Expectations** ([`ExpectedVersion`]) make puts and deletes conditional. A failed
//!   expectation is [`KvError::UnexpectedVersion`] and changes nothing. Deleting a key
//!   that does not exist is not an error (Oxia answers `KEY_NOT_FOUND`): the outcome
//!   says whether something was deleted.
//! - **Sessions** ([`SessionId`], from a counter starting at 1) are created with a
//!   timeout and kept alive by `KeepAlive`. A session is alive while
//!   `now_ms < last keep-alive + timeout`. A put with a session makes the key ephemeral,
//!   owned by that session; a put without one over an ephemeral key makes it persistent
//!   again, and a put with another session moves it (all as Oxia). Closing a session
//!   deletes its ephemeral keys, in key order, each with a `KeyDeleted` notification.
//!   Expiry is a command too, `ExpireSessions { now_ms }`, which the leader proposes
//!   periodically: it closes every session whose deadline is at or before `now_ms`.
//!   Between its deadline and that command, an expired session still holds its keys but
//!   refuses keep-alives and puts (`SessionNotFound`); closing it is accepted, and does
//!   what expiry would.
//! - **Sequential keys.** A put with `sequential` stores the value under
//!   `format!("{key}-{n:020}")`, where `n` is the next number of a per-prefix counter
//!   kept in the state, starting at 1. Numbers are never reused, even after the keys
//!   are deleted, and a number whose key already exists (put by hand) is skipped, so a
//!   sequential put always creates a key. Oxia derives the next number from the highest
//!   existing key instead and supports several deltas; we support a delta of 1 only.
//!   A sequential put takes no expectation: `InvalidArgument` (Oxia refuses one too,
//!   as an unexpected version).
//! - **Reads** ([`KvState::get`] with a [`Comparison`], [`KvState::list`],
//!   [`KvState::range_scan`] over `[start, end)`) see the state as applied: an expired
//!   session's keys until `ExpireSessions` runs. They are not paginated yet.
//! - **Time** never goes back: a command's `now_ms` below the latest one applied is
//!   raised to it, so `modified_ms >= created_ms` and deadlines are monotone whatever
//!   the proposers' clocks do.
//! - **Notifications**, returned by [`KvState::apply`] in the order of the changes, are
//!   Oxia's: `KeyCreated` (put of a new key), `KeyModified`, `KeyDeleted` (delete or
//!   session end) and one `KeyRangeDeleted` per `DeleteRange`, whether or not it
//!   deleted anything, without a `KeyDeleted` per key. A failed command notifies
//!   nothing.
//!
//! # Snapshots
//!
//! [`KvState::snapshot`] encodes the state with `postcard` behind a format byte;
//! [`KvState::restore`] decodes and validates it. postcard rather than JSON: values are
//! arbitrary bytes, which JSON would write as arrays of numbers (about four times their
//! size), and postcard's encoding of the same value is always the same bytes, which
//! lets replicas compare snapshots. The index of each session's keys is derived, not
//! stored: restore rebuilds it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Bound;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Longest key accepted, in bytes.
pub const KEY_BYTES_MAX: usize = 4096;
/// Largest value accepted, in bytes.
pub const VALUE_BYTES_MAX: usize = 8 << 20;
/// Shortest session timeout accepted.
pub const SESSION_TIMEOUT_MS_MIN: u64 = 100;
/// Longest session timeout accepted.
pub const SESSION_TIMEOUT_MS_MAX: u64 = 5 * 60 * 1000;
/// Longest session identity accepted, in bytes.
pub const IDENTITY_BYTES_MAX: usize = 1024;
/// The first byte of every snapshot: the encoding that follows.
pub const SNAPSHOT_FORMAT_V1: u8 = 1;

/// A session, whose ephemeral keys live as long as it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The version of a key's value: unique in the store, strictly increasing with every put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VersionId(pub i64);

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The condition a put or delete puts on the key's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No condition.
    #[default]
    Any,
    /// The key must not exist (Oxia's expected version -1).
    NotExists,
    /// The key must exist with exactly this version.
    Is(VersionId),
}

impl ExpectedVersion {
    /// Whether a key whose current version is `actual` (`None`: absent) satisfies it.
    pub fn admits(self, actual: Option<VersionId>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NotExists => actual.is_none(),
            ExpectedVersion::Is(v) => actual == Some(v),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => write!(f, "any version"),
            ExpectedVersion::NotExists => write!(f, "no key"),
            ExpectedVersion::Is(v) => write!(f, "version {v}"),
        }
    }
}

/// Which key a get returns, relative to the key asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Comparison {
    /// The key itself.
    Equal,
    /// The highest key `<=` the one asked for.
    Floor,
    /// The lowest key `>=` the one asked for.
    Ceiling,
    /// The highest key `<` the one asked for.
    Lower,
    /// The lowest key `>` the one asked for.
    Higher,
}

/// What is known about a key's current value (Oxia's `Version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stat {
    pub version_id: VersionId,
    /// 0 when the key was created; one more with every put over it.
    pub modifications_count: i64,
    pub created_ms: i64,
    pub modified_ms: i64,
    /// The session owning the key if it is ephemeral.
    pub session: Option<SessionId>,
}

/// A key with its value and stat, as reads return it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub value: Bytes,
    pub stat: Stat,
}

/// A change to the key space, as Oxia notifies it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Notification {
    KeyCreated {
        key: String,
        version_id: VersionId,
    },
    KeyModified {
        key: String,
        version_id: VersionId,
    },
    KeyDeleted {
        key: String,
    },
    /// Every key in `[start, end)` was deleted.
    KeyRangeDeleted {
        start: String,
        end: String,
    },
}

impl Notification {
    /// Whether a watcher of the keys starting with `prefix` must see it: the key starts
    /// with `prefix`, or the deleted range holds at least one such key.
    pub fn concerns(&self, prefix: &str) -> bool {
        match self {
            Notification::KeyCreated { key, .. }
            | Notification::KeyModified { key, .. }
            | Notification::KeyDeleted { key } => key.starts_with(prefix),
            Notification::KeyRangeDeleted { start, end } => {
                // The lowest string that is both in the range and >= prefix. It starts
                // with prefix iff it is below prefix's successor, i.e. iff the range
                // and the prefix's keys intersect.
                let lowest = start.as_str().max(prefix);
                lowest < end.as_str() && lowest.starts_with(prefix)
            }
        }
    }
}

/// A change to the key space: the log entries of the metadata Raft group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put {
        key: String,
        value: Bytes,
        expected: ExpectedVersion,
        /// Makes the key ephemeral, owned by this session.
        session: Option<SessionId>,
        /// Store under `{key}-{n:020}` with the prefix's next sequence number.
        sequential: bool,
        now_ms: i64,
    },
    Delete {
        key: String,
        expected: ExpectedVersion,
        now_ms: i64,
    },
    /// Deletes every key in `[start, end)`; nothing if `start >= end`.
    DeleteRange {
        start: String,
        end: String,
        now_ms: i64,
    },
    CreateSession {
        timeout_ms: u64,
        identity: String,
        now_ms: i64,
    },
    KeepAlive {
        session: SessionId,
        now_ms: i64,
    },
    CloseSession {
        session: SessionId,
        now_ms: i64,
    },
    /// Closes every session whose last keep-alive + timeout is `<= now_ms`.
    ExpireSessions {
        now_ms: i64,
    },
}

impl Command {
    /// The proposer's time of the command.
    pub fn now_ms(&self) -> i64 {
        match self {
            Command::Put { now_ms, .. }
            | Command::Delete { now_ms, .. }
            | Command::DeleteRange { now_ms, .. }
            | Command::CreateSession { now_ms, .. }
            | Command::KeepAlive { now_ms, .. }
            | Command::CloseSession { now_ms, .. }
            | Command::ExpireSessions { now_ms } => *now_ms,
        }
    }
}

/// What a successful command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOutcome {
    /// The key written (the generated one for a sequential put) and its new stat.
    Put {
        key: String,
        stat: Stat,
    },
    /// `existed` is false when there was no such key: nothing changed.
    Delete {
        existed: bool,
    },
    DeleteRange {
        deleted: u64,
    },
    SessionCreated {
        session: SessionId,
    },
    KeptAlive,
    /// The session's ephemeral keys were deleted too.
    SessionClosed {
        deleted_keys: u64,
    },
    /// The sessions closed, in id order.
    SessionsExpired {
        sessions: Vec<SessionId>,
    },
}

/// Why a command was refused. A refused command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum KvError {
    #[error("unexpected version of key {key:?}: expected {expected}, found {actual:?}")]
    UnexpectedVersion { key: String, expected: ExpectedVersion, actual: Option<VersionId> },
    #[error("session {0} does not exist or has expired")]
    SessionNotFound(SessionId),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("empty snapshot")]
    Empty,
    #[error("unknown snapshot format {0}")]
    UnknownFormat(u8),
    #[error("undecodable snapshot: {0}")]
    Decode(String),
    #[error("inconsistent snapshot: {0}")]
    Inconsistent(String),
}

/// A live (or expired but not yet closed) session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub timeout_ms: u64,
    /// Who created it, for people reading the metadata (Oxia's client identity).
    pub identity: String,
    pub last_keep_alive_ms: i64,
}

impl Session {
    /// The first time at which the session is expired.
    pub fn deadline_ms(&self) -> i64 {
        self.last_keep_alive_ms.saturating_add_unsigned(self.timeout_ms)
    }

    fn alive_at(&self, now_ms: i64) -> bool {
        now_ms < self.deadline_ms()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    value: Bytes,
    stat: Stat,
}

/// Everything a snapshot holds. The field order is the encoding: append only, and bump
/// the snapshot format for anything else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Durable {
    records: BTreeMap<String, Record>,
    sessions: BTreeMap<SessionId, Session>,
    /// The last sequence number handed out per sequential-key prefix.
    sequences: BTreeMap<String, u64>,
    next_version_id: i64,
    next_session_id: u64,
    /// The latest `now_ms` applied; `i64::MIN` before the first command.
    clock_ms: i64,
}

/// The metadata key space. See the [module documentation](self) for its semantics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvState {
    durable: Durable,
    /// Derived from `durable.records`: each session's ephemeral keys.
    session_keys: BTreeMap<SessionId, BTreeSet<String>>,
}

impl Default for KvState {
    fn default() -> Self {
        KvState::new()
    }
}

impl KvState {
    pub fn new() -> KvState {
        KvState {
            durable: Durable {
                records: BTreeMap::new(),
                sessions: BTreeMap::new(),
                sequences: BTreeMap::new(),
                next_version_id: 0,
                next_session_id: 1,
                clock_ms: i64::MIN,
            },
            session_keys: BTreeMap::new(),
        }
    }

    /// Applies one command: its outcome, and the notifications of what changed in order
    /// (none if it failed, in which case nothing changed).
    pub fn apply(&mut self, cmd: Command) -> (Result<CommandOutcome, KvError>, Vec<Notification>) {
        let now_ms = self.durable.clock_ms.max(cmd.now_ms());
        let mut notifications = Vec::new();
        let result = match cmd {
            Command::Put { key, value, expected, session, sequential, now_ms: _ } => {
                self.put(key, value, expected, session, sequential, now_ms, &mut notifications)
            }
            Command::Delete { key, expected, now_ms: _ } => self.delete(&key, expected, &mut notifications),
            Command::DeleteRange { start, end, now_ms: _ } => self.delete_range(start, end, &mut notifications),
            Command::CreateSession { timeout_ms, identity, now_ms: _ } => {
                self.create_session(timeout_ms, identity, now_ms)
            }
            Command::KeepAlive { session, now_ms: _ } => self.keep_alive(session, now_ms),
            Command::CloseSession { session, now_ms: _ } => {
                if self.durable.sessions.contains_key(&session) {
                    let deleted_keys = self.close_session(session, &mut notifications);
                    Ok(CommandOutcome::SessionClosed { deleted_keys })
                } else {
                    Err(KvError::SessionNotFound(session))
                }
            }
            Command::ExpireSessions { now_ms: _ } => Ok(self.expire_sessions(now_ms, &mut notifications)),
        };
        match result {
            Ok(_) => self.durable.clock_ms = now_ms,
            Err(_) => debug_assert!(notifications.is_empty(), "a failed command notified {notifications:?}"),
        }
        (result, notifications)
    }

    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        key: String,
        value: Bytes,
        expected: ExpectedVersion,
        session: Option<SessionId>,
        sequential: bool,
        now_ms: i64,
        notifications: &mut Vec<Notification>,
    ) -> Result<CommandOutcome, KvError> {
        // Every check comes before the first change: a refused put changes nothing.
        check_key(&key)?;
        if value.len() > VALUE_BYTES_MAX {
            return Err(KvError::InvalidArgument(format!(
                "value of {} bytes is over the limit of {VALUE_BYTES_MAX}",
                value.len()
            )));
        }
        if let Some(id) = session {
            match self.durable.sessions.get(&id) {
                Some(s) if s.alive_at(now_ms) => {}
                _ => return Err(KvError::SessionNotFound(id)),
            }
        }
        let (key, sequence) = if sequential {
            if expected != ExpectedVersion::Any {
                return Err(KvError::InvalidArgument("a sequential put takes no expected version".to_string()));
            }
            let (full_key, n) = self
                .next_sequential_key(&key)
                .ok_or_else(|| KvError::InvalidArgument(format!("sequence numbers of {key:?} are exhausted")))?;
            check_key(&full_key)?;
            (full_key, Some((key, n)))
        } else {
            (key, None)
        };
        let existing = self.durable.records.get(&key).map(|r| r.stat);
        if !expected.admits(existing.map(|s| s.version_id)) {
            return Err(KvError::UnexpectedVersion { key, expected, actual: existing.map(|s| s.version_id) });
        }
        // Only a restored snapshot can hold counters this high; refuse, never wrap.
        let next_version_id = self.durable.next_version_id.checked_add(1);
        let modifications_count = existing.map_or(Some(0), |old| old.modifications_count.checked_add(1));
        let (Some(next_version_id), Some(modifications_count)) = (next_version_id, modifications_count) else {
            return Err(KvError::InvalidArgument(format!("version ids of {key:?} are exhausted")));
        };

        if let Some((prefix, n)) = sequence {
            debug_assert!(existing.is_none(), "a sequential put must create its key");
            self.durable.sequences.insert(prefix, n);
        }
        let version_id = VersionId(self.durable.next_version_id);
        self.durable.next_version_id = next_version_id;
        let stat = match existing {
            None => Stat { version_id, modifications_count, created_ms: now_ms, modified_ms: now_ms, session },
            Some(old) => {
                debug_assert!(old.version_id < version_id);
                Stat { version_id, modifications_count, created_ms: old.created_ms, modified_ms: now_ms, session }
            }
        };
        if let Some(old_session) = existing.and_then(|s| s.session) {
            self.unindex(old_session, &key);
        }
        if let Some(new_session) = session {
            self.session_keys.entry(new_session).or_default().insert(key.clone());
        }
        self.durable.records.insert(key.clone(), Record { value, stat });
        notifications.push(match existing {
            None => Notification::KeyCreated { key: key.clone(), version_id },
            Some(_) => Notification::KeyModified { key: key.clone(), version_id },
        });
        Ok(CommandOutcome::Put { key, stat })
    }

    /// The key and number of the next sequential key under `prefix`; `None` when the
    /// prefix's numbers are exhausted.
    fn next_sequential_key(&self, prefix: &str) -> Option<(String, u64)> {
        let mut n = self.durable.sequences.get(prefix).copied().unwrap_or(0);
        // Skips numbers whose key was put by hand; bounded by the number of keys.
        for _ in 0..=self.durable.records.len() {
            n = n.checked_add(1)?;
            let key = format!("{prefix}-{n:020}");
            if !self.durable.records.contains_key(&key) {
                return Some((key, n));
            }
        }
        unreachable!("more existing sequential keys than keys")
    }

    fn delete(
        &mut self,
        key: &str,
        expected: ExpectedVersion,
        notifications: &mut Vec<Notification>,
    ) -> Result<CommandOutcome, KvError> {
        check_key(key)?;
        let actual = self.durable.records.get(key).map(|r| r.stat.version_id);
        if !expected.admits(actual) {
            return Err(KvError::UnexpectedVersion { key: key.to_string(), expected, actual });
        }
        let existed = self.remove(key);
        if existed {
            notifications.push(Notification::KeyDeleted { key: key.to_string() });
        }
        Ok(CommandOutcome::Delete { existed })
    }

    fn delete_range(
        &mut self,
        start: String,
        end: String,
        notifications: &mut Vec<Notification>,
    ) -> Result<CommandOutcome, KvError> {
        check_bound(&start)?;
        check_bound(&end)?;
        let keys: Vec<String> = self.range(&start, &end).map(|(k, _)| k.clone()).collect();
        for key in &keys {
            let removed = self.remove(key);
            debug_assert!(removed);
        }
        notifications.push(Notification::KeyRangeDeleted { start, end });
        Ok(CommandOutcome::DeleteRange { deleted: keys.len() as u64 })
    }

    fn create_session(&mut self, timeout_ms: u64, identity: String, now_ms: i64) -> Result<CommandOutcome, KvError> {
        if !(SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&timeout_ms) {
            return Err(KvError::InvalidArgument(format!(
                "session timeout of {timeout_ms} ms is outside [{SESSION_TIMEOUT_MS_MIN}, {SESSION_TIMEOUT_MS_MAX}]"
            )));
        }
        if identity.len() > IDENTITY_BYTES_MAX {
            return Err(KvError::InvalidArgument(format!(
                "session identity of {} bytes is over the limit of {IDENTITY_BYTES_MAX}",
                identity.len()
            )));
        }
        let session = SessionId(self.durable.next_session_id);
        self.durable.next_session_id = self
            .durable
            .next_session_id
            .checked_add(1)
            .ok_or_else(|| KvError::InvalidArgument("session ids are exhausted".to_string()))?;
        let previous =
            self.durable.sessions.insert(session, Session { timeout_ms, identity, last_keep_alive_ms: now_ms });
        assert!(previous.is_none(), "session id {session} handed out twice");
        Ok(CommandOutcome::SessionCreated { session })
    }

    fn keep_alive(&mut self, session: SessionId, now_ms: i64) -> Result<CommandOutcome, KvError> {
        match self.durable.sessions.get_mut(&session) {
            Some(s) if s.alive_at(now_ms) => {
                debug_assert!(s.last_keep_alive_ms <= now_ms, "time went back");
                s.last_keep_alive_ms = now_ms;
                Ok(CommandOutcome::KeptAlive)
            }
            _ => Err(KvError::SessionNotFound(session)),
        }
    }

    /// Closes an existing session: its keys are deleted in key order. Returns how many.
    fn close_session(&mut self, session: SessionId, notifications: &mut Vec<Notification>) -> u64 {
        let removed = self.durable.sessions.remove(&session);
        assert!(removed.is_some(), "closing unknown session {session}");
        let keys = self.session_keys.remove(&session).unwrap_or_default();
        for key in &keys {
            let record = self.durable.records.remove(key).expect("indexed ephemeral key exists");
            debug_assert_eq!(record.stat.session, Some(session));
            notifications.push(Notification::KeyDeleted { key: key.clone() });
        }
        keys.len() as u64
    }

    fn expire_sessions(&mut self, now_ms: i64, notifications: &mut Vec<Notification>) -> CommandOutcome {
        let expired: Vec<SessionId> =
            self.durable.sessions.iter().filter(|(_, s)| !s.alive_at(now_ms)).map(|(id, _)| *id).collect();
        for &session in &expired {
            self.close_session(session, notifications);
        }
        CommandOutcome::SessionsExpired { sessions: expired }
    }

    /// Removes a key and its session index entry. Returns whether it existed.
    fn remove(&mut self, key: &str) -> bool {
        match self.durable.records.remove(key) {
            None => false,
            Some(record) => {
                if let Some(session) = record.stat.session {
                    self.unindex(session, key);
                }
                true
            }
        }
    }

    fn unindex(&mut self, session: SessionId, key: &str) {
        let keys = self.session_keys.get_mut(&session).expect("an ephemeral key's session is indexed");
        let removed = keys.remove(key);
        debug_assert!(removed, "ephemeral key {key:?} missing from the index of session {session}");
        if keys.is_empty() {
            self.session_keys.remove(&session);
        }
    }

    fn range<'a>(&'a self, start: &str, end: &str) -> impl DoubleEndedIterator<Item = (&'a String, &'a Record)> {
        // BTreeMap::range panics on start > end; [start, start) is empty and does not.
        let end = if start < end { end } else { start };
        self.durable.records.range::<str, _>((Bound::Included(start), Bound::Excluded(end)))
    }

    /// The key chosen by `comparison` relative to `key`, with its value and stat.
    pub fn get(&self, key: &str, comparison: Comparison) -> Option<Entry> {
        let records = &self.durable.records;
        let found = match comparison {
            Comparison::Equal => records.get_key_value(key),
            Comparison::Floor => records.range::<str, _>((Bound::Unbounded, Bound::Included(key))).next_back(),
            Comparison::Ceiling => records.range::<str, _>((Bound::Included(key), Bound::Unbounded)).next(),
            Comparison::Lower => records.range::<str, _>((Bound::Unbounded, Bound::Excluded(key))).next_back(),
            Comparison::Higher => records.range::<str, _>((Bound::Excluded(key), Bound::Unbounded)).next(),
        };
        found.map(|(k, r)| Entry { key: k.clone(), value: r.value.clone(), stat: r.stat })
    }

    /// The keys in `[start, end)`, in key order; none if `start >= end`.
    pub fn list(&self, start: &str, end: &str) -> Vec<String> {
        self.range(start, end).map(|(k, _)| k.clone()).collect()
    }

    /// The entries in `[start, end)`, in key order; none if `start >= end`.
    pub fn range_scan(&self, start: &str, end: &str) -> Vec<Entry> {
        self.range(start, end).map(|(k, r)| Entry { key: k.clone(), value: r.value.clone(), stat: r.stat }).collect()
    }

    /// A session that has not been closed (it may be expired and awaiting
    /// `ExpireSessions`).
    pub fn session(&self, session: SessionId) -> Option<&Session> {
        self.durable.sessions.get(&session)
    }

    /// The earliest deadline among the sessions not yet closed (expired ones included),
    /// if any: the time from which an `ExpireSessions` has something to do. O(sessions).
    pub fn next_session_deadline_ms(&self) -> Option<i64> {
        self.durable.sessions.values().map(Session::deadline_ms).min()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.durable.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.durable.records.is_empty()
    }

    /// The latest time applied (`i64::MIN` before any command).
    pub fn clock_ms(&self) -> i64 {
        self.durable.clock_ms
    }

    /// The state encoded for a Raft snapshot (see the module documentation).
    pub fn snapshot(&self) -> Vec<u8> {
        // Encoding maps, strings and integers cannot fail.
        postcard::to_extend(&self.durable, vec![SNAPSHOT_FORMAT_V1]).expect("postcard encodes the state")
    }

    /// The state a [`snapshot`](Self::snapshot) was taken of, validated.
    pub fn restore(snapshot: &[u8]) -> Result<KvState, SnapshotError> {
        let (&format, body) = snapshot.split_first().ok_or(SnapshotError::Empty)?;
        if format != SNAPSHOT_FORMAT_V1 {
            return Err(SnapshotError::UnknownFormat(format));
        }
        let (durable, rest): (Durable, _) =
            postcard::take_from_bytes(body).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        if !rest.is_empty() {
            return Err(SnapshotError::Decode(format!("{} bytes after the state", rest.len())));
        }
        KvState::from_durable(durable).map_err(SnapshotError::Inconsistent)
    }

    fn from_durable(durable: Durable) -> Result<KvState, String> {
        let mut session_keys: BTreeMap<SessionId, BTreeSet<String>> = BTreeMap::new();
        for (key, record) in &durable.records {
            if let Some(session) = record.stat.session {
                session_keys.entry(session).or_default().insert(key.clone());
            }
        }
        let state = KvState { durable, session_keys };
        state.validate()?;
        Ok(state)
    }

    /// Checks every invariant of the state; O(keys + sessions). Restore runs it, and
    /// tests after every command.
    pub fn validate(&self) -> Result<(), String> {
        let d = &self.durable;
        // Ids start at 0 (versions) and 1 (sessions, 0 being none) and only grow.
        if d.next_version_id < 0 || d.next_session_id == 0 {
            return Err(format!("next version id {}, next session id {}", d.next_version_id, d.next_session_id));
        }
        for (key, record) in &d.records {
            let stat = &record.stat;
            if key.is_empty() || key.len() > KEY_BYTES_MAX {
                return Err(format!("key of {} bytes", key.len()));
            }
            if record.value.len() > VALUE_BYTES_MAX {
                return Err(format!("value of {} bytes under {key:?}", record.value.len()));
            }
            if stat.version_id.0 < 0 || stat.version_id.0 >= d.next_version_id {
                return Err(format!("{key:?} has version {} but the next is {}", stat.version_id, d.next_version_id));
            }
            if stat.modifications_count < 0 || stat.created_ms > stat.modified_ms || stat.modified_ms > d.clock_ms {
                return Err(format!("{key:?} has an impossible stat {stat:?}"));
            }
            if let Some(session) = stat.session {
                if !d.sessions.contains_key(&session) {
                    return Err(format!("{key:?} belongs to unknown session {session}"));
                }
            }
        }
        let indexed: usize = self.session_keys.values().map(BTreeSet::len).sum();
        let ephemeral = d.records.values().filter(|r| r.stat.session.is_some()).count();
        if indexed != ephemeral || self.session_keys.values().any(BTreeSet::is_empty) {
            return Err(format!("{indexed} keys indexed by session for {ephemeral} ephemeral keys"));
        }
        for (session, keys) in &self.session_keys {
            for key in keys {
                if d.records.get(key).and_then(|r| r.stat.session) != Some(*session) {
                    return Err(format!("{key:?} indexed under session {session} it does not belong to"));
                }
            }
        }
        for (id, session) in &d.sessions {
            if id.0 == 0 || id.0 >= d.next_session_id {
                return Err(format!("session {id} but the next id is {}", d.next_session_id));
            }
            if !(SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&session.timeout_ms)
                || session.last_keep_alive_ms > d.clock_ms
            {
                return Err(format!("session {id} is impossible: {session:?}"));
            }
        }
        let mut versions: Vec<VersionId> = d.records.values().map(|r| r.stat.version_id).collect();
        versions.sort_unstable();
        if versions.windows(2).any(|w| w[0] == w[1]) {
            return Err("two keys share a version id".to_string());
        }
        Ok(())
    }
}

impl Serialize for KvState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.durable.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for KvState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let durable = Durable::deserialize(deserializer)?;
        KvState::from_durable(durable).map_err(serde::de::Error::custom)
    }
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::InvalidArgument("empty key".to_string()));
    }
    check_bound(key)
}

/// Range bounds may be empty (the lowest key) but not longer than a key.
fn check_bound(key: &str) -> Result<(), KvError> {
    if key.len() > KEY_BYTES_MAX {
        return Err(KvError::InvalidArgument(format!(
            "key of {} bytes is over the limit of {KEY_BYTES_MAX}",
            key.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
