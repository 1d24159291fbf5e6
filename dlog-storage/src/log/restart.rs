//! Starting a log over at a later offset: a replica whose log ends below its leader's
//! log start (it was down while DeleteRecords or retention removed everything it could
//! fetch, or its disk was wiped) can never catch up by appending, so it drops every
//! record and continues from the leader's first batch (Kafka's
//! `truncateFullyAndStartAt`).

use super::*;

impl PartitionLog {
    /// Removes every record and makes the log empty at `base` (its log start and log
    /// end), with an empty leader-epoch cache and producer state: the next replicated
    /// append must start at `base`. Forward past the log end, or anywhere when the log
    /// holds no record (a replica that has nothing moves to its leader's log start).
    ///
    /// Crash-safe: the new log start is persisted first, then the epoch cache,
    /// snapshots and segments go (newest first), then the empty segment at `base` is
    /// created. A crash part-way reopens either a prefix of the old log (which is then
    /// started over again) or the empty log at `base`.
    pub fn restart_at(&mut self, base: Offset) -> Result<()> {
        self.ensure_writable()?;
        assert!(
            base > self.next_offset || self.log_start_offset == self.next_offset,
            "a log holding records starts over only past its end ({base} <= {})",
            self.next_offset
        );
        checkpoint::write(&self.dir, LOG_START_FILE, &base.0.to_be_bytes())?;
        self.epochs = EpochCache::default();
        epochs::write(&self.dir, &self.epochs)?;
        for s in producer_state::list_snapshots(&self.dir)? {
            producer_state::remove_snapshot(&self.dir, s)?;
        }
        while let Some(seg) = self.segments.pop() {
            seg.delete_files()?;
        }
        checkpoint::sync_dir(&self.dir)?;
        let fresh = match Segment::create(&self.dir, base) {
            Ok(fresh) => fresh,
            Err(e) => {
                // No segment at all: nothing in memory describes the files any more.
                self.failed = true;
                return Err(e);
            }
        };
        checkpoint::sync_dir(&self.dir)?;
        self.segments.push(fresh);
        self.next_offset = base;
        self.log_start_offset = base;
        self.flushed_offset = base;
        self.begun_offset = base;
        self.unbegun_since_ms = None;
        self.active_first_append_ms = None;
        self.producers = ProducerStateMap::default();
        self.replace_recovery_point(RecoveryPoint { flushed: base, segment_base: base, position: 0, max_ts: None })?;
        tracing::info!(dir = %self.dir.display(), log_start_offset = %base, "started the log over");
        self.check_invariants();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{epochs_of, open, read_everything, small, stored};
    use super::*;

    #[test]
    fn a_log_started_over_holds_nothing_and_continues_from_its_new_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        for base in 0..3 {
            log.append_replicated(&stored(base * 2, 2, 1), 0).unwrap();
        }
        log.flush().unwrap();
        log.restart_at(Offset(40)).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (Offset(40), Offset(40)));
        assert!(log.latest_epoch().is_none());
        assert!(read_everything(&log).is_empty());
        assert!(matches!(log.append_replicated(&stored(6, 2, 1), 0), Err(StorageError::NonContiguous { .. })));
        log.append_replicated(&stored(40, 3, 2), 0).unwrap();
        assert_eq!(epochs_of(&log), vec![(2, 40)]);
        log.close().unwrap();

        let log = PartitionLog::open(dir.path(), small(), 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (Offset(40), Offset(43)));
        assert_eq!(epochs_of(&log), vec![(2, 40)]);
        assert_eq!(log.read(Offset(40), 1 << 20, Offset(43)).unwrap().bytes.len(), stored(40, 3, 2).len());
    }

    #[test]
    fn a_crash_after_starting_over_reopens_the_empty_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        log.append_replicated(&stored(0, 5, 1), 0).unwrap();
        log.restart_at(Offset(100)).unwrap();
        drop(log); // no clean close
        let log = PartitionLog::open(dir.path(), small(), 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (Offset(100), Offset(100)));
        assert!(log.latest_epoch().is_none());
    }
}
