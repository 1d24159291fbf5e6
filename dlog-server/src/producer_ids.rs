//! The producer id allocator: ids are handed out from blocks whose end is persisted in
//! `meta/producer-id-block` *before* any id of the block is given, so a restart (clean
//! or not) starts past every id ever handed out and never reuses one.
//!
//! The file holds the end of the last allocated block as decimal text; it is replaced
//! atomically (write a temporary file, fsync, rename, fsync the directory). One
//! allocator per node, shared by all shards behind a mutex: InitProducerId is a cold
//! path and a block's fsync is paid once per [`BLOCK_SIZE`] ids.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use dlog_core::{Error, Result};

/// Ids per persisted block.
pub const BLOCK_SIZE: i64 = 1000;

const FILE_NAME: &str = "producer-id-block";

/// Reserves a block of `size` ids across a cluster and returns its first id.
pub type Reserve = Box<dyn FnMut(i64) -> Result<i64> + Send>;

pub struct ProducerIdAllocator {
    /// Where a single node persists its block end; unused with `reserve`.
    dir: PathBuf,
    /// A cluster member's blocks come from the metadata store instead.
    reserve: Option<Reserve>,
    /// The next id to hand out; every id below it may have been handed out.
    next: i64,
    /// The persisted block end: ids in `next..block_end` are reserved for this run.
    block_end: i64,
}

fn storage(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{}: {e}", path.display()))
}

impl ProducerIdAllocator {
    /// Opens the allocator of the metadata directory `dir` (created by the broker).
    /// A damaged file is an error: guessing could hand out an id twice.
    pub fn open(dir: &Path) -> Result<ProducerIdAllocator> {
        let path = dir.join(FILE_NAME);
        let end =
            match std::fs::read_to_string(&path) {
                Ok(text) => text.trim().parse::<i64>().ok().filter(|&e| e >= 0).ok_or_else(|| {
                    storage(&path, format!("not a producer id block end: {text:?}; refusing to guess"))
                })?,
                Err(e) if e.kind() == ErrorKind::NotFound => 0,
                Err(e) => return Err(storage(&path, e)),
            };
        Ok(ProducerIdAllocator { dir: dir.to_path_buf(), reserve: None, next: end, block_end: end })
    }

    /// An allocator of a cluster member: each block is reserved cluster-wide by
    /// `reserve` (a compare-and-set in the metadata store), so no two nodes ever hand
    /// out the same id.
    pub fn cluster(reserve: Reserve) -> ProducerIdAllocator {
        ProducerIdAllocator { dir: PathBuf::new(), reserve: Some(reserve), next: 0, block_end: 0 }
    }

    /// A new producer id, never handed out before by this data directory.
    pub fn allocate(&mut self) -> Result<i64> {
        if self.next >= self.block_end {
            if let Some(reserve) = &mut self.reserve {
                let start = reserve(BLOCK_SIZE)?;
                assert!(start >= self.block_end, "reserved blocks only move forward");
                self.next = start;
                self.block_end = start + BLOCK_SIZE;
            } else {
                let end = self
                    .block_end
                    .checked_add(BLOCK_SIZE)
                    .ok_or_else(|| Error::Storage("producer ids are exhausted".into()))?;
                self.persist(end)?;
                self.block_end = end;
            }
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }

    /// Whether `id` may have been handed out (by this data directory; in a cluster, by
    /// any node: every id below this node's latest block was reserved by someone).
    pub fn was_issued(&self, id: i64) -> bool {
        let end = if self.reserve.is_some() { self.block_end } else { self.next };
        (0..end).contains(&id)
    }

    fn persist(&self, end: i64) -> Result<()> {
        let path = self.dir.join(FILE_NAME);
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(format!("{end}\n").as_bytes())?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| storage(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = ProducerIdAllocator::open(dir.path()).unwrap();
        assert_eq!((a.allocate().unwrap(), a.allocate().unwrap()), (0, 1));
        assert!(a.was_issued(1) && !a.was_issued(2) && !a.was_issued(-1));
        drop(a); // a crash: the rest of the block is skipped
        let mut a = ProducerIdAllocator::open(dir.path()).unwrap();
        assert_eq!(a.allocate().unwrap(), BLOCK_SIZE);
        assert!(a.was_issued(5), "ids of the old block may have been handed out");
        for _ in 1..BLOCK_SIZE {
            a.allocate().unwrap();
        }
        assert_eq!(a.allocate().unwrap(), 2 * BLOCK_SIZE, "crosses into a new persisted block");
        assert_eq!(std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap().trim(), "3000");
    }

    #[test]
    fn cluster_blocks_come_from_the_reservation() {
        let mut next_block = 5000;
        let mut a = ProducerIdAllocator::cluster(Box::new(move |size| {
            let start = next_block;
            next_block += size;
            Ok(start)
        }));
        assert_eq!(a.allocate().unwrap(), 5000);
        for _ in 1..BLOCK_SIZE {
            a.allocate().unwrap();
        }
        assert_eq!(a.allocate().unwrap(), 5000 + BLOCK_SIZE, "the next reserved block");
        assert!(a.was_issued(10) && !a.was_issued(5000 + 2 * BLOCK_SIZE));
        let mut failing = ProducerIdAllocator::cluster(Box::new(|_| Err(Error::Storage("no quorum".into()))));
        assert!(failing.allocate().is_err());
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "12x").unwrap();
        assert!(ProducerIdAllocator::open(dir.path()).is_err());
    }
}
