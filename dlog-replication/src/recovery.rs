//! Opening a new epoch: the new leader seals the epoch on the replicas, waits for R of
//! them (itself included) to say where their logs end, and catches up to the most
//! advanced before it appends the batch that opens its epoch.
//!
//! Why it is safe in a consistent topic (W + R > RF): every acknowledged record is held
//! by W replicas, so any R answers include one that holds it; the most advanced answer
//! (highest last epoch, then highest log end: Raft's up-to-date rule with the epoch as
//! the term) holds every acknowledged record. An available topic (W + R <= RF) elects
//! with its own answer alone and may lose acknowledged records; that is its contract.
//!
//! A replica, once sealed at an epoch, refuses appends from older epochs
//! ([`Replica::accepts`]).

use std::collections::BTreeMap;

use dlog_core::{LeaderEpoch, NodeId, Offset};

use crate::quorum::Quorums;

/// Where a replica's log ends, as it answers a seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// The epoch of its last record (`LeaderEpoch(-1)` for an empty log).
    pub last_epoch: LeaderEpoch,
    pub log_end: Offset,
}

impl LogPosition {
    /// Raft's up-to-date order: the later last epoch, then the longer log.
    fn key(self) -> (LeaderEpoch, Offset) {
        (self.last_epoch, self.log_end)
    }
}

/// What the new leader does once enough replicas answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPlan {
    /// The replica to catch up from (this node when it is the most advanced).
    pub source: NodeId,
    /// The source's position: the new epoch opens after it.
    pub target: LogPosition,
}

/// A new leader gathering seal answers for `epoch`.
#[derive(Debug, Clone)]
pub struct Recovery {
    me: NodeId,
    epoch: LeaderEpoch,
    needed: usize,
    replicas: Vec<NodeId>,
    answers: BTreeMap<NodeId, LogPosition>,
}

impl Recovery {
    /// Starts recovering `epoch` with this node's own position. A consistent topic
    /// waits for R answers; an available one goes on with its own.
    pub fn start(me: NodeId, replicas: &[NodeId], epoch: LeaderEpoch, quorums: Quorums, mine: LogPosition) -> Recovery {
        let mut r = Recovery::start_lacking_data(me, replicas, epoch, quorums);
        r.answers.insert(me, mine);
        r
    }

    /// As [`Recovery::start`], for a new leader whose log lacks records it once held
    /// (its node lost its data): its own position does not count toward the read
    /// quorum, which R other replicas must make, and it catches up from the most
    /// advanced of them. Counting it could miss every copy of an acknowledged record.
    pub fn start_lacking_data(me: NodeId, replicas: &[NodeId], epoch: LeaderEpoch, quorums: Quorums) -> Recovery {
        assert!(replicas.contains(&me), "the new leader {me} must be a replica of {replicas:?}");
        let needed = if quorums.is_consistent() { usize::from(quorums.read()) } else { 1 };
        Recovery { me, epoch, needed, replicas: replicas.to_vec(), answers: BTreeMap::new() }
    }

    pub fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }

    /// The replicas still to seal (never this node: its own position is given, or
    /// does not count).
    pub fn waiting_for(&self) -> Vec<NodeId> {
        self.replicas.iter().copied().filter(|r| *r != self.me && !self.answers.contains_key(r)).collect()
    }

    /// Replica `node` sealed `epoch` and answered `position`; the plan once enough
    /// replicas answered (every later answer gives the same or a better plan).
    pub fn answered(&mut self, node: NodeId, epoch: LeaderEpoch, position: LogPosition) -> Option<RecoveryPlan> {
        if epoch == self.epoch && self.replicas.contains(&node) && node != self.me {
            self.answers.insert(node, position);
        }
        self.plan()
    }

    /// The plan if enough replicas answered: catch up from the most advanced (this
    /// node on a tie).
    pub fn plan(&self) -> Option<RecoveryPlan> {
        if self.answers.len() < self.needed {
            return None;
        }
        let mine = self.answers.get(&self.me).map(|&p| (self.me, p));
        let (source, target) = self.answers.iter().map(|(&n, &p)| (n, p)).fold(mine, |best, (n, p)| match best {
            Some(b) if p.key() <= b.1.key() => Some(b),
            _ => Some((n, p)),
        })?;
        Some(RecoveryPlan { source, target })
    }
}

/// A replica's side of the epochs: the newest epoch it was sealed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replica {
    sealed: LeaderEpoch,
}

/// A seal or an append from an epoch this replica has moved past.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("epoch {got} is older than the sealed epoch {sealed}")]
pub struct FencedEpoch {
    pub got: LeaderEpoch,
    pub sealed: LeaderEpoch,
}

impl Replica {
    pub fn new(sealed: LeaderEpoch) -> Replica {
        Replica { sealed }
    }

    pub fn sealed(self) -> LeaderEpoch {
        self.sealed
    }

    /// Seals `epoch`: from now on appends of older epochs are refused. Sealing an older
    /// epoch than the current seal is refused.
    pub fn seal(&mut self, epoch: LeaderEpoch) -> Result<(), FencedEpoch> {
        if epoch < self.sealed {
            return Err(FencedEpoch { got: epoch, sealed: self.sealed });
        }
        self.sealed = epoch;
        Ok(())
    }

    /// Whether an append from the leader of `epoch` may be taken.
    pub fn accepts(self, epoch: LeaderEpoch) -> Result<(), FencedEpoch> {
        if epoch < self.sealed {
            Err(FencedEpoch { got: epoch, sealed: self.sealed })
        } else {
            Ok(())
        }
    }
}

/// Where a follower whose last epoch is `my_last_epoch` must truncate its log (ending at
/// `my_log_end`) before following, given the leader's answer to OffsetForLeaderEpoch for
/// that epoch: the largest epoch the leader has at or below it, and where that epoch
/// ends in the leader's log (KIP-101, KIP-279); and `my_answered_epoch_end`, where the
/// follower's own records of epochs at or below the answered one end.
///
/// When the leader lacks the follower's last epoch, the follower's records of the epochs
/// the leader lacks go too, even below the leader's end of the answered epoch: there the
/// leader holds records of the answered epoch or older (KIP-279). Unless the truncated
/// log then ends in the answered epoch (or is empty), the follower asks again about its
/// new last epoch ([`Follower::truncated`](crate::Follower::truncated)).
pub fn truncation_point(
    my_log_end: Offset,
    leader_answer: (LeaderEpoch, Offset),
    my_answered_epoch_end: Offset,
) -> Offset {
    assert!(my_answered_epoch_end <= my_log_end, "an epoch ends past the log end");
    my_log_end.min(leader_answer.1).min(my_answered_epoch_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(epoch: i32, end: i64) -> LogPosition {
        LogPosition { last_epoch: LeaderEpoch(epoch), log_end: Offset(end) }
    }

    const NODES: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

    #[test]
    fn a_consistent_topic_waits_for_r_answers_and_follows_the_most_advanced() {
        let cp = Quorums::new(3, 2, 2).unwrap();
        let mut r = Recovery::start(NodeId(1), &NODES, LeaderEpoch(5), cp, pos(3, 10));
        assert_eq!(r.plan(), None);
        assert_eq!(r.waiting_for(), vec![NodeId(2), NodeId(3)]);
        // An answer about another epoch does not count.
        assert_eq!(r.answered(NodeId(2), LeaderEpoch(4), pos(4, 8)), None);
        // A later epoch beats a longer log.
        let plan = r.answered(NodeId(2), LeaderEpoch(5), pos(4, 8)).unwrap();
        assert_eq!(plan, RecoveryPlan { source: NodeId(2), target: pos(4, 8) });
        // A longer log of that epoch beats it in turn.
        let plan = r.answered(NodeId(3), LeaderEpoch(5), pos(4, 9)).unwrap();
        assert_eq!(plan.source, NodeId(3));
    }

    #[test]
    fn an_available_topic_goes_on_alone_and_ties_stay_home() {
        let ap = Quorums::new(3, 1, 1).unwrap();
        let r = Recovery::start(NodeId(2), &NODES, LeaderEpoch(1), ap, pos(0, 4));
        assert_eq!(r.plan(), Some(RecoveryPlan { source: NodeId(2), target: pos(0, 4) }));
        let cp = Quorums::new(3, 2, 2).unwrap();
        let mut r = Recovery::start(NodeId(2), &NODES, LeaderEpoch(1), cp, pos(0, 4));
        assert_eq!(r.answered(NodeId(3), LeaderEpoch(1), pos(0, 4)).unwrap().source, NodeId(2));
    }

    /// A leader whose node lost its data (a wiped disk) held acknowledged records the
    /// others may lack: counted, its empty answer and one stale one would make a read
    /// quorum holding no copy. It needs R answers besides its own.
    #[test]
    fn a_leader_that_lost_its_data_needs_r_other_answers() {
        let cp = Quorums::new(3, 2, 2).unwrap();
        let mut r = Recovery::start_lacking_data(NodeId(1), &NODES, LeaderEpoch(4), cp);
        assert_eq!(r.waiting_for(), vec![NodeId(2), NodeId(3)], "never itself");
        assert_eq!(r.answered(NodeId(1), LeaderEpoch(4), pos(3, 0)), None, "its own answer does not count");
        assert_eq!(r.answered(NodeId(2), LeaderEpoch(4), pos(2, 5)), None, "one answer is not a read quorum");
        let plan = r.answered(NodeId(3), LeaderEpoch(4), pos(3, 9)).unwrap();
        assert_eq!(plan, RecoveryPlan { source: NodeId(3), target: pos(3, 9) });
        assert_eq!(r.waiting_for(), vec![]);
        let ap = Quorums::new(3, 1, 1).unwrap();
        let mut r = Recovery::start_lacking_data(NodeId(1), &NODES, LeaderEpoch(4), ap);
        assert_eq!(r.plan(), None, "even an available topic needs one replica that holds its data");
        assert_eq!(r.answered(NodeId(2), LeaderEpoch(4), pos(2, 5)).unwrap().source, NodeId(2));
    }

    #[test]
    fn sealed_replicas_refuse_older_epochs() {
        let mut r = Replica::new(LeaderEpoch(2));
        assert!(r.accepts(LeaderEpoch(2)).is_ok());
        r.seal(LeaderEpoch(3)).unwrap();
        assert_eq!(r.accepts(LeaderEpoch(2)), Err(FencedEpoch { got: LeaderEpoch(2), sealed: LeaderEpoch(3) }));
        assert!(r.seal(LeaderEpoch(1)).is_err());
        assert_eq!(r.sealed(), LeaderEpoch(3));
        assert_eq!(truncation_point(Offset(12), (LeaderEpoch(2), Offset(9)), Offset(12)), Offset(9));
        assert_eq!(truncation_point(Offset(7), (LeaderEpoch(2), Offset(9)), Offset(7)), Offset(7));
    }

    /// Found by the simulation: a follower whose last epoch the leader lacks
    /// kept its records of that epoch below the leader's end of an older one.
    #[test]
    fn records_of_epochs_the_leader_lacks_are_truncated() {
        // Follower: epoch 2 at 8..19, epoch 6 at 19..37. Leader: epoch 2 at 8..19, epoch
        // 3 at 19..20, epoch 7 from 20. Asked about epoch 6, the leader answers (3, 20);
        // the follower's own epochs up to 3 end at 19, and its record 19 (epoch 6)
        // differs from the leader's (epoch 3).
        assert_eq!(truncation_point(Offset(37), (LeaderEpoch(3), Offset(20)), Offset(19)), Offset(19));
    }
}
