//! Errors of the partition log.

use crate::batch::BatchError;
use crate::producer_state::ProducerError;
use dlog_core::{LeaderEpoch, Offset};
use std::path::PathBuf;

/// What can go wrong in a [`crate::PartitionLog`].
#[derive(thiserror::Error, Debug)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: Offset, start: Offset, end: Offset },
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge { size: usize, max: u64 },
    /// An idempotent producer's batch refused by its epoch or sequence.
    #[error("{0}")]
    Producer(#[from] ProducerError),
    /// Batches of a leader epoch older than the newest in the log: their leader was
    /// replaced, and appending them would fork the log.
    #[error("leader epoch {epoch} is older than the log's latest leader epoch {latest}")]
    StaleLeaderEpoch { epoch: LeaderEpoch, latest: LeaderEpoch },
    /// A negative leader epoch (Kafka's "none") where a leader's epoch must be.
    #[error("leader epoch {0} is not a leader's epoch")]
    InvalidLeaderEpoch(LeaderEpoch),
    /// Replicated batches that do not start at the log end, or do not follow each other.
    #[error("replicated batch starts at offset {got} where {expected} was expected")]
    NonContiguous { expected: Offset, got: Offset },
    #[error("corrupt log in {path} at byte {position}: {reason}")]
    Corrupt { path: PathBuf, position: u64, reason: String },
    /// A write failed and could not be undone: the files no longer match what the log
    /// believes, so it refuses further writes until reopened (which recovers).
    #[error("partition log at {0} failed an earlier write and must be reopened")]
    Failed(PathBuf),
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> StorageError {
        StorageError::Io { path: path.into(), source }
    }
}

impl From<StorageError> for dlog_core::Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::OffsetOutOfRange { offset, start, end } => {
                dlog_core::Error::OffsetOutOfRange { offset: offset.0, start: start.0, end: end.0 }
            }
            StorageError::InvalidBatch(b) => dlog_core::Error::CorruptMessage(b.to_string()),
            StorageError::BatchTooLarge { size, max } => {
                dlog_core::Error::RecordTooLarge { size, max: usize::try_from(max).unwrap_or(usize::MAX) }
            }
            StorageError::Producer(p @ ProducerError::InvalidEpoch { .. }) => {
                dlog_core::Error::InvalidProducerEpoch(p.to_string())
            }
            StorageError::Producer(p @ ProducerError::OutOfOrder { .. }) => {
                dlog_core::Error::OutOfOrderSequence(p.to_string())
            }
            StorageError::StaleLeaderEpoch { epoch, latest } => {
                dlog_core::Error::FencedLeaderEpoch { client: epoch.0, current: latest.0 }
            }
            other => dlog_core::Error::Storage(other.to_string()),
        }
    }
}

/// Shorthand for the crate's results.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
