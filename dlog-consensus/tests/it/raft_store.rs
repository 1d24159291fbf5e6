//! `RaftStore` on an in-process 3-node cluster: the conformance suite through the
//! leader and through a follower, recovery after a restart, catching up by snapshot
//! install, a partition isolating the leader, and elections after leader loss.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dlog_consensus::conformance;
use dlog_consensus::raft::ServerState;
use dlog_consensus::{Comparison, KvState, MetadataError, MetadataStore, PutOptions, RaftStoreConfig, WatchEvent};
use dlog_core::NodeId;

use crate::cluster::{config, Cluster, ClusterStore, PATIENCE};

fn value(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn put(store: &dyn MetadataStore, key: &str) {
    store.put(key, value(key), PutOptions::default()).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
}

async fn keys(store: &dyn MetadataStore) -> Vec<String> {
    store.list("", "\u{10FFFF}").await.expect("list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_store_passes_the_conformance_suite_through_the_leader() {
    conformance::run_all(|| async {
        let cluster = Cluster::start(3, config()).await;
        let via = cluster.leader().await;
        ClusterStore { cluster, via }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_store_passes_the_conformance_suite_through_a_follower() {
    conformance::run_all(|| async {
        let cluster = Cluster::start(3, config()).await;
        let via = cluster.other_than(cluster.leader().await);
        ClusterStore { cluster, via }
    })
    .await;
}

fn snapshotting(every: u64, kept: u64) -> RaftStoreConfig {
    RaftStoreConfig { snapshot_every_entries: every, entries_kept_after_snapshot: kept, ..config() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_recovers_from_its_snapshot_and_log_then_catches_up() {
    let mut cluster = Cluster::start(3, snapshotting(10, 5)).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    let store = cluster.node(leader);
    for i in 0..35 {
        put(store.as_ref(), &format!("before/{i:02}")).await;
    }
    cluster.converged().await;
    let before = cluster.node(follower).read_local(KvState::snapshot);
    let applied = cluster.status(follower).last_applied_index;
    cluster.kill(follower).await;
    for i in 0..15 {
        put(store.as_ref(), &format!("after/{i:02}")).await;
    }

    // Alone, the node comes back to exactly what it had applied: its newest snapshot,
    // then the committed log after it replayed.
    let restarted = cluster.open_detached(follower).await;
    let status = restarted.wait_for(PATIENCE, |s| s.last_applied_index == applied).await.expect("replayed");
    let snapshot = status.snapshot_index.expect("a snapshot on disk");
    assert!(snapshot < applied.unwrap(), "the log after snapshot {snapshot} was replayed up to {applied:?}");
    assert!(restarted.read_local(KvState::snapshot) == before, "the recovered state differs");

    // Connected, it catches up and serves what it missed.
    cluster.attach(restarted);
    let state = cluster.converged().await;
    let restarted = cluster.node(follower);
    assert_eq!(keys(restarted.as_ref()).await.len(), 50);
    let got = restarted.get("after/14", Comparison::Equal).await.unwrap().expect("the last key");
    assert_eq!(got.value, value("after/14"));
    assert_eq!(KvState::restore(&state).unwrap().len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_past_the_purged_log_catches_up_by_snapshot_install() {
    let cluster = Cluster::start(3, snapshotting(10, 0)).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    let store = cluster.node(leader);
    put(store.as_ref(), "early").await;
    cluster.converged().await;
    let mut watch = cluster.node(follower).watch("").await.unwrap();

    cluster.transport.partition(&[follower]);
    let behind = cluster.status(follower).last_log_index.expect("some log");
    for i in 0..40 {
        put(store.as_ref(), &format!("k/{i:02}")).await;
    }
    let purged = cluster.node(leader).wait_for(PATIENCE, |s| s.purged_index > Some(behind + 1)).await;
    let purged = purged.unwrap_or_else(|s| panic!("the leader did not purge past {behind}: {s:?}"));
    assert_eq!(cluster.status(follower).last_log_index, Some(behind), "the cut-off follower got entries");

    cluster.transport.heal_all();
    cluster.converged().await;
    let status = cluster.status(follower);
    assert!(status.snapshot_index > purged.purged_index.map(|p| p - 1), "no snapshot installed: {status:?}");
    // The follower's watchers learn that the state jumped.
    let event = tokio::time::timeout(PATIENCE, watch.recv()).await.expect("an event").expect("a live watch");
    assert_eq!(event, WatchEvent::Reset);
    // And it serves the same reads as the leader.
    let through_follower = cluster.node(follower).range_scan("", "\u{10FFFF}").await.unwrap();
    assert_eq!(through_follower, store.range_scan("", "\u{10FFFF}").await.unwrap());
    assert_eq!(through_follower.len(), 41);
    // Writes go on, through it too.
    put(cluster.node(follower).as_ref(), "late").await;
    cluster.converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_stops_writing_the_majority_goes_on_and_healing_converges() {
    let config = RaftStoreConfig { request_timeout: Duration::from_millis(1500), ..config() };
    let cluster = Cluster::start(3, config).await;
    let old_leader = cluster.leader().await;
    put(cluster.node(old_leader).as_ref(), "before").await;
    cluster.converged().await;
    let majority: Vec<NodeId> = cluster.live().into_iter().filter(|&id| id != old_leader).collect();

    cluster.transport.partition(&[old_leader]);
    // The minority's writes and reads fail, and say so in bounded time.
    let started = Instant::now();
    let write = cluster.node(old_leader).put("minority", value("lost"), PutOptions::default()).await;
    assert!(matches!(write, Err(MetadataError::Unavailable(_))), "{write:?}");
    let read = cluster.node(old_leader).get("before", Comparison::Equal).await;
    assert!(matches!(read, Err(MetadataError::Unavailable(_))), "{read:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    // The majority elects a leader of its own and proceeds, through either node.
    let new_leader = cluster.leader_among(&majority).await;
    assert_ne!(new_leader, old_leader);
    for &id in &majority {
        put(cluster.node(id).as_ref(), &format!("majority/{}", id.0)).await;
    }
    assert_eq!(cluster.status(old_leader).state, ServerState::Leader, "the old leader never heard");

    cluster.transport.heal_all();
    let state = KvState::restore(&cluster.converged().await).unwrap();
    assert_eq!(cluster.leader().await, new_leader);
    assert_eq!(state.get("minority", Comparison::Equal), None, "a write without quorum took effect");
    let expected: Vec<String> =
        ["before".to_string()].into_iter().chain(majority.iter().map(|id| format!("majority/{}", id.0))).collect();
    assert_eq!(state.list("", "\u{10FFFF}"), expected);
    assert_eq!(keys(cluster.node(old_leader).as_ref()).await, expected);
}

/// openraft#1838: voters with the same election timeout can split votes for ever. With
/// the staggered timeouts, two survivors elect a leader within a second, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_surviving_voters_elect_a_leader_within_a_second_every_time() {
    const ROUNDS: usize = 20;
    let mut cluster = Cluster::start(3, config()).await;
    let mut elections = Vec::new();
    for round in 0..ROUNDS {
        let leader = cluster.leader().await;
        // Something in flight in the log makes no difference: write, then kill.
        put(cluster.node(leader).as_ref(), &format!("round/{round:02}")).await;
        cluster.converged().await;
        let survivors: Vec<NodeId> = cluster.live().into_iter().filter(|&id| id != leader).collect();

        let (a, b) = (cluster.node(survivors[0]), cluster.node(survivors[1]));
        let killed = Instant::now();
        cluster.kill(leader).await;
        let elected = tokio::select! {
            a = a.wait_for(PATIENCE, |s| s.state == ServerState::Leader) => a,
            b = b.wait_for(PATIENCE, |s| s.state == ServerState::Leader) => b,
        };
        let took = killed.elapsed();
        let elected = elected.unwrap_or_else(|s| panic!("round {round}: no leader after {took:?}: {s:?}"));
        elections.push((leader, elected.id, took));
        assert!(took < Duration::from_secs(1), "round {round}: killed {leader}, {} led after {took:?}", elected.id);

        cluster.open(leader).await;
        cluster.converged().await;
    }
    let slowest = elections.iter().map(|e| e.2).max().unwrap();
    eprintln!("{ROUNDS} elections after leader loss, slowest {slowest:?}: {elections:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_nodes_have_three_voters_and_three_learners_that_serve() {
    let cluster = Cluster::start(6, RaftStoreConfig { max_voters: 3, ..config() }).await;
    let voters: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let learners: Vec<NodeId> = (4..=6).map(NodeId).collect();
    assert!(voters.contains(&cluster.leader().await));
    cluster.converged().await;
    for id in cluster.live() {
        let status = cluster.status(id);
        assert_eq!(status.voters, voters.iter().copied().collect(), "node {id}");
        assert_eq!(status.learners, learners.iter().copied().collect(), "node {id}");
    }
    // Bootstrapping again, from anywhere, changes nothing.
    cluster.node(NodeId(2)).bootstrap().await.unwrap();
    cluster.node(NodeId(5)).bootstrap().await.unwrap();

    // A learner forwards writes and reads, and applies everything itself.
    let learner = cluster.node(NodeId(6));
    let mut watch = learner.watch("k").await.unwrap();
    put(learner.as_ref(), "k").await;
    assert_eq!(learner.get("k", Comparison::Equal).await.unwrap().map(|e| e.value), Some(value("k")));
    let event = tokio::time::timeout(PATIENCE, watch.recv()).await.expect("an event").expect("a live watch");
    assert!(matches!(event, WatchEvent::Notification(_)), "{event:?}");
    cluster.converged().await;
    assert_eq!(cluster.status(NodeId(4)).voters.len(), 3, "membership unchanged");
}

/// A voter whose directory was wiped forgot its log and its votes. Were it to vote as
/// a member with a blank log, a stale candidate could win with it and lose an entry
/// the wiped node had acknowledged: here the entry is on the old leader and the wiped
/// node only. The wiped node withholds its vote until it has caught up, so no leader
/// rises without the old one, which then brings the entry back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_voter_votes_only_once_caught_up_so_no_stale_candidate_wins() {
    let cluster = &mut Cluster::start(3, config()).await;
    let leader = cluster.leader().await;
    put(cluster.node(leader).as_ref(), "before").await;
    cluster.converged().await;
    let stale = cluster.other_than(leader);
    let wiped = cluster.live().into_iter().find(|&id| id != leader && id != stale).expect("a third node");

    // Committed on the leader and `wiped` only.
    cluster.transport.partition(&[stale]);
    put(cluster.node(leader).as_ref(), "acknowledged").await;
    cluster.kill(leader).await;
    cluster.wipe(wiped).await;
    cluster.transport.heal_all();

    // The stale candidate campaigns; the blank voter refuses it.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let s = cluster.status(stale);
        assert!(s.state != ServerState::Leader, "the stale node {stale} was elected with the wiped node's vote: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    cluster.open(leader).await;
    cluster.converged().await;
    for id in cluster.live() {
        assert_eq!(keys(cluster.node(id).as_ref()).await, ["acknowledged", "before"], "node {id}");
    }
    // Caught up, the wiped node votes again: with the old leader gone once more, the
    // two others elect a leader.
    let deadline = Instant::now() + PATIENCE;
    while cluster.node(wiped).withholds_votes() {
        assert!(Instant::now() < deadline, "the wiped node never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let current = cluster.leader().await;
    cluster.kill(current).await;
    let next = cluster.leader().await;
    assert_ne!(next, current);
}

/// A follower whose directory is wiped while the leader lives comes back with an empty
/// log: the leader starts its replication over (openraft panics on a follower's log
/// going back unless built with `loosen-follower-log-revert`) and the group goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_wiped_under_a_live_leader_is_caught_up_again() {
    let cluster = &mut Cluster::start(3, config()).await;
    let leader = cluster.leader().await;
    for i in 0..20 {
        put(cluster.node(leader).as_ref(), &format!("k{i:02}")).await;
    }
    cluster.converged().await;
    let follower = cluster.other_than(leader);
    cluster.wipe(follower).await;
    put(cluster.node(leader).as_ref(), "after").await;
    cluster.converged().await;
    assert_eq!(cluster.leader().await, leader, "the leader kept leading");
    assert_eq!(keys(cluster.node(follower).as_ref()).await.len(), 21);
}

/// The node that forms the group starts blank and leads first: it holds every committed
/// entry and must vote like any other once deposed. Here it is cut off, another node
/// leads, that one dies, and the first leader and the remaining node (which holds the
/// newer entries) must elect the latter with the first leader's vote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_leader_votes_after_it_is_deposed() {
    let cluster = &mut Cluster::start(3, config()).await;
    let first = cluster.leader().await;
    put(cluster.node(first).as_ref(), "before").await;
    cluster.converged().await;
    cluster.transport.partition(&[first]);
    let others: Vec<NodeId> = cluster.live().into_iter().filter(|&id| id != first).collect();
    let second = cluster.leader_among(&others).await;
    put(cluster.node(second).as_ref(), "newer").await;
    let third = *others.iter().find(|&&id| id != second).expect("a third node");
    cluster.kill(second).await;
    cluster.transport.heal(first, third);
    let next = cluster.leader_among(&[first, third]).await;
    assert_eq!(next, third, "only the third node holds the newer entry");
    assert_eq!(keys(cluster.node(first).as_ref()).await, ["before", "newer"]);
}
