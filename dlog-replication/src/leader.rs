//! The leader (sequencer) of one partition in one epoch: it knows how far each replica
//! holds the log and moves the high watermark.
//!
//! The high watermark is the W-th highest log end offset among the replicas
//! ([`quorum_offset`]), with Raft's rule for a new epoch: it moves only once W replicas
//! hold the batch that opened the epoch (at `epoch_start`). Counting replicas that hold
//! only an older epoch's tail could commit a record a later leader overwrites (the Raft
//! paper's figure 8).
//!
//! Invariants (asserted): the high watermark never goes back and never passes the
//! leader's own log end; a replica's acknowledged position never goes back within the
//! epoch.

use std::collections::BTreeMap;

use dlog_core::{LeaderEpoch, NodeId, Offset};

use crate::quorum::{quorum_offset, Quorums};

/// Why an acknowledgement is ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("acknowledgement of epoch {got} at the leader of epoch {current}")]
    OtherEpoch { got: LeaderEpoch, current: LeaderEpoch },
    #[error("node {0} is not a replica of this partition")]
    NotAReplica(NodeId),
    #[error("node {node} acknowledged log end {log_end}, past the leader's {leader_end}")]
    PastLeader { node: NodeId, log_end: Offset, leader_end: Offset },
}

#[derive(Debug, Clone)]
pub struct Leader {
    me: NodeId,
    epoch: LeaderEpoch,
    quorums: Quorums,
    /// The offset of the batch that opened this epoch.
    epoch_start: Offset,
    /// Each replica's log end offset in this epoch as last acknowledged (the leader's
    /// own is its log end); `None`: not heard from in this epoch yet.
    positions: BTreeMap<NodeId, Option<Offset>>,
    /// The leader's log end: no replica holds more of this epoch. It can be past the
    /// leader's own counted position when that counts only fsynced records.
    written: Offset,
    high_watermark: Offset,
}

impl Leader {
    /// The leader of `epoch` over `replicas` (this node among them) whose opening batch
    /// is at `epoch_start`, starting from the high watermark it knew.
    ///
    /// Panics if `me` is not a replica or there are fewer replicas than W.
    pub fn new(
        me: NodeId,
        replicas: &[NodeId],
        epoch: LeaderEpoch,
        quorums: Quorums,
        epoch_start: Offset,
        high_watermark: Offset,
    ) -> Leader {
        assert!(replicas.contains(&me), "the leader {me} must be a replica of {replicas:?}");
        assert!(replicas.len() >= usize::from(quorums.write()), "fewer replicas than the write quorum");
        assert!(high_watermark <= epoch_start, "a high watermark past the epoch's first batch");
        let positions = replicas.iter().map(|&r| (r, None)).collect();
        Leader { me, epoch, quorums, epoch_start, positions, written: epoch_start, high_watermark }
    }

    pub fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The replicas counted in the quorum now: those holding this epoch's opening batch
    /// (Kafka's ISR, as Metadata reports it).
    pub fn in_quorum(&self) -> Vec<NodeId> {
        self.positions.iter().filter(|(_, p)| p.is_some_and(|p| p > self.epoch_start)).map(|(&n, _)| n).collect()
    }

    /// The leader's log ends at `log_end`, of which it counts only `position` (its
    /// fsynced part, when replicas acknowledge only what they fsynced): followers may
    /// acknowledge up to `log_end`, and W of them commit without the leader's own copy.
    /// Returns the new high watermark if it moved.
    pub fn appended_durably(&mut self, log_end: Offset, position: Offset) -> Option<Offset> {
        assert!(position <= log_end, "the leader counts {position}, past its log end {log_end}");
        assert!(log_end >= self.written, "the leader's log end went back");
        self.written = log_end;
        self.appended(position)
    }

    /// The leader appended locally up to `log_end`. Returns the new high watermark if it
    /// moved.
    pub fn appended(&mut self, log_end: Offset) -> Option<Offset> {
        self.written = self.written.max(log_end);
        let mine = self.positions.get_mut(&self.me).expect("the leader is a replica");
        assert!(mine.is_none_or(|p| log_end >= p), "the leader's log end went back");
        *mine = Some(log_end);
        self.advance()
    }

    /// Replica `node` reconciled with this leader and now ends at `log_end`: its
    /// position is that, even if lower than an earlier acknowledgement (it restarted
    /// and lost an unflushed tail). The high watermark never moves back; only what is
    /// counted from now on changes.
    pub fn reconciled(&mut self, node: NodeId, log_end: Offset) -> Result<(), AckError> {
        if log_end > self.written {
            return Err(AckError::PastLeader { node, log_end, leader_end: self.written });
        }
        if node == self.me {
            return Err(AckError::NotAReplica(node));
        }
        let position = self.positions.get_mut(&node).ok_or(AckError::NotAReplica(node))?;
        *position = Some(log_end);
        Ok(())
    }

    /// Replica `node` holds this epoch's log up to `log_end`. Returns the new high
    /// watermark if it moved.
    pub fn acknowledged(
        &mut self,
        node: NodeId,
        epoch: LeaderEpoch,
        log_end: Offset,
    ) -> Result<Option<Offset>, AckError> {
        if epoch != self.epoch {
            return Err(AckError::OtherEpoch { got: epoch, current: self.epoch });
        }
        let leader_end = self.written;
        if log_end > leader_end {
            return Err(AckError::PastLeader { node, log_end, leader_end });
        }
        let position = self.positions.get_mut(&node).ok_or(AckError::NotAReplica(node))?;
        // Acknowledgements may arrive out of order: keep the furthest.
        if position.is_none_or(|p| log_end > p) {
            *position = Some(log_end);
        }
        Ok(self.advance())
    }

    fn advance(&mut self) -> Option<Offset> {
        let known = self.positions.values().flatten().copied();
        let candidate = quorum_offset(known, self.quorums.write())?;
        // Raft's rule: only once W replicas hold the epoch's opening batch.
        if candidate <= self.epoch_start || candidate <= self.high_watermark {
            return None;
        }
        let leader_end = self.written;
        assert!(candidate <= leader_end, "high watermark {candidate} past the leader's log end {leader_end}");
        self.high_watermark = candidate;
        Some(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: i32) -> NodeId {
        NodeId(i)
    }

    fn leader(w: u16, start: i64) -> Leader {
        let q = Quorums::new(3, w, 2).unwrap();
        Leader::new(n(1), &[n(1), n(2), n(3)], LeaderEpoch(4), q, Offset(start), Offset(start))
    }

    #[test]
    fn the_high_watermark_follows_the_w_th_replica() {
        let mut l = leader(2, 10);
        assert_eq!(l.appended(Offset(11)), None, "alone, W = 2 is not met");
        assert_eq!(l.acknowledged(n(2), LeaderEpoch(4), Offset(11)), Ok(Some(Offset(11))));
        assert_eq!(l.appended(Offset(20)), None);
        assert_eq!(l.acknowledged(n(3), LeaderEpoch(4), Offset(15)), Ok(Some(Offset(15))));
        assert_eq!(l.acknowledged(n(2), LeaderEpoch(4), Offset(13)), Ok(None), "an older ack changes nothing");
        assert_eq!(l.high_watermark(), Offset(15));
        assert_eq!(l.in_quorum(), vec![n(1), n(2), n(3)]);
    }

    #[test]
    fn nothing_commits_before_w_replicas_hold_the_epochs_first_batch() {
        // Replicas 2 and 3 hold an older epoch's tail up to 10; this epoch opened at 10.
        let mut l = leader(2, 10);
        assert_eq!(l.appended(Offset(12)), None);
        assert_eq!(l.acknowledged(n(2), LeaderEpoch(4), Offset(10)), Ok(None), "holds only the old tail");
        assert_eq!(l.high_watermark(), Offset(10));
        assert!(l.in_quorum() == vec![n(1)]);
        assert_eq!(l.acknowledged(n(2), LeaderEpoch(4), Offset(12)), Ok(Some(Offset(12))));
    }

    #[test]
    fn stray_acknowledgements_are_refused() {
        let mut l = leader(2, 0);
        l.appended(Offset(5));
        assert_eq!(
            l.acknowledged(n(2), LeaderEpoch(3), Offset(5)),
            Err(AckError::OtherEpoch { got: LeaderEpoch(3), current: LeaderEpoch(4) })
        );
        assert_eq!(l.acknowledged(n(9), LeaderEpoch(4), Offset(5)), Err(AckError::NotAReplica(n(9))));
        assert!(matches!(l.acknowledged(n(2), LeaderEpoch(4), Offset(6)), Err(AckError::PastLeader { .. })));
        assert_eq!(l.high_watermark(), Offset(0));
    }

    #[test]
    fn without_write_caching_followers_may_commit_past_the_leaders_fsync() {
        let mut l = leader(2, 10);
        assert_eq!(l.appended_durably(Offset(20), Offset(11)), None, "only 11 fsynced here");
        assert_eq!(l.acknowledged(n(2), LeaderEpoch(4), Offset(20)), Ok(Some(Offset(11))));
        assert_eq!(l.acknowledged(n(3), LeaderEpoch(4), Offset(18)), Ok(Some(Offset(18))), "two others hold 18");
        assert!(matches!(l.acknowledged(n(3), LeaderEpoch(4), Offset(21)), Err(AckError::PastLeader { .. })));
        assert_eq!(l.appended_durably(Offset(20), Offset(20)), Some(Offset(20)));
    }

    #[test]
    fn a_reconciled_follower_counts_from_its_new_end() {
        let mut l = leader(2, 10);
        l.appended(Offset(20));
        assert_eq!(l.acknowledged(n(2), LeaderEpoch(4), Offset(15)), Ok(Some(Offset(15))));
        // Node 2 restarts, losing its unflushed tail: it now ends at 12.
        l.reconciled(n(2), Offset(12)).unwrap();
        assert_eq!(l.acknowledged(n(3), LeaderEpoch(4), Offset(14)), Ok(None), "15 is not held by two now");
        assert_eq!(l.high_watermark(), Offset(15), "the high watermark never moves back");
        assert_eq!(l.acknowledged(n(2), LeaderEpoch(4), Offset(20)), Ok(Some(Offset(20))));
        assert!(l.reconciled(n(3), Offset(21)).is_err());
        assert!(l.reconciled(n(1), Offset(5)).is_err(), "not the leader itself");
    }

    #[test]
    fn with_w_equal_one_the_leader_commits_alone() {
        let mut l = leader(1, 0);
        assert_eq!(l.appended(Offset(3)), Some(Offset(3)));
    }
}
