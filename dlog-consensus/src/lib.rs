//! Cluster metadata for DLog: the [`MetadataStore`] trait, a versioned key space with
//! Oxia's semantics (versioned keys with compare-and-set, ordered reads, sessions with
//! ephemeral keys, sequential keys, change notifications), and its implementations.
//!
//! # Main types
//!
//! - [`kv::KvState`]: the key space as a deterministic, I/O-free state machine. It
//!   applies [`kv::Command`]s (each carrying the proposer's `now_ms`) and returns their
//!   outcome and [`kv::Notification`]s; it encodes to and restores from snapshots. It
//!   is what the metadata Raft group will replicate: the same commands in the same
//!   order give the same state, results and snapshot bytes on every replica. Its module
//!   page states the semantics in full.
//! - [`MetadataStore`] (`store.rs`): the async, object-safe trait the rest of DLog will
//!   use, with its contract; [`Watch`] and [`WatchEvent`] for notifications, bounded;
//!   [`spawn_keep_alive`] to keep a session alive (nothing does it implicitly).
//! - [`LocalStore`] (`local.rs`): the in-process implementation over one
//!   `Mutex<KvState>`, with a [`Clock`] ([`SystemClock`], or [`ManualClock`] for tests)
//!   and a background task that expires sessions. The reference implementation and the
//!   store of single-node tests.
//! - [`conformance`]: the suite every implementation must pass.
//!
//! # Driving it
//!
//! ```no_run
//! # use std::{sync::Arc, time::Duration};
//! # use bytes::Bytes;
//! # use dlog_consensus::*;
//! # async fn demo() -> Result<(), MetadataError> {
//! let store: Arc<dyn MetadataStore> = Arc::new(LocalStore::start(LocalStoreConfig::default(), Arc::new(SystemClock)));
//! let session = store.create_session(Duration::from_secs(6), "broker-1").await?;
//! let keep_alive = spawn_keep_alive(store.clone(), session, Duration::from_secs(2));
//! let mut watch = store.watch("/brokers/").await?;
//! store.put("/brokers/1", Bytes::from_static(b"host:9092"), PutOptions::ephemeral(session)).await?;
//! let only_if_absent = PutOptions::expect(ExpectedVersion::NotExists);
//! let (_, stat) = store.put("/controller", Bytes::from_static(b"1"), only_if_absent).await?;
//! let current = store.get("/controller", Comparison::Equal).await?;
//! assert_eq!(current.map(|e| e.stat), Some(stat));
//! while let Some(event) = watch.recv().await {
//!     // a broker came or went, or Lagged: list /brokers/ again
//! #   break;
//! }
//! keep_alive.abort();
//! store.close_session(session).await?; // deletes /brokers/1
//! # Ok(()) }
//! ```
//!
//! # Not here yet
//!
//! The built-in Raft store (openraft applying [`kv::Command`]s through
//! [`kv::KvState::apply`], snapshots from [`kv::KvState::snapshot`]), the Oxia adapter
//! and the controller state machine on top. A single node still keeps its topic
//! registry in the server (`dlog_server::topics`); the cluster work moves it behind
//! this trait, and the server will depend on the trait, never on an implementation.
//!
//! Boundary: this crate never sees Kafka wire types or storage internals.

pub mod conformance;
pub mod kv;
pub mod local;
pub mod store;

pub use kv::{
    Command, CommandOutcome, Comparison, Entry, ExpectedVersion, KvError, KvState, Notification, SessionId,
    SnapshotError, Stat, VersionId,
};
pub use local::{Clock, LocalStore, LocalStoreConfig, ManualClock, SystemClock};
pub use store::{spawn_keep_alive, MetadataError, MetadataStore, PutOptions, Watch, WatchEvent};
