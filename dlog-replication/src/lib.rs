//! Per-partition data replication for DLog: the leader (sequencer) of each partition
//! and epoch, flexible write and read quorums over copysets, the high watermark, and
//! epoch recovery with truncation of divergent tails.
//!
//! The engine is I/O-free (events in, decisions out) so that it can be tested
//! exhaustively and driven by a deterministic simulator; the server will own the
//! sockets, the logs and the clock. What is here so far:
//!
//! - [`quorum`]: a topic's RF, W and R ([`Quorums`], CP when W + R > RF) and the
//!   high-watermark rule ([`quorum_offset`]: the W-th highest log end).
//! - [`leader`]: one epoch's leader tracking how far each replica holds the log and
//!   moving the high watermark, only once W replicas hold the epoch's opening batch.
//! - [`recovery`]: a new leader sealing its epoch and choosing whom to catch up from
//!   (Raft's up-to-date rule over R answers); a replica refusing older epochs; where a
//!   follower truncates.
//! - [`follower`]: a follower's answer to each push (append, skip what it holds, ask
//!   for a resend, reconcile at a new epoch, refuse an older leader).
//!
//! Not yet: the leader's push scheduling, the epoch-opening control batch, copyset placement, and the
//! server's use of any of it (a cluster's partitions have one replica today).
//!
//! Boundary: this crate never sees Kafka wire types.

pub mod follower;
pub mod leader;
pub mod placement;
pub mod quorum;
pub mod recovery;

pub use follower::{Follower, Push, PushAnswer};
pub use leader::{AckError, Leader};
pub use placement::{assign, copysets, Node, PlacementError, DEFAULT_SCATTER_WIDTH};
pub use quorum::{quorum_offset, QuorumError, Quorums};
pub use recovery::{truncation_point, FencedEpoch, LogPosition, Recovery, RecoveryPlan, Replica};

#[cfg(test)]
mod properties {
    use dlog_core::{LeaderEpoch, NodeId, Offset};
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// In a consistent topic, whichever R replicas answer a new leader, the one it
        /// catches up from holds everything the old leader acknowledged (its high
        /// watermark: held by W replicas).
        #[test]
        fn any_read_quorum_holds_every_acknowledged_record(
            rf in 1u16..=5,
            ends in proptest::collection::vec(0i64..100, 5),
            w_seed in 0u16..5,
            r_seed in 0u16..5,
            order in Just((0..5).collect::<Vec<usize>>()).prop_shuffle(),
        ) {
            let w = 1 + w_seed % rf;
            // The smallest R that makes the topic consistent, or more.
            let r = (rf - w + 1 + r_seed % w).min(rf);
            let q = Quorums::new(rf, w, r).unwrap();
            prop_assume!(q.is_consistent());
            let replicas: Vec<NodeId> = (1..=i32::from(rf)).map(NodeId).collect();
            let ends: Vec<Offset> = ends[..usize::from(rf)].iter().map(|&e| Offset(e)).collect();
            let acked = quorum_offset(ends.iter().copied(), w).unwrap();
            let answering: Vec<usize> = order.into_iter().filter(|&i| i < usize::from(rf)).take(usize::from(r)).collect();
            let me = answering[0];
            let position = |i: usize| LogPosition { last_epoch: LeaderEpoch(1), log_end: ends[i] };
            let mut recovery = Recovery::start(replicas[me], &replicas, LeaderEpoch(2), q, position(me));
            let mut plan = recovery.plan();
            for &i in &answering[1..] {
                plan = recovery.answered(replicas[i], LeaderEpoch(2), position(i));
            }
            let plan = plan.expect("R answers make a plan");
            prop_assert!(plan.target.log_end >= acked, "plan {plan:?} misses acknowledged {acked:?}");
        }
    }
}
