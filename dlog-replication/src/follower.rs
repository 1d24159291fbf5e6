//! A follower of one partition: what it does with each push from a leader.
//!
//! Within one epoch the leader's log only grows, and a follower that has reconciled
//! with that leader holds a prefix of it, so a push that overlaps what the follower
//! holds carries the same records and the overlap is skipped. At the first push of a
//! new epoch the follower first reconciles: it asks the leader where its own last epoch
//! ends (OffsetForLeaderEpoch) and truncates a divergent tail ([`truncation_point`]).
//!
//! Invariants (asserted): the log end only goes back by reconciling; the high
//! watermark never passes the log end and only goes back when reconciling truncates
//! below it, which is reported (an acknowledged record lost: allowed in an available
//! topic only).
//!
//! [`truncation_point`]: crate::recovery::truncation_point

use dlog_core::{LeaderEpoch, Offset};

use crate::recovery::{FencedEpoch, Replica};

/// Records pushed by the leader of `epoch`: `count` of them from offset `base`, with the
/// leader's high watermark and log start offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Push {
    pub epoch: LeaderEpoch,
    pub base: Offset,
    pub count: i64,
    pub high_watermark: Offset,
    pub log_start: Offset,
}

/// What the follower does with a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushAnswer {
    /// Append the records after skipping the first `skip` (already held), then report
    /// [`Follower::appended`].
    Append { skip: i64 },
    /// Everything pushed is already held: acknowledge the log end again.
    Held { log_end: Offset },
    /// The push starts past this log's end: the leader resends from `from`.
    Gap { from: Offset },
    /// This log ends below the leader's log start, so no push can ever continue it:
    /// drop every record, start the log over at `at` (the pushed first batch), append
    /// the push there and report [`Follower::started_over`] before
    /// [`Follower::appended`].
    StartOver { at: Offset },
    /// A new epoch: reconcile first (ask where `last_epoch` ends in the leader's log,
    /// truncate, report [`Follower::reconciled`]); the push is dropped.
    Reconcile { last_epoch: LeaderEpoch },
    /// From a leader older than this replica's seal: refused.
    Fenced(FencedEpoch),
}

#[derive(Debug, Clone)]
pub struct Follower {
    replica: Replica,
    /// The epoch whose leader this follower has reconciled with.
    following: Option<LeaderEpoch>,
    log_end: Offset,
    last_epoch: LeaderEpoch,
    high_watermark: Offset,
}

impl Follower {
    /// A follower whose log ends at `log_end`, its last record of `last_epoch`.
    pub fn new(replica: Replica, log_end: Offset, last_epoch: LeaderEpoch, high_watermark: Offset) -> Follower {
        assert!(high_watermark <= log_end, "high watermark past the log end");
        Follower { replica, following: None, log_end, last_epoch, high_watermark }
    }

    pub fn log_end(&self) -> Offset {
        self.log_end
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    pub fn replica(&self) -> Replica {
        self.replica
    }

    /// Seals `epoch` at this replica (a new leader recovering it): older leaders'
    /// pushes are refused from now on.
    pub fn seal(&mut self, epoch: LeaderEpoch) -> Result<(), FencedEpoch> {
        self.replica.seal(epoch)
    }

    pub fn on_push(&mut self, push: Push) -> PushAnswer {
        if let Err(fenced) = self.replica.accepts(push.epoch) {
            return PushAnswer::Fenced(fenced);
        }
        if self.following != Some(push.epoch) {
            return PushAnswer::Reconcile { last_epoch: self.last_epoch };
        }
        self.advance_high_watermark(push.high_watermark);
        let end = push.base.plus(push.count);
        if push.log_start > self.log_end {
            // Only a push of the leader's first batch (the one holding its log start)
            // can start the log over there: one starting later would skip records the
            // leader holds. An empty push means the leader holds nothing from its log
            // start: start over at it.
            if push.count == 0 {
                return PushAnswer::StartOver { at: push.log_start };
            }
            if push.base <= push.log_start && push.base > self.log_end {
                return PushAnswer::StartOver { at: push.base };
            }
        }
        if push.base > self.log_end {
            PushAnswer::Gap { from: self.log_end }
        } else if end <= self.log_end {
            PushAnswer::Held { log_end: self.log_end }
        } else {
            PushAnswer::Append { skip: self.log_end.0 - push.base.0 }
        }
    }

    /// The log was started over at `at` (past its end, see [`PushAnswer::StartOver`];
    /// or anywhere when it held no epoch, at its leader's log start): it holds nothing
    /// below, and no epoch yet.
    pub fn started_over(&mut self, at: Offset) {
        assert!(at > self.log_end || self.last_epoch.0 < 0, "a log holding epochs starts over only past its end");
        self.log_end = at;
        self.last_epoch = LeaderEpoch(-1);
        self.high_watermark = self.high_watermark.min(at);
    }

    /// The pushed records of `epoch` were appended: the log now ends at `log_end`.
    pub fn appended(&mut self, epoch: LeaderEpoch, log_end: Offset) {
        assert_eq!(self.following, Some(epoch), "appended for an epoch not followed");
        assert!(log_end >= self.log_end, "an append moved the log end back");
        if log_end > self.log_end {
            self.last_epoch = epoch;
        }
        self.log_end = log_end;
    }

    /// Reconciled with the leader of `epoch`: the log was truncated to `log_end` (its
    /// last record now of `last_epoch`).
    ///
    /// Returns the high watermark this follower had if the truncation went below it:
    /// acknowledged records were lost, and the high watermark comes back to the log end.
    /// An available topic (W + R <= RF) allows that, and so does write caching once
    /// crashes drop enough unflushed copies; anywhere else it is a bug the caller must
    /// refuse (panic).
    ///
    /// Following the leader of `epoch` seals this replica at `epoch` (persist
    /// [`Follower::replica`] before acknowledging): an older leader that has not yet
    /// learnt it was replaced must not take this replica back and truncate records the
    /// newer leader committed with it.
    #[must_use = "a loss of acknowledged records must be checked against the topic's contract"]
    pub fn reconciled(&mut self, epoch: LeaderEpoch, log_end: Offset, last_epoch: LeaderEpoch) -> Option<Offset> {
        assert!(self.replica.seal(epoch).is_ok(), "reconciled with the leader of {epoch}, older than the seal");
        let lost = self.truncated(log_end, last_epoch);
        self.following = Some(epoch);
        lost
    }

    /// Truncated to `log_end` (its last record now of `last_epoch`) on the leader's
    /// answer, without following yet: the truncated log does not end in the answered
    /// epoch, so its last record may still differ from the leader's at that offset, and
    /// the next push asks again about the new last epoch (KIP-279). What it returns is
    /// as for [`Follower::reconciled`].
    #[must_use = "a loss of acknowledged records must be checked against the topic's contract"]
    pub fn truncated(&mut self, log_end: Offset, last_epoch: LeaderEpoch) -> Option<Offset> {
        assert!(log_end <= self.log_end, "reconciling only truncates");
        self.log_end = log_end;
        self.last_epoch = last_epoch;
        if self.high_watermark <= log_end {
            return None;
        }
        let lost = self.high_watermark;
        self.high_watermark = log_end;
        Some(lost)
    }

    fn advance_high_watermark(&mut self, leader_hw: Offset) {
        let hw = leader_hw.min(self.log_end);
        if hw > self.high_watermark {
            self.high_watermark = hw;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(epoch: i32, base: i64, count: i64, hw: i64) -> Push {
        Push { epoch: LeaderEpoch(epoch), base: Offset(base), count, high_watermark: Offset(hw), log_start: Offset(0) }
    }

    /// Found with real processes: a follower down while DeleteRecords moved the
    /// leader's log start past its log end was answered "gap" forever (the leader can
    /// only send from its log start), and never rejoined.
    #[test]
    fn a_log_ending_below_the_leaders_log_start_starts_over() {
        let mut f = Follower::new(Replica::new(LeaderEpoch(1)), Offset(1), LeaderEpoch(0), Offset(1));
        assert_eq!(f.reconciled(LeaderEpoch(1), Offset(1), LeaderEpoch(0)), None);
        let later = Push { log_start: Offset(5000), ..push(1, 5500, 10, 6000) };
        assert_eq!(f.on_push(later), PushAnswer::Gap { from: Offset(1) }, "not from the leader's first batch");
        let from_start = Push { log_start: Offset(5000), ..push(1, 4998, 10, 6000) };
        assert_eq!(f.on_push(from_start), PushAnswer::StartOver { at: Offset(4998) });
        f.started_over(Offset(4998));
        assert_eq!(f.on_push(from_start), PushAnswer::Append { skip: 0 });
        f.appended(LeaderEpoch(1), Offset(5008));
        assert_eq!(f.high_watermark(), Offset(4998), "capped by the log end before the append");
        assert_eq!(
            f.on_push(Push { log_start: Offset(5000), ..push(1, 5008, 0, 6000) }),
            PushAnswer::Held { log_end: Offset(5008) }
        );
        assert_eq!(f.high_watermark(), Offset(5008));
        // A leader holding nothing from its log start pushes nothing: start over there.
        let mut g = Follower::new(Replica::new(LeaderEpoch(1)), Offset(1), LeaderEpoch(0), Offset(1));
        assert_eq!(g.reconciled(LeaderEpoch(1), Offset(1), LeaderEpoch(0)), None);
        let empty = Push { log_start: Offset(9), ..push(1, 1, 0, 9) };
        assert_eq!(g.on_push(empty), PushAnswer::StartOver { at: Offset(9) });
        // Above the leader's log start, a push past the end is only a gap.
        let ahead = Push { log_start: Offset(5000), ..push(1, 5100, 10, 6000) };
        assert_eq!(f.on_push(ahead), PushAnswer::Gap { from: Offset(5008) });
    }

    #[test]
    fn a_new_epoch_is_reconciled_before_anything_is_appended() {
        let mut f = Follower::new(Replica::new(LeaderEpoch(1)), Offset(10), LeaderEpoch(1), Offset(8));
        assert_eq!(f.on_push(push(2, 10, 3, 10)), PushAnswer::Reconcile { last_epoch: LeaderEpoch(1) });
        // The leader of epoch 2 says epoch 1 ended at 9: our record 9 diverged.
        let t = crate::truncation_point(f.log_end(), (LeaderEpoch(1), Offset(9)), f.log_end());
        assert_eq!(f.reconciled(LeaderEpoch(2), t, LeaderEpoch(1)), None);
        assert_eq!(f.log_end(), Offset(9));
        assert_eq!(f.on_push(push(2, 9, 4, 11)), PushAnswer::Append { skip: 0 });
        f.appended(LeaderEpoch(2), Offset(13));
        assert_eq!(f.high_watermark(), Offset(9), "capped by the log end before the append");
        assert_eq!(f.on_push(push(2, 13, 1, 12)), PushAnswer::Append { skip: 0 });
        assert_eq!(f.high_watermark(), Offset(12));
    }

    #[test]
    fn resends_gaps_and_old_leaders() {
        let mut f = Follower::new(Replica::new(LeaderEpoch(3)), Offset(5), LeaderEpoch(3), Offset(5));
        assert_eq!(f.reconciled(LeaderEpoch(3), Offset(5), LeaderEpoch(3)), None);
        assert_eq!(f.on_push(push(3, 2, 2, 5)), PushAnswer::Held { log_end: Offset(5) });
        assert_eq!(f.on_push(push(3, 3, 4, 5)), PushAnswer::Append { skip: 2 });
        f.appended(LeaderEpoch(3), Offset(7));
        assert_eq!(f.on_push(push(3, 9, 1, 5)), PushAnswer::Gap { from: Offset(7) });
        f.seal(LeaderEpoch(4)).unwrap();
        assert!(matches!(f.on_push(push(3, 7, 1, 7)), PushAnswer::Fenced(_)));
        assert_eq!(f.high_watermark(), Offset(5));
    }

    /// Found by a simulation scenario: the leader of epoch 1, cut off from the controller
    /// but not from this follower, pushed after the follower had reconciled with the
    /// leader of epoch 2 (which had not sealed it), and took it back: the follower
    /// truncated a record epoch 2 had committed with it.
    #[test]
    fn following_an_epoch_seals_it() {
        let mut f = Follower::new(Replica::new(LeaderEpoch(1)), Offset(0), LeaderEpoch(-1), Offset(0));
        assert_eq!(f.on_push(push(2, 0, 2, 0)), PushAnswer::Reconcile { last_epoch: LeaderEpoch(-1) });
        assert_eq!(f.reconciled(LeaderEpoch(2), Offset(0), LeaderEpoch(-1)), None);
        assert_eq!(f.replica().sealed(), LeaderEpoch(2));
        assert_eq!(f.on_push(push(2, 0, 2, 2)), PushAnswer::Append { skip: 0 });
        f.appended(LeaderEpoch(2), Offset(2));
        assert!(matches!(f.on_push(push(1, 0, 1, 0)), PushAnswer::Fenced(_)), "the old leader is refused");
        assert_eq!(f.log_end(), Offset(2));
    }

    /// Found by the simulation: the leader lacks the asked epoch 3 and answers
    /// that its epoch 2 ends at 1; this log's epochs up to 2 end at 1 too, but its record
    /// 0 is of epoch 1, not 2. It truncates and asks again before following.
    #[test]
    fn a_log_not_ending_in_the_answered_epoch_asks_again() {
        // The log: epoch 1 at 0..1, epoch 3 at 1..5; the leader: epoch 2 at 0..1, then 4.
        let mut f = Follower::new(Replica::new(LeaderEpoch(3)), Offset(5), LeaderEpoch(3), Offset(0));
        assert_eq!(f.on_push(push(4, 1, 1, 0)), PushAnswer::Reconcile { last_epoch: LeaderEpoch(3) });
        let t = crate::truncation_point(f.log_end(), (LeaderEpoch(2), Offset(1)), Offset(1));
        assert_eq!(f.truncated(t, LeaderEpoch(1)), None);
        assert_eq!(f.on_push(push(4, 1, 1, 0)), PushAnswer::Reconcile { last_epoch: LeaderEpoch(1) });
        // Asked about epoch 1, the leader has none at or below it: an empty log.
        let t = crate::truncation_point(f.log_end(), (LeaderEpoch(-1), Offset(0)), Offset(0));
        assert_eq!(f.reconciled(LeaderEpoch(4), t, LeaderEpoch(-1)), None);
        assert_eq!(f.on_push(push(4, 0, 2, 0)), PushAnswer::Append { skip: 0 });
    }

    /// Found by the simulation: an available topic's new leader may lack records its
    /// followers saw acknowledged, and a follower then truncates below its high
    /// watermark. That is the topic's contract, not a reason to crash the broker; the
    /// caller learns of the loss and refuses it where the topic promises none.
    #[test]
    fn truncating_below_the_high_watermark_reports_the_loss() {
        let mut f = Follower::new(Replica::default(), Offset(10), LeaderEpoch(0), Offset(8));
        assert_eq!(f.reconciled(LeaderEpoch(1), Offset(8), LeaderEpoch(0)), None);
        assert_eq!(f.reconciled(LeaderEpoch(2), Offset(7), LeaderEpoch(0)), Some(Offset(8)));
        assert_eq!(f.high_watermark(), Offset(7));
        assert_eq!(f.log_end(), Offset(7));
    }
}
