//! The DLog broker and its command-line tools, in one binary `dlog`.
//!
//! - [`broker::Broker`] starts a node: it opens the data directory, loads the topic
//!   registry ([`topics`]), starts one [`shard`] per core (each owning partitions), and
//!   accepts Kafka connections ([`conn`]) whose requests go to one handler per API
//!   ([`handlers`]).
//! - [`cli`] is the person's tool: `dlog topic|produce|consume`, speaking the Kafka
//!   protocol to any broker through the small client in [`cli::client`].
//! - [`config`] resolves flags, `DLOG_*` variables and the TOML file.

pub mod broker;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod controller;
pub mod gate;
pub mod groups;
pub mod handlers;
pub mod partition;
pub mod producer_ids;
pub mod replica;
pub mod shard;
pub mod topics;

/// Wall-clock milliseconds since the Unix epoch (record timestamps are wall-clock).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
