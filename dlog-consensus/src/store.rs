//! The [`MetadataStore`] trait: what the rest of DLog may ask of cluster metadata, with
//! the contract every implementation keeps ([`crate::conformance`] checks it).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dlog_core::NodeId;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::kv::{Comparison, Entry, ExpectedVersion, KvError, Notification, SessionId, Stat, VersionId};

/// How a put is conditioned and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PutOptions {
    pub expected: ExpectedVersion,
    /// Makes the key ephemeral: it is deleted when this session ends.
    pub session: Option<SessionId>,
    /// Stores under `{key}-{n:020}` with the next number of the prefix `key`.
    pub sequential: bool,
}

impl PutOptions {
    /// A put conditioned on `expected`.
    pub fn expect(expected: ExpectedVersion) -> PutOptions {
        PutOptions { expected, ..PutOptions::default() }
    }

    /// An ephemeral put owned by `session`.
    pub fn ephemeral(session: SessionId) -> PutOptions {
        PutOptions { session: Some(session), ..PutOptions::default() }
    }

    /// A sequential put under the prefix given as key.
    pub fn sequential() -> PutOptions {
        PutOptions { sequential: true, ..PutOptions::default() }
    }
}

/// Why a metadata operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The expectation of a put or delete did not hold; nothing changed.
    #[error("unexpected version of key {key:?}: expected {expected}, found {actual:?}")]
    UnexpectedVersion { key: String, expected: ExpectedVersion, actual: Option<VersionId> },
    /// The session was never created, was closed, or has expired.
    #[error("session {0} does not exist or has expired")]
    SessionNotFound(SessionId),
    /// A key, value, range bound, timeout or identity outside the limits of
    /// [`crate::kv`], or a sequential put with an expectation.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// This node cannot serve the request; `leader` can, if known. Retriable elsewhere.
    #[error("not the metadata leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// No quorum, a lost connection, a timeout: the operation may or may not have taken
    /// effect. Retriable.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// The store's own storage failed.
    #[error("metadata storage failed: {0}")]
    Storage(String),
}

impl MetadataError {
    /// Whether the same request may succeed if sent again (here or to the leader).
    pub fn is_retriable(&self) -> bool {
        matches!(self, MetadataError::NotLeader { .. } | MetadataError::Unavailable(_))
    }
}

impl From<KvError> for MetadataError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::UnexpectedVersion { key, expected, actual } => {
                MetadataError::UnexpectedVersion { key, expected, actual }
            }
            KvError::SessionNotFound(s) => MetadataError::SessionNotFound(s),
            KvError::InvalidArgument(m) => MetadataError::InvalidArgument(m),
        }
    }
}

/// What a [`Watch`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Notification(Notification),
    /// The watcher fell behind and `missed` notifications of the whole store (not only
    /// of its prefix) were dropped for it. Anything under the prefix may have changed:
    /// read it again, then go on receiving.
    Lagged {
        missed: u64,
    },
    /// The serving node's state jumped ahead without applying the changes one by one
    /// (a Raft node installed a snapshot from its leader after falling far behind), so
    /// their notifications never existed here. Handle it as [`WatchEvent::Lagged`]:
    /// read the prefix again, then go on receiving.
    Reset,
}

/// What a store broadcasts to every [`Watch`] of the node: each notification as its
/// change is applied, in order, and a [`StoreEvent::Reset`] when the state was replaced
/// wholesale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    Notification(Notification),
    /// The state was replaced by a snapshot: changes since the last notification were
    /// not notified.
    Reset,
}

/// The notifications of the keys under one prefix, in the order their changes took
/// effect. Its queue is bounded: a watcher that does not keep up gets
/// [`WatchEvent::Lagged`] rather than unbounded memory or a silent gap.
#[derive(Debug)]
pub struct Watch {
    prefix: String,
    rx: broadcast::Receiver<StoreEvent>,
}

impl Watch {
    /// A watch of `prefix` over a store-wide channel of events; it filters them.
    pub fn new(prefix: impl Into<String>, rx: broadcast::Receiver<StoreEvent>) -> Watch {
        Watch { prefix: prefix.into(), rx }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The next notification concerning the prefix ([`Notification::concerns`]), or
    /// `None` once the store is gone.
    pub async fn recv(&mut self) -> Option<WatchEvent> {
        loop {
            match self.rx.recv().await {
                Ok(StoreEvent::Notification(n)) if n.concerns(&self.prefix) => {
                    return Some(WatchEvent::Notification(n))
                }
                Ok(StoreEvent::Notification(_)) => continue,
                Ok(StoreEvent::Reset) => return Some(WatchEvent::Reset),
                Err(broadcast::error::RecvError::Lagged(missed)) => return Some(WatchEvent::Lagged { missed }),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Cluster metadata: a versioned key space with sessions and notifications, with
/// Oxia's semantics (see [`crate::kv`] for them in full).
///
/// # Contract
///
/// - **Linearizable.** Every operation takes effect atomically at one point between its
///   call and its return, and every read sees every write that returned before the
///   read was called. A compare-and-set (a put or delete with an [`ExpectedVersion`])
///   succeeds for at most one of several writers expecting the same version.
/// - **Refusals change nothing.** An `Err` other than `NotLeader`, `Unavailable` or
///   `Storage` means the operation did not take effect. After those three, and after a
///   future is dropped before it completed, it may or may not have.
/// - **Keys** are ordered by their bytes; ranges are `[start, end)` and empty when
///   `start >= end`. Reads never fail for an absent key: they return `None` or nothing.
/// - **Sessions are kept alive by the caller**: nothing calls
///   [`keep_alive`](Self::keep_alive) on its own; [`spawn_keep_alive`] does it on a
///   timer. A session whose timeout passes without one expires: its ephemeral keys are
///   deleted soon after (how soon is the implementation's; the conformance suite
///   waits up to several seconds).
/// - Implementations are `Send + Sync` and shared as `Arc<dyn MetadataStore>`.
#[async_trait]
pub trait MetadataStore: Send + Sync {
    /// Writes `value` under `key`, if `options.expected` holds, and returns the key
    /// written (`key` itself, or the generated one of a sequential put) with its new
    /// [`Stat`].
    ///
    /// Errors: `UnexpectedVersion` if the expectation fails, `SessionNotFound` if
    /// `options.session` is not alive, `InvalidArgument` for an empty or too long key,
    /// a too large value, or a sequential put with an expectation.
    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<(String, Stat), MetadataError>;

    /// Deletes `key` if `expected` holds. `Ok(false)` if there was no such key (and the
    /// expectation allowed that: `Any` or `NotExists`).
    async fn delete(&self, key: &str, expected: ExpectedVersion) -> Result<bool, MetadataError>;

    /// Deletes every key in `[start, end)`, atomically. Watchers of a prefix that meets
    /// the range get one [`Notification::KeyRangeDeleted`], not one per key.
    async fn delete_range(&self, start: &str, end: &str) -> Result<(), MetadataError>;

    /// The entry of the key chosen by `comparison` relative to `key` (which need not
    /// exist), or `None` if there is no such key.
    async fn get(&self, key: &str, comparison: Comparison) -> Result<Option<Entry>, MetadataError>;

    /// The keys in `[start, end)`, in key order.
    async fn list(&self, start: &str, end: &str) -> Result<Vec<String>, MetadataError>;

    /// The entries in `[start, end)`, in key order, read at one point in time.
    async fn range_scan(&self, start: &str, end: &str) -> Result<Vec<Entry>, MetadataError>;

    /// Opens a session that expires `timeout` after its creation or last keep-alive.
    /// `identity` names the owner for people reading the metadata.
    ///
    /// Errors: `InvalidArgument` for a timeout outside
    /// [`SESSION_TIMEOUT_MS_MIN`](crate::kv::SESSION_TIMEOUT_MS_MIN)..=
    /// [`SESSION_TIMEOUT_MS_MAX`](crate::kv::SESSION_TIMEOUT_MS_MAX) or a too long
    /// identity.
    async fn create_session(&self, timeout: Duration, identity: &str) -> Result<SessionId, MetadataError>;

    /// Restarts the session's timeout. `SessionNotFound` if it is closed or expired:
    /// an expired session never comes back, its owner must open a new one.
    async fn keep_alive(&self, session: SessionId) -> Result<(), MetadataError>;

    /// Ends the session and deletes its ephemeral keys at once. `SessionNotFound` if it
    /// was already closed (or expired and cleaned up).
    async fn close_session(&self, session: SessionId) -> Result<(), MetadataError>;

    /// Notifications of every change to keys starting with `prefix` that takes effect
    /// after this returns, in order. Changes concurrent with the call may or may not be
    /// included. To follow a prefix: watch, then read, then apply notifications (some
    /// may repeat what the read showed).
    async fn watch(&self, prefix: &str) -> Result<Watch, MetadataError>;
}

/// Keeps `session` alive by calling [`MetadataStore::keep_alive`] every `every` (a
/// third of the timeout is usual) until the session is gone or the task is aborted.
/// Retriable errors are logged and retried at the next tick; the task ends with the
/// first other error, normally `SessionNotFound`. Dropping the handle does not stop
/// it: abort it before closing the session on purpose.
///
/// Panics if `every` is zero.
pub fn spawn_keep_alive(
    store: Arc<dyn MetadataStore>,
    session: SessionId,
    every: Duration,
) -> JoinHandle<MetadataError> {
    assert!(!every.is_zero(), "keep-alive interval must be positive");
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match store.keep_alive(session).await {
                Ok(()) => {}
                Err(e) if e.is_retriable() => {
                    tracing::warn!(session = session.0, error = %e, "metadata session keep-alive failed, retrying");
                }
                Err(e) => return e,
            }
        }
    })
}
