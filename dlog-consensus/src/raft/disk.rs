//! Where a node keeps its data: a directory on the real disk, or a [`SimDisk`] for the
//! deterministic simulation.
//!
//! A node touches its storage through two operations only: the Raft log as a redb
//! database, and whole files replaced atomically and durably (the snapshot). `Storage`
//! offers both over either medium, and runs the I/O where it belongs: on tokio's
//! blocking pool for a directory, inline for a simulated disk (the simulation runs on
//! one thread, and a blocking pool would make the order of events depend on the
//! machine's thread scheduling).
//!
//! # The simulated disk
//!
//! A [`SimDisk`] holds named files in memory, each with what a crash keeps (the
//! durable bytes) and what the process sees (its writes, synced or not). Writes and
//! length changes stay pending until the file is synced. [`SimDisk::crash`] is the
//! process dying: each pending change is kept or lost as the simulation decides (a
//! disk may have written back some dirty pages, in order, before the power went), and
//! every handle the dead process held fails from then on, so that a node that is
//! still shutting down cannot write after its crash. Whole-file replacement is atomic
//! and durable at once, as `write temp; fsync; rename; fsync dir` is on a real disk.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{Database, StorageBackend};

/// Where a node's data is.
#[derive(Debug, Clone)]
pub enum NodeDisk {
    /// A directory on the real disk (created if missing).
    Dir(PathBuf),
    /// A simulated disk, shared with the simulation that crashes it.
    Simulated(SimDisk),
}

/// An in-memory disk whose unsynced writes a crash may lose. Cheap to clone: clones
/// are the same disk. See the [module documentation](self).
#[derive(Clone, Default)]
pub struct SimDisk {
    inner: Arc<Mutex<DiskState>>,
}

#[derive(Default)]
struct DiskState {
    files: BTreeMap<String, SimFile>,
    /// Bumped by every crash; handles of an older incarnation fail.
    incarnation: u64,
    /// Counters, for reports and for the tests that a crash did lose something.
    syncs: u64,
    changes_lost: u64,
    fsync_lies: bool,
}

#[derive(Default, Clone)]
struct SimFile {
    /// What survives a crash.
    durable: Vec<u8>,
    /// What the process reads: `durable` with `pending` applied.
    current: Vec<u8>,
    /// Changes since the last sync, oldest first.
    pending: Vec<Change>,
}

#[derive(Clone)]
enum Change {
    Write { offset: usize, data: Vec<u8> },
    SetLen(usize),
}

impl Change {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            Change::Write { offset, data } => {
                let end = offset + data.len();
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[*offset..end].copy_from_slice(data);
            }
            Change::SetLen(len) => bytes.resize(*len, 0),
        }
    }
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        let sizes: BTreeMap<&str, usize> = state.files.iter().map(|(n, f)| (n.as_str(), f.current.len())).collect();
        f.debug_struct("SimDisk").field("files", &sizes).field("incarnation", &state.incarnation).finish()
    }
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn state(&self) -> MutexGuard<'_, DiskState> {
        // Every update completes under the lock without panicking midway.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The process using the disk dies. Pending changes reach the disk in order until
    /// the power goes: of a file's `n` pending changes, the first `cut(n)` (at most `n`)
    /// are kept and the rest lost. The handles of the dead process fail from now on.
    /// Returns how many changes were lost.
    pub fn crash(&self, cut: &mut dyn FnMut(usize) -> usize) -> u64 {
        let mut state = self.state();
        state.incarnation += 1;
        let mut lost = 0;
        for file in state.files.values_mut() {
            let pending = std::mem::take(&mut file.pending);
            let kept = cut(pending.len()).min(pending.len());
            for change in &pending[..kept] {
                change.apply(&mut file.durable);
            }
            lost += (pending.len() - kept) as u64;
            file.current = file.durable.clone();
        }
        state.changes_lost += lost;
        lost
    }

    /// A deliberately broken disk, to show the simulation catches lost data: when
    /// `lies`, a sync returns at once and makes nothing durable (as disks with volatile
    /// write caches that ignore flushes do), so a crash may lose acknowledged writes.
    pub fn set_fsync_lies(&self, lies: bool) {
        self.state().fsync_lies = lies;
    }

    /// Syncs so far, and changes lost by crashes so far.
    pub fn counters(&self) -> (u64, u64) {
        let state = self.state();
        (state.syncs, state.changes_lost)
    }

    /// The current incarnation: a new process opening the disk gets it.
    fn incarnation(&self) -> u64 {
        self.state().incarnation
    }

    /// Runs `f` on file `name` (created empty if missing) for `incarnation`.
    fn with_file<R>(&self, incarnation: u64, name: &str, f: impl FnOnce(&mut SimFile) -> R) -> io::Result<R> {
        let mut state = self.state();
        if state.incarnation != incarnation {
            return Err(io::Error::other(format!("simulated crash: incarnation {incarnation} is dead")));
        }
        Ok(f(state.files.entry(name.to_string()).or_default()))
    }
}

/// redb's view of one file of a [`SimDisk`], for one incarnation.
#[derive(Debug)]
struct SimBackend {
    disk: SimDisk,
    incarnation: u64,
    name: String,
}

fn out_of_range() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "read past the end of a simulated file")
}

impl StorageBackend for SimBackend {
    fn len(&self) -> io::Result<u64> {
        self.disk.with_file(self.incarnation, &self.name, |f| f.current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let offset = usize::try_from(offset).map_err(|_| out_of_range())?;
        self.disk.with_file(self.incarnation, &self.name, |f| {
            let source = f.current.get(offset..offset + out.len()).ok_or_else(out_of_range)?;
            out.copy_from_slice(source);
            Ok(())
        })?
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| out_of_range())?;
        self.disk.with_file(self.incarnation, &self.name, |f| {
            let change = Change::SetLen(len);
            change.apply(&mut f.current);
            f.pending.push(change);
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.disk.state();
        if state.incarnation != self.incarnation {
            return Err(io::Error::other("simulated crash: a dead process syncs"));
        }
        state.syncs += 1;
        if state.fsync_lies {
            return Ok(());
        }
        let file = state.files.entry(self.name.clone()).or_default();
        for change in std::mem::take(&mut file.pending) {
            change.apply(&mut file.durable);
        }
        debug_assert!(file.durable == file.current, "a synced file differs from what the process sees");
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let offset = usize::try_from(offset).map_err(|_| out_of_range())?;
        self.disk.with_file(self.incarnation, &self.name, |f| {
            let change = Change::Write { offset, data: data.to_vec() };
            change.apply(&mut f.current);
            f.pending.push(change);
        })
    }
}

/// A node's storage as the log store and state machine use it: a [`NodeDisk`] bound to
/// this process (for a simulated disk, its incarnation).
#[derive(Debug, Clone)]
pub(crate) enum Storage {
    Dir(PathBuf),
    Simulated { disk: SimDisk, incarnation: u64 },
}

impl Storage {
    /// Binds `disk` to the process opening it now.
    pub(crate) fn open(disk: NodeDisk) -> io::Result<Storage> {
        match disk {
            NodeDisk::Dir(dir) => {
                std::fs::create_dir_all(&dir)?;
                Ok(Storage::Dir(dir))
            }
            NodeDisk::Simulated(disk) => {
                let incarnation = disk.incarnation();
                Ok(Storage::Simulated { disk, incarnation })
            }
        }
    }

    /// Runs blocking I/O `f`: on the blocking pool for a directory, inline for a
    /// simulated disk (whose I/O is memory copies).
    pub(crate) async fn run<T, F>(&self, f: F) -> io::Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self {
            Storage::Dir(_) => {
                tokio::task::spawn_blocking(f).await.map_err(|e| io::Error::other(format!("storage task failed: {e}")))
            }
            Storage::Simulated { .. } => Ok(f()),
        }
    }

    /// Opens (or creates) the redb database `name`.
    pub(crate) fn open_database(&self, name: &str) -> Result<Database, redb::Error> {
        match self {
            Storage::Dir(dir) => Ok(Database::create(dir.join(name))?),
            Storage::Simulated { disk, incarnation } => {
                let backend = SimBackend { disk: disk.clone(), incarnation: *incarnation, name: name.to_string() };
                Ok(Database::builder().create_with_backend(backend)?)
            }
        }
    }

    /// The bytes of file `name`, or `None` if there is no such file.
    pub(crate) fn read_file(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match self {
            Storage::Dir(dir) => match std::fs::read(dir.join(name)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
            Storage::Simulated { disk, incarnation } => {
                let bytes = disk.with_file(*incarnation, name, |f| f.current.clone())?;
                // A file never written reads as missing (`with_file` made it empty).
                Ok((!bytes.is_empty()).then_some(bytes))
            }
        }
    }

    /// Replaces file `name` with `bytes`, atomically and durably: after a crash it holds
    /// either its old content or `bytes`. Blocking.
    pub(crate) fn replace_file(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        assert!(!bytes.is_empty(), "an empty file reads as missing");
        match self {
            Storage::Dir(dir) => replace_in_dir(dir, name, bytes),
            Storage::Simulated { disk, incarnation } => disk.with_file(*incarnation, name, |f| {
                *f = SimFile { durable: bytes.to_vec(), current: bytes.to_vec(), pending: Vec::new() };
            }),
        }
    }
}

/// Write a temporary file, fsync it, rename it over `name`, fsync the directory.
fn replace_in_dir(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let temp = dir.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(disk: &SimDisk) -> SimBackend {
        SimBackend { disk: disk.clone(), incarnation: disk.incarnation(), name: "f".into() }
    }

    #[test]
    fn a_crash_keeps_synced_writes_and_what_it_chooses_of_the_rest() {
        let disk = SimDisk::new();
        let file = backend(&disk);
        file.write(0, b"abcd").unwrap();
        file.sync_data().unwrap();
        file.write(0, b"x").unwrap();
        file.write(3, b"yz").unwrap();
        let mut out = [0u8; 5];
        file.read(0, &mut out).unwrap();
        assert_eq!(&out, b"xbcyz");

        // The first pending write reached the disk, the second did not.
        assert_eq!(disk.crash(&mut |n| n - 1), 1);
        assert!(file.read(0, &mut out[..1]).is_err(), "the dead process's handle fails");
        let file = backend(&disk);
        assert_eq!(file.len().unwrap(), 4);
        file.read(0, &mut out[..4]).unwrap();
        assert_eq!(&out[..4], b"xbcd");
        assert_eq!(disk.counters(), (1, 1));
    }

    #[test]
    fn replaced_files_are_durable_at_once() {
        let disk = SimDisk::new();
        let storage = Storage::open(NodeDisk::Simulated(disk.clone())).unwrap();
        assert_eq!(storage.read_file("snap").unwrap(), None);
        storage.replace_file("snap", b"one").unwrap();
        disk.crash(&mut |_| 0);
        assert!(storage.read_file("snap").is_err(), "bound to the dead incarnation");
        let storage = Storage::open(NodeDisk::Simulated(disk)).unwrap();
        assert_eq!(storage.read_file("snap").unwrap(), Some(b"one".to_vec()));
    }

    #[test]
    fn a_redb_database_on_a_sim_disk_keeps_its_committed_transactions() {
        const T: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("t");
        let disk = SimDisk::new();
        let storage = Storage::open(NodeDisk::Simulated(disk.clone())).unwrap();
        let db = storage.open_database("db").unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(T).unwrap().insert(1, 10).unwrap();
        txn.commit().unwrap();
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(redb::Durability::None).unwrap();
        txn.open_table(T).unwrap().insert(2, 20).unwrap();
        txn.commit().unwrap();
        // Lose every unsynced write: the durable commit stays, the other goes.
        disk.crash(&mut |_| 0);
        drop(db);
        let storage = Storage::open(NodeDisk::Simulated(disk)).unwrap();
        let db = storage.open_database("db").unwrap();
        use redb::ReadableDatabase;
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(T).unwrap();
        assert_eq!(table.get(1).unwrap().map(|v| v.value()), Some(10));
        assert_eq!(table.get(2).unwrap().map(|v| v.value()), None);
    }
}
