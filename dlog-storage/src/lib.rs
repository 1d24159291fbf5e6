//! The partition log of DLog: Kafka-style segments of RecordBatch v2 bytes on local
//! disk, with sparse indexes, group-commit fsync, crash recovery and retention.
//!
//! This crate knows the RecordBatch v2 *header*, and walks records only to validate
//! them ([`records`]: framing, count, offset deltas, timestamps, bounded inflation of
//! compressed batches); it never builds records and never sees wire types. The broker
//! validates what producers send with [`validate_batches`] and
//! [`records::check_records`], hands the bytes to [`PartitionLog::append`] and serves
//! fetches with [`PartitionLog::read`], which returns whole batches as stored. A
//! leader's `append` assigns offsets and stamps its epoch; a follower stores the
//! leader's batches unchanged with [`PartitionLog::append_replicated`].
//!
//! # Main types
//!
//! - [`PartitionLog`]: one partition's directory of segments. Owned by one thread (a
//!   shard); `Send`, not `Sync`, no locks inside.
//! - [`BatchHeader`], [`validate_batches`], [`BatchError`]: the batch format.
//! - [`ProducerStateMap`], [`ProducerError`]: idempotent producers' epochs and
//!   sequences, checked by `append` (a retried batch is answered, not appended).
//! - [`EpochCache`]: where each leader epoch starts in the log (Kafka's leader-epoch
//!   checkpoint), for OffsetForLeaderEpoch and a follower's truncation.
//! - [`FlushJob`]: a group-commit fsync that runs off the owning thread.
//! - [`StorageError`]: everything that can fail, convertible to [`dlog_core::Error`].
//! - [`testing`]: builders of valid batches for tests here and in the crates above.
//!
//! # Driving it
//!
//! ```no_run
//! # use dlog_storage::*;
//! # use dlog_core::{LeaderEpoch, Offset, TopicConfig};
//! # fn demo(dir: &std::path::Path, mut produced: Vec<u8>, now_ms: i64) -> Result<(), StorageError> {
//! let mut log = PartitionLog::open(dir, TopicConfig::default(), now_ms)?;
//! validate_batches(&produced)?;
//! let info = log.append(&mut produced, LeaderEpoch(0), now_ms)?;
//! if log.flush_due(now_ms) {
//!     if let Some(job) = log.begin_flush() {
//!         job.run().expect("fsync"); // on a blocking thread in the server
//!         log.complete_flush(job)?;
//!     }
//! }
//! let read = log.read(info.first_offset, 1 << 20, log.log_end_offset())?;
//! assert!(!read.bytes.is_empty());
//! log.apply_retention(now_ms)?;
//! log.close()?;
//! # Ok(()) }
//! ```
//!
//! # On disk
//!
//! A directory per partition holding segments named by their 20-digit base offset
//! (`.log`, `.index`, `.timeindex`, see the `segment` module), a `recovery-point`
//! checkpoint (flushed offset and where it is in the active segment), a
//! `log-start-offset` checkpoint and, after a clean close only, a `clean-shutdown`
//! marker. Checkpoints are replaced atomically (write, fsync, rename, fsync dir).
//! Idempotent producers' state ([`producer_state`]) is snapshotted to
//! `<offset>.producer-snapshot` files, the same way, at every roll and clean close.
//! The leader-epoch cache ([`epochs`]) is the `leader-epochs` file, replaced the same
//! way whenever it changes, and rebuilt from the batch headers if missing or damaged.
//!
//! # Durability and recovery
//!
//! - An append is `pwrite`n before it returns: a process crash loses nothing; a power
//!   loss may lose what was not yet flushed (`flushed_offset`).
//! - A segment is fsynced when it is closed (rolled), so the recovery point is always
//!   in the active segment.
//! - Opening after a clean close scans nothing. After a crash it scans only the active
//!   segment from the recovery point, keeps every batch whose header and CRC-32C check
//!   out and whose offsets continue densely, and cuts the first torn or corrupt one.
//!   Start-up work never grows with the size of closed segments ([`RecoveryReport`]).
//! - The producer state is loaded from its newest snapshot; batch headers after it are
//!   replayed: none after a clean close, at most the active segment's after a crash.
//! - Closed segments' indexes load lazily on first use, are validated, and are rebuilt
//!   from the log if missing or damaged.
//!
//! # Where we differ from Kafka
//!
//! - The offset index maps a batch's *base* offset to its position (Kafka maps the last
//!   offset); a time-index entry names the first batch that reached its timestamp.
//! - `segment.ms` counts from the first append to the segment (since open, for the
//!   active segment of a reopened log), not from the first batch's timestamp.

pub mod batch;
mod checkpoint;
pub mod compression;
pub mod epochs;
pub mod error;
pub mod log;
pub mod producer_state;
pub mod records;
mod segment;
pub mod testing;

pub use batch::{validate_batches, BatchError, BatchHeader};
pub use checkpoint::replace as replace_file_atomically;
/// The checkpoint files' framing (`recovery-point`, `log-start-offset`,
/// `clean-shutdown`), for the fuzz targets (`dlog-fuzz`); the log reads and writes them
/// itself.
#[doc(hidden)]
pub use checkpoint::{decode as decode_checkpoint, encode as encode_checkpoint};
pub use epochs::{EpochCache, EpochEntry};
pub use error::StorageError;
pub use log::{AppendInfo, FlushJob, PartitionLog, ReadResult, RecoveryReport, RetentionOutcome};
pub use producer_state::{ProducerError, ProducerStateMap};
