//! [`LocalStore`]: the in-process [`MetadataStore`], one [`KvState`] behind a mutex.
//!
//! It is the reference implementation (the conformance suite's first customer) and the
//! store of single-node tests. It proposes the same [`Command`]s the Raft store will
//! put in its log, stamping them with its [`Clock`], and applies them at once.
//!
//! Every write takes the mutex, applies one command and sends its notifications to the
//! watchers before releasing it, so notifications are in the order of the changes. The
//! mutex is never held across an `.await`. A background task proposes
//! `ExpireSessions` every [`LocalStoreConfig::expiry_interval`].

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::kv::{Command, CommandOutcome, Comparison, Entry, ExpectedVersion, KvError, KvState, SessionId, Stat};
use crate::store::{MetadataError, MetadataStore, PutOptions, StoreEvent, Watch};

/// Where a store gets the `now_ms` of its commands.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch (or any fixed origin, for tests).
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        // A clock before 1970 is a broken machine; 0 keeps time monotone in the state.
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told: session expiry tested without waiting.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock { now_ms: AtomicI64::new(now_ms) }
    }

    pub fn advance(&self, by: Duration) {
        let by_ms = i64::try_from(by.as_millis()).expect("advance by less than 292 million years");
        self.now_ms.fetch_add(by_ms, Ordering::SeqCst);
    }

    pub fn set_ms(&self, now_ms: i64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// The knobs of a [`LocalStore`].
#[derive(Debug, Clone)]
pub struct LocalStoreConfig {
    /// How often the background task closes expired sessions. An expired session's
    /// keys live at most this much longer than its timeout.
    pub expiry_interval: Duration,
    /// Notifications buffered per watcher before it lags ([`crate::WatchEvent::Lagged`]).
    pub watch_capacity: usize,
}

impl Default for LocalStoreConfig {
    fn default() -> Self {
        LocalStoreConfig { expiry_interval: Duration::from_millis(100), watch_capacity: 1024 }
    }
}

struct Inner {
    state: Mutex<KvState>,
    clock: Arc<dyn Clock>,
    notifications: broadcast::Sender<StoreEvent>,
}

impl Inner {
    fn apply(&self, make: impl FnOnce(i64) -> Command) -> Result<CommandOutcome, KvError> {
        let cmd = make(self.clock.now_ms());
        let mut state = self.state.lock().expect("a command panicked while applied: the state is unknown");
        let (result, notifications) = state.apply(cmd);
        for n in notifications {
            // An error only means nobody watches.
            let _ = self.notifications.send(StoreEvent::Notification(n));
        }
        result
    }

    fn read<R>(&self, f: impl FnOnce(&KvState) -> R) -> R {
        f(&self.state.lock().expect("a command panicked while applied: the state is unknown"))
    }
}

/// The in-process [`MetadataStore`]. Dropping it stops its expiry task; watches then
/// end.
pub struct LocalStore {
    inner: Arc<Inner>,
    expiry_task: JoinHandle<()>,
}

impl fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStore").field("clock", &self.inner.clock).finish_non_exhaustive()
    }
}

impl LocalStore {
    /// An empty store. Must be called within a tokio runtime (it spawns the expiry task).
    pub fn start(config: LocalStoreConfig, clock: Arc<dyn Clock>) -> LocalStore {
        LocalStore::with_state(KvState::new(), config, clock)
    }

    /// A store holding `state`, e.g. restored from a snapshot.
    pub fn with_state(state: KvState, config: LocalStoreConfig, clock: Arc<dyn Clock>) -> LocalStore {
        assert!(!config.expiry_interval.is_zero(), "expiry interval must be positive");
        assert!(config.watch_capacity > 0, "watch capacity must be positive");
        let (notifications, _) = broadcast::channel(config.watch_capacity);
        let inner = Arc::new(Inner { state: Mutex::new(state), clock, notifications });
        let expiry_task = tokio::spawn(expire_sessions_every(Arc::downgrade(&inner), config.expiry_interval));
        LocalStore { inner, expiry_task }
    }

    /// Applies `ExpireSessions` now, as the background task does; returns the sessions
    /// closed.
    pub fn expire_sessions(&self) -> Vec<SessionId> {
        expire_sessions(&self.inner)
    }

    /// Proposes a command stamped by `make` with the store's clock, applies it and
    /// notifies watchers. The one write path: every trait method goes through it.
    pub fn apply(&self, make: impl FnOnce(i64) -> Command) -> Result<CommandOutcome, KvError> {
        self.inner.apply(make)
    }

    /// Runs `f` over the current state, under the lock: keep it short.
    pub fn read<R>(&self, f: impl FnOnce(&KvState) -> R) -> R {
        self.inner.read(f)
    }

    /// A snapshot of the current state ([`KvState::snapshot`]).
    pub fn snapshot(&self) -> Vec<u8> {
        self.read(KvState::snapshot)
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        self.expiry_task.abort();
    }
}

fn expire_sessions(inner: &Inner) -> Vec<SessionId> {
    match inner.apply(|now_ms| Command::ExpireSessions { now_ms }) {
        Ok(CommandOutcome::SessionsExpired { sessions }) => sessions,
        other => unreachable!("ExpireSessions answered {other:?}"),
    }
}

async fn expire_sessions_every(inner: Weak<Inner>, every: Duration) {
    // The first tick after one interval: nothing can have expired at start.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let expired = expire_sessions(&inner);
        if !expired.is_empty() {
            tracing::info!(sessions = ?expired, "metadata sessions expired");
        }
    }
}

fn unexpected(outcome: CommandOutcome) -> ! {
    unreachable!("command answered with the outcome of another: {outcome:?}")
}

#[async_trait]
impl MetadataStore for LocalStore {
    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<(String, Stat), MetadataError> {
        let PutOptions { expected, session, sequential } = options;
        let key = key.to_string();
        match self.apply(|now_ms| Command::Put { key, value, expected, session, sequential, now_ms })? {
            CommandOutcome::Put { key, stat } => Ok((key, stat)),
            other => unexpected(other),
        }
    }

    async fn delete(&self, key: &str, expected: ExpectedVersion) -> Result<bool, MetadataError> {
        match self.apply(|now_ms| Command::Delete { key: key.to_string(), expected, now_ms })? {
            CommandOutcome::Delete { existed } => Ok(existed),
            other => unexpected(other),
        }
    }

    async fn delete_range(&self, start: &str, end: &str) -> Result<(), MetadataError> {
        match self.apply(|now_ms| Command::DeleteRange { start: start.to_string(), end: end.to_string(), now_ms })? {
            CommandOutcome::DeleteRange { .. } => Ok(()),
            other => unexpected(other),
        }
    }

    async fn get(&self, key: &str, comparison: Comparison) -> Result<Option<Entry>, MetadataError> {
        Ok(self.read(|s| s.get(key, comparison)))
    }

    async fn list(&self, start: &str, end: &str) -> Result<Vec<String>, MetadataError> {
        Ok(self.read(|s| s.list(start, end)))
    }

    async fn range_scan(&self, start: &str, end: &str) -> Result<Vec<Entry>, MetadataError> {
        Ok(self.read(|s| s.range_scan(start, end)))
    }

    async fn create_session(&self, timeout: Duration, identity: &str) -> Result<SessionId, MetadataError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        match self.apply(|now_ms| Command::CreateSession { timeout_ms, identity: identity.to_string(), now_ms })? {
            CommandOutcome::SessionCreated { session } => Ok(session),
            other => unexpected(other),
        }
    }

    async fn keep_alive(&self, session: SessionId) -> Result<(), MetadataError> {
        match self.apply(|now_ms| Command::KeepAlive { session, now_ms })? {
            CommandOutcome::KeptAlive => Ok(()),
            other => unexpected(other),
        }
    }

    async fn close_session(&self, session: SessionId) -> Result<(), MetadataError> {
        match self.apply(|now_ms| Command::CloseSession { session, now_ms })? {
            CommandOutcome::SessionClosed { .. } => Ok(()),
            other => unexpected(other),
        }
    }

    async fn watch(&self, prefix: &str) -> Result<Watch, MetadataError> {
        Ok(Watch::new(prefix, self.inner.notifications.subscribe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Notification;
    use crate::store::{spawn_keep_alive, WatchEvent};

    const SECOND: Duration = Duration::from_secs(1);

    fn manual() -> (LocalStore, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(1_000_000));
        // A long interval: these tests expire sessions by hand.
        let config = LocalStoreConfig { expiry_interval: Duration::from_secs(3600), ..LocalStoreConfig::default() };
        (LocalStore::start(config, clock.clone()), clock)
    }

    async fn next(watch: &mut Watch) -> WatchEvent {
        tokio::time::timeout(5 * SECOND, watch.recv()).await.expect("a notification in time").expect("store alive")
    }

    fn deleted(key: &str) -> WatchEvent {
        WatchEvent::Notification(Notification::KeyDeleted { key: key.to_string() })
    }

    #[tokio::test]
    async fn stamps_commands_with_its_clock() {
        let (store, clock) = manual();
        let (_, created) = store.put("k", Bytes::from_static(b"1"), PutOptions::default()).await.unwrap();
        clock.advance(SECOND);
        let (_, modified) = store.put("k", Bytes::from_static(b"2"), PutOptions::default()).await.unwrap();
        assert_eq!((created.created_ms, created.modified_ms), (1_000_000, 1_000_000));
        assert_eq!((modified.created_ms, modified.modified_ms), (1_000_000, 1_001_000));
        // A clock going back does not move the state's time back.
        clock.set_ms(0);
        let (_, again) = store.put("k", Bytes::from_static(b"3"), PutOptions::default()).await.unwrap();
        assert_eq!(again.modified_ms, 1_001_000);
    }

    #[tokio::test]
    async fn sessions_expire_at_their_deadline_and_keep_alive_moves_it() {
        let (store, clock) = manual();
        let session = store.create_session(SECOND, "test").await.unwrap();
        store.put("eph", Bytes::new(), PutOptions::ephemeral(session)).await.unwrap();
        let mut watch = store.watch("").await.unwrap();

        clock.advance(Duration::from_millis(999));
        assert!(store.expire_sessions().is_empty());
        store.keep_alive(session).await.unwrap();
        clock.advance(Duration::from_millis(999));
        assert!(store.expire_sessions().is_empty(), "the keep-alive restarted the timeout");
        clock.advance(Duration::from_millis(1));
        // Expired but not yet closed: keep-alives and puts are refused, the key remains.
        assert_eq!(store.keep_alive(session).await, Err(MetadataError::SessionNotFound(session)));
        let put = store.put("eph2", Bytes::new(), PutOptions::ephemeral(session)).await;
        assert_eq!(put, Err(MetadataError::SessionNotFound(session)));
        assert!(store.get("eph", Comparison::Equal).await.unwrap().is_some());

        assert_eq!(store.expire_sessions(), vec![session]);
        assert_eq!(next(&mut watch).await, deleted("eph"));
        assert_eq!(store.get("eph", Comparison::Equal).await.unwrap(), None);
        assert_eq!(store.close_session(session).await, Err(MetadataError::SessionNotFound(session)));
    }

    #[tokio::test]
    async fn the_expiry_task_closes_expired_sessions() {
        let clock = Arc::new(ManualClock::new(0));
        let config = LocalStoreConfig { expiry_interval: Duration::from_millis(5), ..LocalStoreConfig::default() };
        let store = LocalStore::start(config, clock.clone());
        let session = store.create_session(SECOND, "test").await.unwrap();
        store.put("eph", Bytes::new(), PutOptions::ephemeral(session)).await.unwrap();
        let mut watch = store.watch("eph").await.unwrap();
        clock.advance(SECOND);
        assert_eq!(next(&mut watch).await, deleted("eph"));
        assert!(store.read(|s| s.session(session).is_none()));
    }

    #[tokio::test]
    async fn a_lagging_watcher_is_told_how_much_it_missed() {
        let clock = Arc::new(ManualClock::new(0));
        let config = LocalStoreConfig { watch_capacity: 4, ..LocalStoreConfig::default() };
        let store = LocalStore::start(config, clock);
        let mut watch = store.watch("k").await.unwrap();
        for i in 0..10 {
            store.put(&format!("k{i}"), Bytes::new(), PutOptions::default()).await.unwrap();
        }
        assert_eq!(next(&mut watch).await, WatchEvent::Lagged { missed: 6 });
        for i in 6..10 {
            match next(&mut watch).await {
                WatchEvent::Notification(Notification::KeyCreated { key, .. }) => assert_eq!(key, format!("k{i}")),
                other => panic!("expected k{i} created, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn watches_end_when_the_store_is_dropped() {
        let (store, _) = manual();
        let mut watch = store.watch("").await.unwrap();
        drop(store);
        assert_eq!(tokio::time::timeout(5 * SECOND, watch.recv()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn restarts_from_a_snapshot() {
        let (store, clock) = manual();
        let session = store.create_session(SECOND, "test").await.unwrap();
        store.put("eph", Bytes::from_static(b"e"), PutOptions::ephemeral(session)).await.unwrap();
        store.put("seq", Bytes::new(), PutOptions::sequential()).await.unwrap();
        let snapshot = store.snapshot();
        drop(store);

        let state = KvState::restore(&snapshot).unwrap();
        let config = LocalStoreConfig { expiry_interval: Duration::from_secs(3600), ..LocalStoreConfig::default() };
        let store = LocalStore::with_state(state, config, clock.clone());
        let (key, _) = store.put("seq", Bytes::new(), PutOptions::sequential()).await.unwrap();
        assert_eq!(key, "seq-00000000000000000002");
        store.keep_alive(session).await.unwrap();
        clock.advance(SECOND);
        assert_eq!(store.expire_sessions(), vec![session]);
        assert_eq!(store.list("", "z").await.unwrap(), vec!["seq-00000000000000000001", "seq-00000000000000000002"]);
    }

    #[tokio::test]
    async fn the_keep_alive_task_ends_with_its_session() {
        let (store, _) = manual();
        let store: Arc<dyn MetadataStore> = Arc::new(store);
        let session = store.create_session(SECOND, "test").await.unwrap();
        let task = spawn_keep_alive(store.clone(), session, Duration::from_millis(5));
        store.close_session(session).await.unwrap();
        let ended = tokio::time::timeout(5 * SECOND, task).await.expect("the task ends").unwrap();
        assert_eq!(ended, MetadataError::SessionNotFound(session));
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
