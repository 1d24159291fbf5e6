//! A topic's quorums and the rule that turns replica positions into a high watermark.

use dlog_core::Offset;

/// Why a topic's quorums are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    #[error("replication.factor must be at least 1, got {0}")]
    NoReplicas(u16),
    #[error("write.quorum {write} must be between 1 and replication.factor {rf}")]
    Write { write: u16, rf: u16 },
    #[error("read.quorum {read} must be between 1 and replication.factor {rf}")]
    Read { read: u16, rf: u16 },
}

/// Replication factor (RF), write quorum (W) and read quorum (R) of a topic.
///
/// Invariant: `1 <= W <= RF` and `1 <= R <= RF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorums {
    replication_factor: u16,
    write: u16,
    read: u16,
}

impl Quorums {
    pub fn new(replication_factor: u16, write: u16, read: u16) -> Result<Quorums, QuorumError> {
        let rf = replication_factor;
        if rf == 0 {
            return Err(QuorumError::NoReplicas(rf));
        }
        if !(1..=rf).contains(&write) {
            return Err(QuorumError::Write { write, rf });
        }
        if !(1..=rf).contains(&read) {
            return Err(QuorumError::Read { read, rf });
        }
        Ok(Quorums { replication_factor: rf, write, read })
    }

    /// DLog's defaults on a cluster of `brokers`: RF 3 (fewer on a smaller cluster),
    /// W 2 and R 2 (at most RF), which is consistent (W + R > RF) at every size.
    pub fn defaults(brokers: usize) -> Quorums {
        let rf = brokers.clamp(1, 3) as u16;
        let q = rf.min(2);
        Quorums::new(rf, q, q).expect("defaults are valid")
    }

    pub fn replication_factor(self) -> u16 {
        self.replication_factor
    }

    pub fn write(self) -> u16 {
        self.write
    }

    pub fn read(self) -> u16 {
        self.read
    }

    /// CP: every read quorum meets every write quorum (W + R > RF), so a new leader
    /// that hears from R replicas always hears from one holding every acknowledged
    /// record. AP otherwise.
    pub fn is_consistent(self) -> bool {
        self.write + self.read > self.replication_factor
    }
}

/// The high watermark the log end offsets of an epoch's replicas allow: the W-th
/// highest of them (the leader's own included), or `None` while fewer than W replicas
/// have reported. Records below it are held by at least W replicas.
pub fn quorum_offset(log_ends: impl IntoIterator<Item = Offset>, write: u16) -> Option<Offset> {
    let mut ends: Vec<Offset> = log_ends.into_iter().collect();
    let w = usize::from(write);
    if w == 0 || ends.len() < w {
        return None;
    }
    ends.sort_unstable_by(|a, b| b.cmp(a));
    Some(ends[w - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums_are_checked_and_classified() {
        assert_eq!(Quorums::new(0, 1, 1), Err(QuorumError::NoReplicas(0)));
        assert_eq!(Quorums::new(3, 4, 1), Err(QuorumError::Write { write: 4, rf: 3 }));
        assert_eq!(Quorums::new(3, 2, 0), Err(QuorumError::Read { read: 0, rf: 3 }));
        assert!(Quorums::new(3, 2, 2).unwrap().is_consistent());
        assert!(!Quorums::new(3, 1, 1).unwrap().is_consistent());
        assert!(Quorums::new(3, 3, 1).unwrap().is_consistent());
        for n in 1..8 {
            let d = Quorums::defaults(n);
            assert!(d.is_consistent(), "defaults on {n} brokers: {d:?}");
            assert_eq!(usize::from(d.replication_factor()), n.min(3));
        }
    }

    #[test]
    fn the_high_watermark_is_the_w_th_highest_log_end() {
        let ends = [Offset(10), Offset(4), Offset(7)];
        assert_eq!(quorum_offset(ends, 1), Some(Offset(10)));
        assert_eq!(quorum_offset(ends, 2), Some(Offset(7)));
        assert_eq!(quorum_offset(ends, 3), Some(Offset(4)));
        assert_eq!(quorum_offset(ends, 4), None);
        assert_eq!(quorum_offset([], 1), None);
    }
}
