//! Cluster metadata for DLog: the [`MetadataStore`] trait, a versioned key space with
//! Oxia's semantics (versioned keys with compare-and-set, ordered reads, sessions with
//! ephemeral keys, sequential keys, change notifications), and its implementations.
//!
//! # Main types
//!
//! - [`kv::KvState`]: the key space as a deterministic, I/O-free state machine. It
//!   applies [`kv::Command`]s (each carrying the proposer's `now_ms`) and returns their
//!   outcome and [`kv::Notification`]s; it encodes to and restores from snapshots. It
//!   is what the metadata Raft group replicates: the same commands in the same order
//!   give the same state, results and snapshot bytes on every replica. Its module page
//!   states the semantics in full.
//! - [`MetadataStore`] (`store.rs`): the async, object-safe trait the rest of DLog will
//!   use, with its contract; [`Watch`] and [`WatchEvent`] for notifications, bounded;
//!   [`spawn_keep_alive`] to keep a session alive (nothing does it implicitly).
//! - [`LocalStore`] (`local.rs`): the in-process implementation over one
//!   `Mutex<KvState>`, with a [`Clock`] ([`SystemClock`], or [`ManualClock`] for tests)
//!   and a background task that expires sessions. The reference implementation and the
//!   store of single-node tests.
//! - [`RaftStore`] (`raft/`): the built-in implementation, one node of an openraft
//!   group over the cluster's controller voters ([`controller_voters`]), its log in
//!   redb and its state machine a `KvState` snapshotted to a file. Followers forward
//!   writes and reads to the leader; every node serves watches from what it applies.
//!   Nodes talk through a [`Transport`] (one call: a request to a node, its answer),
//!   whose messages are serde types with a postcard encoding; [`InProcessTransport`]
//!   connects nodes in one process and cuts links for tests (and, with a
//!   [`LinkFaults`] model, delays and loses messages). A node keeps its data in a
//!   directory, or on a [`SimDisk`] for the deterministic simulation
//!   (`tests/it/sim.rs`), whose crashes lose unsynced writes. The `raft` module page
//!   explains writes, reads, expiry, durability and why election timeouts are
//!   staggered by rank.
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
//!     // a broker came or went, or Lagged or Reset: list /brokers/ again
//! #   break;
//! }
//! keep_alive.abort();
//! store.close_session(session).await?; // deletes /brokers/1
//! # Ok(()) }
//! ```
//!
//! A node of the Raft store, in a cluster of three (each node runs the same, with its
//! own id and directory; one of them bootstraps the group once):
//!
//! ```no_run
//! # use std::{collections::BTreeMap, path::Path, sync::Arc};
//! # use dlog_consensus::*;
//! # use dlog_core::NodeId;
//! # async fn demo(transport: Arc<InProcessTransport>) -> Result<(), Box<dyn std::error::Error>> {
//! let members: BTreeMap<NodeId, String> = (1..=3).map(|i| (NodeId(i), format!("node-{i}:9093"))).collect();
//! let store = RaftStore::open(
//!     NodeId(1), Path::new("data/metadata"), members, RaftStoreConfig::default(),
//!     transport.clone(), Arc::new(SystemClock),
//! ).await?;
//! transport.register(NodeId(1), &store.rpc_handler()); // a gRPC server would serve it
//! store.bootstrap().await?; // harmless if the group is already formed
//! let store: Arc<dyn MetadataStore> = Arc::new(store);
//! # Ok(()) }
//! ```
//!
//! # Not here yet
//!
//! A gRPC [`Transport`], the Oxia adapter and the controller state machine on top. A
//! single node still keeps its topic registry in the server (`dlog_server::topics`);
//! the cluster work moves it behind this trait, and the server will depend on the
//! trait, never on an implementation.
//!
//! Boundary: this crate never sees Kafka wire types or storage internals.

pub mod conformance;
pub mod kv;
pub mod local;
pub mod raft;
pub mod store;

pub use kv::{
    Command, CommandOutcome, Comparison, Entry, ExpectedVersion, KvError, KvState, Notification, SessionId,
    SnapshotError, Stat, VersionId,
};
pub use local::{Clock, LocalStore, LocalStoreConfig, ManualClock, SystemClock};
pub use raft::disk::{NodeDisk, SimDisk};
pub use raft::network::{Delivery, InProcessTransport, LinkFaults, RpcHandler, Transport, TransportError};
pub use raft::{controller_voters, ElectionJitter, RaftStatus, RaftStore, RaftStoreConfig};
pub use store::{spawn_keep_alive, MetadataError, MetadataStore, PutOptions, StoreEvent, Watch, WatchEvent};
