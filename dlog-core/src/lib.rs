//! Shared vocabulary of DLog: ids and newtypes, topic configuration, limits and the
//! domain error type.
//!
//! Every other crate depends on this one and this one depends on nothing of DLog. It does
//! no I/O. The main types:
//!
//! - [`Offset`], [`LeaderEpoch`], [`NodeId`], [`PartitionId`], [`TopicId`], [`ShardId`]:
//!   newtypes so that an offset is never confused with a position, an epoch or a count.
//! - [`TopicPartition`]: the address of one partition log.
//! - [`TopicConfig`]: the per-topic settings (`segment.bytes`, `retention.ms`, ...) with
//!   their Kafka names, parsing and validation, layered over [`BrokerDefaults`].
//! - [`Codec`], [`CompressionType`]: record batch codecs and a topic's `compression.type`.
//! - [`Error`]: what can go wrong in the data plane, in DLog's words. The Kafka error
//!   code of each variant is chosen in one place, `dlog_protocol::errors`.

pub mod codec;
pub mod config;
pub mod error;
pub mod ids;
pub mod limits;

pub use codec::{Codec, Compression, CompressionType};
pub use config::{BrokerDefaults, CleanupPolicy, ConfigError, TimestampType, TopicConfig};
pub use error::{Error, Result};
pub use ids::{LeaderEpoch, NodeId, Offset, PartitionId, ShardId, TopicId, TopicPartition};
