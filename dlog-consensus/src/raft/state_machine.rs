//! The replicated state machine: openraft's [`RaftStateMachine`] and
//! [`RaftSnapshotBuilder`] over a [`KvState`], with snapshots in a file.
//!
//! Applying an entry applies its [`Command`](crate::kv::Command) to the node's
//! [`KvState`] and broadcasts its notifications to the node's watchers, on every node,
//! in log order. The state lives in memory (`SharedState`, shared with the store's
//! reads); what makes it durable is the snapshot file plus the log after it: a restart
//! installs the newest snapshot and openraft replays the committed entries after it.
//!
//! A snapshot is [`KvState::snapshot`] with openraft's [`SnapshotMeta`] (last applied
//! log id and membership), in one file, `snapshot.bin`, replaced atomically: written
//! to a temporary file, fsynced, renamed over the old one, and the directory fsynced
//! (on a simulated disk, replaced atomically and durably at once: see [`disk`](super::disk)).

use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::disk::Storage;
use super::{Applied, RaftNodeId, TypeConfig};
use crate::kv::{KvState, SnapshotError};
use crate::store::StoreEvent;

/// The snapshot file in a node's directory.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";
/// The first byte of the snapshot file: the encoding that follows.
const SNAPSHOT_FILE_FORMAT_V1: u8 = 1;

type Entry = openraft::Entry<TypeConfig>;
type StorageResult<T> = Result<T, StorageError<RaftNodeId>>;
type Meta = SnapshotMeta<RaftNodeId, BasicNode>;

/// The node's key space as applied, shared by the state machine (which writes it) and
/// the store (which reads it and subscribes watchers).
#[derive(Debug)]
pub(crate) struct SharedState {
    kv: RwLock<KvState>,
    events: broadcast::Sender<StoreEvent>,
}

impl SharedState {
    pub(crate) fn new(kv: KvState, watch_capacity: usize) -> SharedState {
        assert!(watch_capacity > 0, "watch capacity must be positive");
        let (events, _) = broadcast::channel(watch_capacity);
        SharedState { kv: RwLock::new(kv), events }
    }

    /// Runs `f` over the state as applied; keep it short (the applier waits).
    pub(crate) fn read<R>(&self, f: impl FnOnce(&KvState) -> R) -> R {
        f(&self.kv.read().expect("a command panicked while applied: the state is unknown"))
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KvState> {
        self.kv.write().expect("a command panicked while applied: the state is unknown")
    }
}

/// A snapshot as kept on disk and sent to followers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: Meta,
    /// [`KvState::snapshot`] bytes.
    pub(crate) data: Vec<u8>,
}

/// The node's snapshot file and the newest snapshot, shared by the state machine and
/// its snapshot builders (which may finish after a newer snapshot was installed).
#[derive(Debug)]
struct SnapshotFile {
    storage: Storage,
    current: Mutex<Option<Arc<StoredSnapshot>>>,
}

impl SnapshotFile {
    /// Saves `snapshot` if it is newer than the current one; returns whether it did.
    /// Blocking: call it through [`Storage::run`].
    fn save(&self, snapshot: StoredSnapshot) -> std::io::Result<bool> {
        // Held across the file write, so that two saves cannot interleave.
        let mut current = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = current.as_ref() {
            if existing.meta.last_log_id >= snapshot.meta.last_log_id {
                return Ok(false);
            }
        }
        let bytes = snapshot.encode().map_err(std::io::Error::other)?;
        self.storage.replace_file(SNAPSHOT_FILE, &bytes)?;
        *current = Some(Arc::new(snapshot));
        Ok(true)
    }

    fn current(&self) -> Option<Arc<StoredSnapshot>> {
        self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// Why the snapshot file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadSnapshotError {
    #[error("cannot read the snapshot file: {0}")]
    Io(#[from] std::io::Error),
    #[error("undecodable snapshot file: {0}")]
    Decode(String),
    #[error("bad snapshot: {0}")]
    State(#[from] SnapshotError),
}

impl StoredSnapshot {
    /// The snapshot file's bytes: a format byte, then the snapshot in postcard.
    fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_extend(self, vec![SNAPSHOT_FILE_FORMAT_V1])
    }

    /// The snapshot in the snapshot file's bytes, and the state it holds, restored.
    fn decode(bytes: &[u8]) -> Result<(StoredSnapshot, KvState), LoadSnapshotError> {
        let Some((&format, body)) = bytes.split_first() else {
            return Err(LoadSnapshotError::Decode("empty file".to_string()));
        };
        if format != SNAPSHOT_FILE_FORMAT_V1 {
            return Err(LoadSnapshotError::Decode(format!("unknown format {format}")));
        }
        let snapshot: StoredSnapshot =
            postcard::from_bytes(body).map_err(|e| LoadSnapshotError::Decode(e.to_string()))?;
        let kv = KvState::restore(&snapshot.data)?;
        Ok((snapshot, kv))
    }
}

/// Reads the snapshot file of `storage`, if there is one.
pub(crate) fn load_snapshot(storage: &Storage) -> Result<Option<(StoredSnapshot, KvState)>, LoadSnapshotError> {
    let Some(bytes) = storage.read_file(SNAPSHOT_FILE)? else { return Ok(None) };
    StoredSnapshot::decode(&bytes).map(Some)
}

/// The snapshot file's bytes for a snapshot of `data` ([`KvState::snapshot`] bytes)
/// described by `meta`, as the state machine writes them. For the fuzz targets
/// (`dlog-fuzz`).
#[doc(hidden)]
pub fn encode_snapshot_file(meta: Meta, data: Vec<u8>) -> Vec<u8> {
    StoredSnapshot { meta, data }.encode().expect("postcard encodes a snapshot")
}

/// Decodes snapshot file bytes as a node loading its snapshot does: the snapshot's
/// metadata and the state it holds. For the fuzz targets (`dlog-fuzz`).
#[doc(hidden)]
pub fn decode_snapshot_file(bytes: &[u8]) -> Result<(Meta, KvState), LoadSnapshotError> {
    StoredSnapshot::decode(bytes).map(|(snapshot, kv)| (snapshot.meta, kv))
}

/// openraft's state machine of one node.
pub(crate) struct StateMachine {
    shared: Arc<SharedState>,
    last_applied: Option<LogId<RaftNodeId>>,
    membership: StoredMembership<RaftNodeId, BasicNode>,
    snapshots: Arc<SnapshotFile>,
    /// Distinguishes snapshots of the same log id built by this process.
    snapshots_built: u64,
}

impl StateMachine {
    /// The state machine of `storage`, from its snapshot if it has one (already loaded
    /// into `shared` by the caller, see [`load_snapshot`]).
    pub(crate) fn new(storage: &Storage, shared: Arc<SharedState>, snapshot: Option<StoredSnapshot>) -> StateMachine {
        let (last_applied, membership) = match &snapshot {
            Some(s) => (s.meta.last_log_id, s.meta.last_membership.clone()),
            None => (None, StoredMembership::default()),
        };
        let snapshots =
            Arc::new(SnapshotFile { storage: storage.clone(), current: Mutex::new(snapshot.map(Arc::new)) });
        StateMachine { shared, last_applied, membership, snapshots, snapshots_built: 0 }
    }
}

fn snapshot_of(stored: &StoredSnapshot) -> Snapshot<TypeConfig> {
    Snapshot { meta: stored.meta.clone(), snapshot: Box::new(stored.data.clone()) }
}

async fn save_in_background(snapshots: Arc<SnapshotFile>, snapshot: StoredSnapshot) -> std::io::Result<bool> {
    let storage = snapshots.storage.clone();
    storage.run(move || snapshots.save(snapshot)).await?
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<RaftNodeId>>, StoredMembership<RaftNodeId, BasicNode>)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Applied>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        for entry in entries {
            assert!(
                Some(entry.log_id) > self.last_applied,
                "entry {} applied after {:?}",
                entry.log_id,
                self.last_applied
            );
            self.last_applied = Some(entry.log_id);
            responses.push(match entry.payload {
                EntryPayload::Blank => Applied::Internal,
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Applied::Internal
                }
                EntryPayload::Normal(command) => {
                    let mut kv = self.shared.write();
                    let (result, notifications) = kv.apply(command);
                    // Sent under the lock: watchers see changes in the order applied.
                    for n in &notifications {
                        // An error only means nobody watches.
                        let _ = self.shared.events.send(StoreEvent::Notification(n.clone()));
                    }
                    Applied::Command { result, notifications }
                }
            });
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.snapshots_built += 1;
        // The state is captured now, between two applies: the builder may finish later.
        let data = self.shared.read(KvState::snapshot);
        let snapshot_id = match self.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, self.snapshots_built),
            None => format!("none-{}", self.snapshots_built),
        };
        let meta = Meta { last_log_id: self.last_applied, last_membership: self.membership.clone(), snapshot_id };
        SnapshotBuilder { snapshot: Some(StoredSnapshot { meta, data }), snapshots: self.snapshots.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Vec<u8>>> {
        Ok(Box::default())
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Vec<u8>>) -> StorageResult<()> {
        // openraft installs only snapshots ahead of what was applied.
        assert!(meta.last_log_id >= self.last_applied, "installing a snapshot older than the state");
        let kv = KvState::restore(&snapshot).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::error(format!("bad snapshot: {e}")))
        })?;
        let stored = StoredSnapshot { meta: meta.clone(), data: *snapshot };
        save_in_background(self.snapshots.clone(), stored)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)))?;
        *self.shared.write() = kv;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        tracing::info!(snapshot = %meta, "installed a metadata snapshot from the leader");
        // Watchers missed the changes the snapshot jumps over.
        let _ = self.shared.events.send(StoreEvent::Reset);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        Ok(self.snapshots.current().map(|s| snapshot_of(&s)))
    }
}

/// Writes one snapshot, captured when it was created.
pub(crate) struct SnapshotBuilder {
    snapshot: Option<StoredSnapshot>,
    snapshots: Arc<SnapshotFile>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let snapshot = self.snapshot.take().expect("a snapshot builder builds once");
        let meta = snapshot.meta.clone();
        let built = snapshot_of(&snapshot);
        let saved = save_in_background(self.snapshots.clone(), snapshot)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)))?;
        if saved {
            tracing::debug!(snapshot = %meta, "metadata snapshot written");
        }
        Ok(built)
    }
}
