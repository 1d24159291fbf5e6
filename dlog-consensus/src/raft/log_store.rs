//! The Raft log on redb: openraft's [`RaftLogStorage`] and [`RaftLogReader`].
//!
//! One database file in the node's directory with two tables: `entries` (log index ->
//! postcard-encoded entry) and `meta` (the vote, the committed log id and the last
//! purged log id, each postcard-encoded). Every write is one redb transaction committed
//! with `Durability::Immediate` (fsynced before `commit` returns), so whatever a method
//! acknowledges survives a crash; the one exception is the committed log id, an
//! optional hint that rides along with the next durable commit. Writes run on tokio's blocking
//! pool (inline on a simulated disk, see [`disk`](super::disk)), one at a time (openraft
//! serializes them: each is awaited before the next).
//!
//! Invariants, checked on the way in: entries are appended at consecutive indexes with
//! no hole after the last purged one; a purge never goes past the last entry it was
//! told about, and the last purged id only grows.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Weak};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::disk::Storage;
use super::{RaftNodeId, TypeConfig};

/// The log file in a node's directory.
pub const LOG_FILE: &str = "raft-log.redb";

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

type Entry = openraft::Entry<TypeConfig>;
type StorageResult<T> = Result<T, StorageError<RaftNodeId>>;

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the Raft log: {0}")]
pub struct OpenLogError(#[from] redb::Error);

/// The log store of one node. Cheap to clone: clones share the database.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Database>,
    storage: Storage,
}

impl LogStore {
    /// Opens (or creates) the log in `storage`.
    pub(crate) fn open(storage: &Storage) -> Result<LogStore, OpenLogError> {
        let db = storage.open_database(LOG_FILE)?;
        // Create both tables once, so that readers never meet a missing table.
        let txn = db.begin_write().map_err(redb::Error::from)?;
        txn.open_table(ENTRIES).map_err(redb::Error::from)?;
        txn.open_table(META).map_err(redb::Error::from)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(LogStore { db: Arc::new(db), storage: storage.clone() })
    }

    /// A handle that does not keep the database open: it tells when every clone (those
    /// inside openraft included) has been dropped, so the file may be opened again.
    pub(crate) fn liveness(&self) -> Weak<Database> {
        Arc::downgrade(&self.db)
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        let Some(bytes) = table.get(key)? else { return Ok(None) };
        Ok(Some(decode_meta(key, bytes.value())?))
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<RaftNodeId>>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        let last = match table.last()? {
            None => None,
            Some((index, bytes)) => Some(decode_entry(index.value(), bytes.value())?.log_id),
        };
        Ok(last)
    }

    /// Runs `write` in one write transaction off the async threads and commits it
    /// durably.
    async fn write<F>(&self, write: F) -> Result<(), redb::Error>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send + 'static,
    {
        self.write_with(Durability::Immediate, write).await
    }

    /// [`write`](Self::write) with the given durability. `Durability::None` commits
    /// become durable with the next `Immediate` one (redb keeps commit order): for
    /// what may be lost in a crash without harm.
    async fn write_with<F>(&self, durability: Durability, write: F) -> Result<(), redb::Error>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send + 'static,
    {
        let db = self.db.clone();
        let done = self
            .storage
            .run(move || {
                let mut txn = db.begin_write()?;
                txn.set_durability(durability).map_err(|e| corrupt(format!("durability {durability:?}: {e}")))?;
                write(&txn)?;
                txn.commit()?;
                Ok(())
            })
            .await;
        match done {
            Ok(result) => result,
            // The write panicked (an invariant broke) or the runtime is shutting down.
            Err(e) => Err(corrupt(format!("log write task failed: {e}"))),
        }
    }

    async fn write_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), redb::Error> {
        let bytes = encode(value)?;
        self.write_with(durability, move |txn| {
            txn.open_table(META)?.insert(key, bytes.as_slice())?;
            Ok(())
        })
        .await
    }
}

fn corrupt(message: String) -> redb::Error {
    redb::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, message))
}

/// A stored value's bytes: an entry, or a `meta` value (the vote, the committed log
/// id, the last purged log id). Public for the fuzz targets (`dlog-fuzz`).
#[doc(hidden)]
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, redb::Error> {
    postcard::to_stdvec(value).map_err(|e| corrupt(format!("cannot encode: {e}")))
}

/// The `meta` value stored under `key` (`vote`: a `Vote`, `committed`: an
/// `Option<LogId>`, `last_purged`: a `LogId`). Public for the fuzz targets.
#[doc(hidden)]
pub fn decode_meta<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, redb::Error> {
    postcard::from_bytes(bytes).map_err(|e| corrupt(format!("meta {key:?}: {e}")))
}

/// The entry stored at log index `index`; an error unless it decodes and carries that
/// index. Public for the fuzz targets.
#[doc(hidden)]
pub fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry, redb::Error> {
    let entry: Entry = postcard::from_bytes(bytes).map_err(|e| corrupt(format!("entry {index}: {e}")))?;
    if entry.log_id.index != index {
        return Err(corrupt(format!("entry stored at {index} has log id {}", entry.log_id)));
    }
    Ok(entry)
}

fn io_error(e: redb::Error) -> AnyError {
    AnyError::new(&e)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry>> {
        let read = || -> Result<Vec<Entry>, redb::Error> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(ENTRIES)?;
            let bounds: (Bound<u64>, Bound<u64>) = (range.start_bound().cloned(), range.end_bound().cloned());
            let mut entries = Vec::new();
            for item in table.range::<u64>(bounds)? {
                let (index, bytes) = item?;
                entries.push(decode_entry(index.value(), bytes.value())?);
            }
            Ok(entries)
        };
        let entries = read().map_err(|e| StorageIOError::read_logs(io_error(e)))?;
        debug_assert!(entries.windows(2).all(|w| w[0].log_id.index + 1 == w[1].log_id.index), "hole in the log");
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<RaftNodeId>> =
            self.read_meta(LAST_PURGED).map_err(|e| StorageIOError::read_logs(io_error(e)))?;
        let last_entry = self.last_entry_log_id().map_err(|e| StorageIOError::read_logs(io_error(e)))?;
        assert!(last_entry.is_none() || last_entry > last_purged_log_id, "an entry at or below the last purged one");
        let last_log_id = last_entry.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftNodeId>) -> StorageResult<()> {
        self.write_meta(VOTE, vote, Durability::Immediate)
            .await
            .map_err(|e| StorageIOError::write_vote(io_error(e)).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<RaftNodeId>>> {
        self.read_meta(VOTE).map_err(|e| StorageIOError::read_vote(io_error(e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<RaftNodeId>>) -> StorageResult<()> {
        // Not fsynced on its own: it only saves replaying the log from the leader after a
        // restart, and it reaches the disk with the next entry or vote written.
        self.write_meta(COMMITTED, &committed, Durability::None)
            .await
            .map_err(|e| StorageIOError::write(io_error(e)).into())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<RaftNodeId>>> {
        let committed: Option<Option<LogId<RaftNodeId>>> =
            self.read_meta(COMMITTED).map_err(|e| StorageIOError::read(io_error(e)))?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = encode(&entry).map_err(|e| StorageIOError::write_logs(io_error(e)))?;
            encoded.push((entry.log_id.index, bytes));
        }
        let result = self
            .write(move |txn| {
                let mut table = txn.open_table(ENTRIES)?;
                let mut expected = table.last()?.map(|(index, _)| index.value() + 1);
                for (index, bytes) in &encoded {
                    // openraft truncates before it appends over a conflict, so appends
                    // always extend the log (the first one after a purge may start anywhere).
                    assert!(expected.is_none_or(|e| e == *index), "append at {index}, expected {expected:?}");
                    table.insert(*index, bytes.as_slice())?;
                    expected = Some(index + 1);
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let message = e.to_string();
                callback.log_io_completed(Err(std::io::Error::other(message)));
                Err(StorageIOError::write_logs(io_error(e)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<RaftNodeId>) -> StorageResult<()> {
        let since = log_id.index;
        self.write(move |txn| {
            txn.open_table(ENTRIES)?.retain_in::<u64, _>(since.., |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(io_error(e)).into())
    }

    async fn purge(&mut self, log_id: LogId<RaftNodeId>) -> StorageResult<()> {
        let last_purged: Option<LogId<RaftNodeId>> =
            self.read_meta(LAST_PURGED).map_err(|e| StorageIOError::write_logs(io_error(e)))?;
        assert!(last_purged <= Some(log_id), "purge up to {log_id} after purging up to {last_purged:?}");
        let bytes = encode(&log_id).map_err(|e| StorageIOError::write_logs(io_error(e)))?;
        let upto = log_id.index;
        // The last purged id and the deletion commit together.
        self.write(move |txn| {
            txn.open_table(META)?.insert(LAST_PURGED, bytes.as_slice())?;
            txn.open_table(ENTRIES)?.retain_in::<u64, _>(..=upto, |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(io_error(e)).into())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::kv::Command;
    use crate::raft::disk::NodeDisk;

    fn storage(dir: &tempfile::TempDir) -> Storage {
        Storage::open(NodeDisk::Dir(dir.path().to_path_buf())).unwrap()
    }

    fn log_id(term: u64, index: u64) -> LogId<RaftNodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry { log_id: log_id(term, index), payload: EntryPayload::Normal(Command::ExpireSessions { now_ms: 0 }) }
    }

    async fn append(store: &mut LogStore, entries: Vec<Entry>) {
        // `LogFlushed` cannot be built outside openraft: go through its blocking helper.
        use openraft::storage::RaftLogStorageExt;
        store.blocking_append(entries).await.unwrap();
    }

    async fn indexes(store: &mut LogStore) -> Vec<u64> {
        store.try_get_log_entries(..).await.unwrap().iter().map(|e| e.log_id.index).collect()
    }

    #[tokio::test]
    async fn entries_vote_committed_and_purged_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(&storage(&dir)).unwrap();
        assert_eq!(store.get_log_state().await.unwrap(), LogState { last_purged_log_id: None, last_log_id: None });
        append(&mut store, (1..=5).map(|i| entry(1, i)).collect()).await;
        append(&mut store, vec![entry(2, 6)]).await;
        let vote = Vote::new_committed(2, 1);
        store.save_vote(&vote).await.unwrap();
        store.save_committed(Some(log_id(2, 6))).await.unwrap();
        store.truncate(log_id(2, 6)).await.unwrap();
        store.purge(log_id(1, 2)).await.unwrap();
        drop(store);

        let mut store = LogStore::open(&storage(&dir)).unwrap();
        assert_eq!(indexes(&mut store).await, vec![3, 4, 5]);
        assert_eq!(store.try_get_log_entries(4..5).await.unwrap(), vec![entry(1, 4)]);
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(2, 6)));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state, LogState { last_purged_log_id: Some(log_id(1, 2)), last_log_id: Some(log_id(1, 5)) });

        // Purging everything leaves the last purged id as the last log id.
        store.purge(log_id(1, 5)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state, LogState { last_purged_log_id: Some(log_id(1, 5)), last_log_id: Some(log_id(1, 5)) });
        append(&mut store, vec![entry(3, 6)]).await;
        assert_eq!(indexes(&mut store).await, vec![6]);
    }
}
