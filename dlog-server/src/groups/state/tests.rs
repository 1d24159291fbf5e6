//! Every transition of the group state machine, driven by events and a fake clock.

use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn config(delay: u64) -> GroupConfig {
    GroupConfig { initial_rebalance_delay_ms: delay, ..GroupConfig::default() }
}

fn group() -> Group {
    Group::new("g", config(0))
}

fn join_req(token: Token, member_id: &str, protocols: &[&str]) -> Join {
    Join {
        token,
        member_id: member_id.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols.iter().map(|p| (p.to_string(), Bytes::from(format!("meta-{p}")))).collect(),
        require_known_member_id: true,
    }
}

fn static_req(token: Token, member_id: &str, instance: &str) -> Join {
    Join { instance_id: Some(instance.into()), ..join_req(token, member_id, &["range"]) }
}

fn sync_req(token: Token, member_id: &str, generation: i32, assignments: &[(&str, &str)]) -> Sync {
    Sync {
        token,
        member_id: member_id.into(),
        instance_id: None,
        generation,
        protocol_type: Some("consumer".into()),
        protocol_name: None,
        assignments: assignments.iter().map(|(m, a)| (m.to_string(), Bytes::from(a.to_string()))).collect(),
    }
}

fn joined(out: &[Output], token: Token) -> JoinResult {
    for o in out {
        if let Output::Join(t, r) = o {
            if *t == token {
                return r.clone().unwrap_or_else(|e| panic!("join {token} failed: {e:?}"));
            }
        }
    }
    panic!("no answer to join {token} in {out:?}")
}

fn join_error(out: &[Output], token: Token) -> (Error, String) {
    for o in out {
        if let Output::Join(t, Err(e)) = o {
            if *t == token {
                return e.clone();
            }
        }
    }
    panic!("no failed join {token} in {out:?}")
}

fn synced(out: &[Output], token: Token) -> Result<SyncResult> {
    for o in out {
        if let Output::Sync(t, r) = o {
            if *t == token {
                return r.clone();
            }
        }
    }
    panic!("no answer to sync {token} in {out:?}")
}

fn answered(out: &[Output], token: Token) -> bool {
    out.iter().any(|o| matches!(o, Output::Join(t, _) | Output::Sync(t, _) if *t == token))
}

/// A dynamic member's KIP-394 two-step join; returns its member id and the outputs.
fn first_join(g: &mut Group, now: u64, token: Token) -> (String, Vec<Output>) {
    let out = g.join(now, join_req(token, "", &["range"]));
    let (e, id) = join_error(&out, token);
    assert_eq!(e, Error::MemberIdRequired);
    assert!(!id.is_empty());
    let out = g.join(now, join_req(token + 1, &id, &["range"]));
    (id, out)
}

/// A stable group of one member at generation 1.
fn stable_one() -> (Group, String) {
    let mut g = group();
    let (a, out) = first_join(&mut g, 0, 1);
    let r = joined(&out, 2);
    assert_eq!((r.generation, r.leader.as_str()), (1, a.as_str()));
    let out = g.sync(0, sync_req(3, &a, 1, &[(&a, "A")]));
    assert_eq!(synced(&out, 3).unwrap().assignment, Bytes::from("A"));
    assert_eq!(g.state(), GroupState::Stable);
    (g, a)
}

#[test]
fn a_first_join_without_member_id_gets_member_id_required_and_the_group_stays_empty() {
    let mut g = group();
    let out = g.join(0, join_req(1, "", &["range"]));
    let (e, id) = join_error(&out, 1);
    assert_eq!(e, Error::MemberIdRequired);
    assert!(id.starts_with("c-"));
    assert_eq!(g.state(), GroupState::Empty);
    assert!(g.is_empty());
}

#[test]
fn pre_kip394_joins_get_a_member_id_at_once() {
    let mut g = group();
    let out = g.join(0, Join { require_known_member_id: false, ..join_req(1, "", &["range"]) });
    let r = joined(&out, 1);
    assert_eq!(r.generation, 1);
    assert_eq!(r.leader, r.member_id);
    assert_eq!(r.members.len(), 1);
}

#[test]
fn a_pending_member_id_expires_after_the_session_timeout() {
    let mut g = group();
    let (_, id) = join_error(&g.join(0, join_req(1, "", &["range"])), 1);
    g.tick(SESSION as u64 + 1);
    let (e, _) = join_error(&g.join(SESSION as u64 + 2, join_req(2, &id, &["range"])), 2);
    assert!(matches!(e, Error::UnknownMemberId(_)));
}

#[test]
fn a_single_member_becomes_leader_of_generation_one_and_syncs_its_assignment() {
    let (g, a) = stable_one();
    assert_eq!(g.generation(), 1);
    assert_eq!(g.leader(), Some(a.as_str()));
    assert_eq!(g.protocol(), Some("range"));
    assert_eq!(g.protocol_type(), Some("consumer"));
    assert_eq!(g.describe()[0].assignment, Bytes::from("A"));
    assert_eq!(g.describe()[0].metadata, Bytes::from("meta-range"));
}

#[test]
fn an_unknown_member_id_is_refused() {
    let mut g = group();
    let (e, _) = join_error(&g.join(0, join_req(1, "nobody", &["range"])), 1);
    assert!(matches!(e, Error::UnknownMemberId(_)));
}

#[test]
fn session_timeouts_outside_the_bounds_are_refused() {
    let mut g = group();
    for t in [5_999, 1_800_001] {
        let out = g.join(0, Join { session_timeout_ms: t, ..join_req(1, "", &["range"]) });
        assert!(matches!(join_error(&out, 1).0, Error::InvalidSessionTimeout(_)));
    }
}

#[test]
fn empty_protocols_and_mismatched_types_or_protocols_are_inconsistent() {
    let mut g = group();
    let out = g.join(0, join_req(1, "", &[]));
    assert!(matches!(join_error(&out, 1).0, Error::InconsistentGroupProtocol(_)));
    let (_g, _) = stable_one();
    let (mut g, _) = stable_one();
    let out = g.join(0, join_req(5, "", &["roundrobin"]));
    assert!(matches!(join_error(&out, 5).0, Error::InconsistentGroupProtocol(_)));
    let out = g.join(0, Join { protocol_type: "connect".into(), ..join_req(6, "", &["range"]) });
    assert!(matches!(join_error(&out, 6).0, Error::InconsistentGroupProtocol(_)));
}

#[test]
fn a_second_member_triggers_a_rebalance_and_waits_for_the_first_to_rejoin() {
    let (mut g, a) = stable_one();
    let (b, out) = first_join(&mut g, 100, 10);
    assert!(!answered(&out, 11), "b waits for a to rejoin");
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    // a learns of the rebalance from its heartbeat.
    assert_eq!(g.heartbeat(200, &a, None, 1), Err(Error::RebalanceInProgress));
    let out = g.join(300, join_req(12, &a, &["range"]));
    let ra = joined(&out, 12);
    let rb = joined(&out, 11);
    assert_eq!((ra.generation, rb.generation), (2, 2));
    assert_eq!(ra.leader, a, "the leader stays the leader");
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty(), "only the leader gets the members");
    assert_eq!(g.state(), GroupState::CompletingRebalance);

    // The follower's sync waits for the leader's.
    let out = g.sync(400, sync_req(13, &b, 2, &[]));
    assert!(out.is_empty());
    assert_eq!(g.heartbeat(400, &b, None, 2), Ok(()), "heartbeats are fine while completing");
    let out = g.sync(500, sync_req(14, &a, 2, &[(&a, "A2"), (&b, "B2")]));
    assert_eq!(synced(&out, 14).unwrap().assignment, Bytes::from("A2"));
    assert_eq!(synced(&out, 13).unwrap().assignment, Bytes::from("B2"));
    assert_eq!(g.state(), GroupState::Stable);
    // A late sync in Stable gets the assignment at once.
    assert_eq!(synced(&g.sync(600, sync_req(15, &b, 2, &[])), 15).unwrap().assignment, Bytes::from("B2"));
}

#[test]
fn the_rebalance_timeout_drops_members_that_did_not_rejoin() {
    let (mut g, a) = stable_one();
    let (b, out) = first_join(&mut g, 1000, 10);
    assert!(out.is_empty());
    // a heartbeats (and is told to rejoin) but never rejoins.
    for now in (1000..1000 + REBALANCE as u64).step_by(3000) {
        assert_eq!(g.heartbeat(now, &a, None, 1), Err(Error::RebalanceInProgress));
        assert!(g.tick(now).is_empty());
    }
    assert_eq!(g.next_deadline(), Some(1000 + REBALANCE as u64));
    assert!(g.tick(1000 + REBALANCE as u64 - 1).is_empty());
    let out = g.tick(1000 + REBALANCE as u64);
    let rb = joined(&out, 11);
    assert_eq!(rb.generation, 2);
    assert_eq!(rb.leader, b, "a new leader when the old one is gone");
    assert_eq!(g.member_ids(), vec![b]);
    assert!(matches!(g.heartbeat(1000 + REBALANCE as u64, &a, None, 2), Err(Error::UnknownMemberId(_))));
}

#[test]
fn an_expired_session_removes_the_member_and_rebalances_the_rest() {
    let (mut g, a) = stable_one();
    let (b, _) = first_join(&mut g, 0, 10);
    let out = g.join(0, join_req(12, &a, &["range"]));
    joined(&out, 12);
    g.sync(0, sync_req(13, &a, 2, &[(&a, "A"), (&b, "B")]));
    // b keeps heartbeating; a goes silent.
    let mut now = 0;
    while now < SESSION as u64 {
        now += 3000;
        assert_eq!(g.heartbeat(now, &b, None, 2), Ok(()));
        g.tick(now);
    }
    assert_eq!(g.member_ids(), vec![b.clone()]);
    // b alone rejoins; the rebalance completes at once.
    let out = g.join(now, join_req(20, &b, &["range"]));
    let r = joined(&out, 20);
    assert_eq!((r.generation, r.leader.as_str()), (3, b.as_str()));
}

#[test]
fn the_last_member_expiring_empties_the_group() {
    let (mut g, _a) = stable_one();
    g.tick(SESSION as u64);
    assert_eq!(g.state(), GroupState::Empty);
    assert!(g.is_empty());
    assert_eq!(g.generation(), 2);
    assert_eq!(g.protocol(), None);
}

#[test]
fn a_member_waiting_in_a_join_is_not_expired_by_its_session() {
    let (mut g, a) = stable_one();
    let (_b, _) = first_join(&mut g, 0, 10);
    // b waits in its join past its session timeout (a heartbeats meanwhile); a rejoins
    // before the rebalance timeout.
    for now in [5000, SESSION as u64] {
        assert_eq!(g.heartbeat(now, &a, None, 1), Err(Error::RebalanceInProgress));
    }
    g.tick(SESSION as u64 + 5);
    assert_eq!(g.member_ids().len(), 2);
    let out = g.join(SESSION as u64 + 5, join_req(12, &a, &["range"]));
    assert!(answered(&out, 11) && answered(&out, 12));
}

#[test]
fn heartbeat_errors_unknown_member_illegal_generation() {
    let (mut g, a) = stable_one();
    assert_eq!(g.heartbeat(1, &a, None, 1), Ok(()));
    assert!(matches!(g.heartbeat(1, "x", None, 1), Err(Error::UnknownMemberId(_))));
    assert_eq!(g.heartbeat(1, &a, None, 0), Err(Error::IllegalGeneration { client: 0, current: 1 }));
    let mut empty = group();
    assert!(matches!(empty.heartbeat(1, "x", None, 0), Err(Error::UnknownMemberId(_))));
}

#[test]
fn heartbeats_keep_a_member_alive() {
    let (mut g, a) = stable_one();
    for now in (1000..100_000).step_by(3000) {
        assert_eq!(g.heartbeat(now, &a, None, 1), Ok(()));
        assert!(g.tick(now).is_empty());
    }
    assert_eq!(g.state(), GroupState::Stable);
}

#[test]
fn sync_errors() {
    let (mut g, a) = stable_one();
    assert!(matches!(synced(&g.sync(0, sync_req(1, "x", 1, &[])), 1), Err(Error::UnknownMemberId(_))));
    assert!(matches!(synced(&g.sync(0, sync_req(2, &a, 7, &[])), 2), Err(Error::IllegalGeneration { .. })));
    let wrong = Sync { protocol_name: Some("roundrobin".into()), ..sync_req(3, &a, 1, &[]) };
    assert!(matches!(synced(&g.sync(0, wrong), 3), Err(Error::InconsistentGroupProtocol(_))));
    // During a rebalance a sync of the old generation is told to rejoin.
    first_join(&mut g, 0, 10);
    assert_eq!(synced(&g.sync(0, sync_req(4, &a, 1, &[])), 4), Err(Error::RebalanceInProgress));
}

#[test]
fn a_new_rebalance_voids_syncs_waiting_for_the_leader() {
    let (mut g, a) = stable_one();
    let (b, _) = first_join(&mut g, 0, 10);
    g.join(0, join_req(12, &a, &["range"]));
    assert!(g.sync(0, sync_req(13, &b, 2, &[])).is_empty());
    // A third member arrives before the leader syncs.
    let out = g.join(0, Join { require_known_member_id: false, ..join_req(14, "", &["range"]) });
    assert_eq!(synced(&out, 13), Err(Error::RebalanceInProgress));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn a_rejoin_with_unchanged_metadata_in_stable_gets_the_current_generation() {
    let (mut g, a) = stable_one();
    let (b, _) = first_join(&mut g, 0, 10);
    g.join(0, join_req(12, &a, &["range"]));
    g.sync(0, sync_req(13, &a, 2, &[(&a, "A"), (&b, "B")]));
    let out = g.join(0, join_req(14, &b, &["range"]));
    let r = joined(&out, 14);
    assert_eq!(r.generation, 2);
    assert_eq!(g.state(), GroupState::Stable);
    // Changed metadata (or the leader rejoining) starts a rebalance.
    let out = g.join(0, join_req(15, &b, &["range", "roundrobin"]));
    assert!(!answered(&out, 15));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn the_leader_rejoining_in_stable_starts_a_rebalance() {
    let (mut g, a) = stable_one();
    let out = g.join(0, join_req(5, &a, &["range"]));
    // Alone in the group, it completes at once with a new generation.
    assert_eq!(joined(&out, 5).generation, 2);
}

#[test]
fn a_rejoin_while_completing_gets_the_pending_generation_again() {
    let (mut g, a) = stable_one();
    let (b, _) = first_join(&mut g, 0, 10);
    g.join(0, join_req(12, &a, &["range"]));
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    let r = joined(&g.join(0, join_req(13, &b, &["range"])), 13);
    assert_eq!(r.generation, 2);
    let r = joined(&g.join(0, join_req(14, &a, &["range"])), 14);
    assert_eq!((r.generation, r.members.len()), (2, 2));
}

#[test]
fn a_duplicate_join_supersedes_the_waiting_one() {
    let (mut g, _a) = stable_one();
    let (b, _) = first_join(&mut g, 0, 10);
    let out = g.join(0, join_req(12, &b, &["range"]));
    assert_eq!(join_error(&out, 11).0, Error::RebalanceInProgress);
    assert!(!answered(&out, 12));
}

#[test]
fn protocols_are_selected_by_vote_among_those_all_members_support() {
    let mut g = group();
    let j = |t, p: &[&str]| Join { require_known_member_id: false, ..join_req(t, "", p) };
    g.join(0, j(1, &["roundrobin", "range", "sticky"]));
    g.join(0, j(2, &["range", "sticky"]));
    let out = g.join(0, j(3, &["range", "roundrobin"]));
    // After the first member's generation, the next two joined a rebalance the first
    // must rejoin; let the timeout settle it.
    let _ = out;
    let first = g.member_ids()[0].clone();
    g.join(0, Join { member_id: first, ..j(4, &["roundrobin", "range", "sticky"]) });
    assert_eq!(g.protocol(), Some("range"), "only range is common; 2 votes");
    let mut g = group();
    g.join(0, j(1, &["sticky", "range"]));
    assert_eq!(g.protocol(), Some("sticky"));
}

#[test]
fn leave_rebalances_the_rest_and_the_last_leave_empties_the_group() {
    let (mut g, a) = stable_one();
    let (b, _) = first_join(&mut g, 0, 10);
    g.join(0, join_req(12, &a, &["range"]));
    g.sync(0, sync_req(13, &a, 2, &[(&a, "A"), (&b, "B")]));
    let (results, out) = g.leave(0, &[(a.clone(), None)]);
    assert_eq!(results, vec![Ok(a.clone())]);
    assert!(out.is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let r = joined(&g.join(0, join_req(14, &b, &["range"])), 14);
    assert_eq!((r.generation, r.leader.as_str()), (3, b.as_str()));
    let (results, _) = g.leave(0, &[(b.clone(), None), ("ghost".into(), None)]);
    assert_eq!(results[0], Ok(b));
    assert!(matches!(results[1], Err(Error::UnknownMemberId(_))));
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.generation(), 4);
}

#[test]
fn a_member_leaving_while_others_wait_completes_the_join() {
    let (mut g, a) = stable_one();
    let (_b, _) = first_join(&mut g, 0, 10);
    let (_, out) = g.leave(0, &[(a, None)]);
    assert_eq!(joined(&out, 11).generation, 2);
}

#[test]
fn a_leaving_member_waiting_in_join_or_sync_is_answered_unknown_member() {
    let (mut g, a) = stable_one();
    let (b, _) = first_join(&mut g, 0, 10);
    let (_, out) = g.leave(0, &[(b.clone(), None)]);
    assert!(matches!(join_error(&out, 11).0, Error::UnknownMemberId(_)));
    let _ = a;
}

#[test]
fn a_pending_member_may_leave() {
    let mut g = group();
    let (_, id) = join_error(&g.join(0, join_req(1, "", &["range"])), 1);
    assert_eq!(g.leave(0, &[(id.clone(), None)]).0, vec![Ok(id.clone())]);
    assert!(matches!(join_error(&g.join(0, join_req(2, &id, &["range"])), 2).0, Error::UnknownMemberId(_)));
}

#[test]
fn a_static_member_joins_without_member_id_required() {
    let mut g = group();
    let r = joined(&g.join(0, static_req(1, "", "i1")), 1);
    assert!(r.member_id.starts_with("i1-"));
    assert_eq!(r.generation, 1);
    assert_eq!(g.describe()[0].instance_id.as_deref(), Some("i1"));
}

#[test]
fn a_restarted_static_follower_replaces_its_member_id_without_a_rebalance() {
    let mut g = group();
    let a = joined(&g.join(0, static_req(1, "", "i1")), 1).member_id;
    let b = {
        let out = g.join(0, static_req(2, "", "i2"));
        assert!(out.is_empty());
        let out = g.join(0, static_req(3, &a, "i1"));
        joined(&out, 2).member_id
    };
    let out = g.sync(0, Sync { instance_id: Some("i1".into()), ..sync_req(4, &a, 2, &[(&a, "A"), (&b, "B")]) });
    synced(&out, 4).unwrap();
    assert_eq!(g.state(), GroupState::Stable);

    // i2 restarts and joins without its member id: same generation, same assignment.
    let r = joined(&g.join(0, static_req(5, "", "i2")), 5);
    assert_ne!(r.member_id, b);
    assert_eq!(r.generation, 2);
    assert_eq!(g.state(), GroupState::Stable);
    let out = g.sync(0, Sync { instance_id: Some("i2".into()), ..sync_req(6, &r.member_id, 2, &[]) });
    assert_eq!(synced(&out, 6).unwrap().assignment, Bytes::from("B"));

    // The old member id is fenced everywhere.
    assert!(matches!(g.heartbeat(0, &b, Some("i2"), 2), Err(Error::FencedInstanceId(_))));
    let out = g.sync(0, Sync { instance_id: Some("i2".into()), ..sync_req(7, &b, 2, &[]) });
    assert!(matches!(synced(&out, 7), Err(Error::FencedInstanceId(_))));
    assert!(matches!(join_error(&g.join(0, static_req(8, &b, "i2")), 8).0, Error::FencedInstanceId(_)));
    assert!(matches!(g.leave(0, &[(b.clone(), Some("i2".into()))]).0[0], Err(Error::FencedInstanceId(_))));
}

#[test]
fn a_restarted_static_leader_keeps_leadership_and_is_told_to_skip_assignment() {
    let mut g = group();
    let a = joined(&g.join(0, static_req(1, "", "i1")), 1).member_id;
    g.sync(0, sync_req(2, &a, 1, &[(&a, "A")]));
    let r = joined(&g.join(0, static_req(3, "", "i1")), 3);
    assert_eq!(r.leader, r.member_id);
    assert!(r.skip_assignment);
    assert_eq!(r.members.len(), 1);
    assert_eq!(r.generation, 1);
}

#[test]
fn a_restarted_static_member_with_new_metadata_rebalances() {
    let mut g = group();
    let a = joined(&g.join(0, static_req(1, "", "i1")), 1).member_id;
    g.sync(0, sync_req(2, &a, 1, &[(&a, "A")]));
    let j = Join { protocols: vec![("range".into(), Bytes::from("other"))], ..static_req(3, "", "i1") };
    let r = joined(&g.join(0, j), 3);
    assert_eq!(r.generation, 2);
}

#[test]
fn an_unknown_static_member_with_a_member_id_is_unknown() {
    let mut g = group();
    assert!(matches!(join_error(&g.join(0, static_req(1, "m", "i1")), 1).0, Error::UnknownMemberId(_)));
}

#[test]
fn a_static_member_leaves_by_instance_id() {
    let mut g = group();
    let a = joined(&g.join(0, static_req(1, "", "i1")), 1).member_id;
    assert_eq!(g.leave(0, &[(String::new(), Some("i1".into()))]).0, vec![Ok(a)]);
    assert!(g.is_empty());
    assert!(matches!(g.leave(0, &[(String::new(), Some("i1".into()))]).0[0], Err(Error::UnknownMemberId(_))));
    // The instance may join afresh.
    joined(&g.join(0, static_req(2, "", "i1")), 2);
}

#[test]
fn an_expired_static_member_frees_its_instance_id() {
    let mut g = group();
    joined(&g.join(0, static_req(1, "", "i1")), 1);
    g.tick(SESSION as u64);
    assert!(g.is_empty());
    assert!(joined(&g.join(SESSION as u64, static_req(2, "", "i1")), 2).generation > 1);
}

#[test]
fn the_initial_delay_gathers_members_into_one_generation() {
    let mut g = Group::new("g", config(3000));
    let j = |t| Join { require_known_member_id: false, ..join_req(t, "", &["range"]) };
    assert!(g.join(0, j(1)).is_empty());
    assert!(g.join(1000, j(2)).is_empty());
    assert!(g.join(2000, j(3)).is_empty());
    assert_eq!(g.next_deadline(), Some(5000), "each join extends the delay");
    assert!(g.tick(4999).is_empty());
    let out = g.tick(5000);
    for t in 1..=3 {
        assert_eq!(joined(&out, t).generation, 1);
    }
    assert_eq!(joined(&out, 1).members.len(), 3);
}

#[test]
fn the_initial_delay_never_outlasts_the_rebalance_timeout() {
    let mut g = Group::new("g", config(3000));
    let j = |t| Join { require_known_member_id: false, rebalance_timeout_ms: 4000, ..join_req(t, "", &["range"]) };
    g.join(0, j(1));
    g.join(2500, j(2));
    assert_eq!(g.next_deadline(), Some(4000));
    assert_eq!(g.tick(4000).len(), 2);
}

#[test]
fn commits_are_checked_against_membership_and_generation() {
    let mut g = group();
    assert_eq!(g.check_commit("", None, -1), Ok(()), "a simple commit to an empty group");
    let (mut g2, a) = stable_one();
    assert_eq!(g2.check_commit(&a, None, 1), Ok(()));
    assert!(matches!(g2.check_commit("", None, -1), Err(Error::UnknownMemberId(_))));
    assert!(matches!(g2.check_commit(&a, None, 0), Err(Error::IllegalGeneration { .. })));
    // Told to rejoin, the member still commits what it consumed in its generation.
    let (b, _) = first_join(&mut g2, 0, 10);
    assert_eq!(g2.state(), GroupState::PreparingRebalance);
    assert_eq!(g2.check_commit(&a, None, 1), Ok(()));
    // Joined but not yet synced: not until the new assignment is known.
    g2.join(0, join_req(12, &a, &["range"]));
    assert_eq!(g2.state(), GroupState::CompletingRebalance);
    assert_eq!(g2.check_commit(&b, None, 2), Err(Error::RebalanceInProgress));
    g2.sync(0, sync_req(13, &a, 2, &[]));
    assert_eq!(g2.check_commit(&b, None, 2), Ok(()));
    g.tick(0);
}

#[test]
fn state_names_are_kafkas() {
    assert_eq!(GroupState::Empty.name(), "Empty");
    assert_eq!(GroupState::PreparingRebalance.name(), "PreparingRebalance");
    assert_eq!(GroupState::CompletingRebalance.name(), "CompletingRebalance");
    assert_eq!(GroupState::Stable.name(), "Stable");
}
