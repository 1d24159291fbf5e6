//! The group coordinator over real sockets: FindCoordinator, the join/sync/heartbeat/
//! leave protocol with several members, and committed offsets across a restart.

use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dlog_protocol::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use dlog_protocol::kafka_protocol::messages::leave_group_request::MemberIdentity;
use dlog_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use dlog_protocol::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use dlog_protocol::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use dlog_protocol::kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest,
};
use dlog_server::cli::client::Client;

use super::*;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join(c: &mut Client, group: &str, member: &str, instance: Option<&str>) -> JoinGroupResponse {
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(20_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from(format!("meta-{member}")))]);
    c.call_any(ApiKey::JoinGroup, request).unwrap()
}

/// The KIP-394 two-step join of a dynamic member.
fn join_new(c: &mut Client, group: &str) -> JoinGroupResponse {
    let first = join(c, group, "", None);
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    assert!(!first.member_id.is_empty());
    join(c, group, &first.member_id.to_string(), None)
}

fn sync(c: &mut Client, group: &str, member: &str, generation: i32, assignments: &[(&str, &str)]) -> (i16, Bytes) {
    let request = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from(a.to_string()))
                })
                .collect(),
        );
    let r = c.call_any(ApiKey::SyncGroup, request).unwrap();
    (r.error_code, r.assignment)
}

fn heartbeat(c: &mut Client, group: &str, member: &str, generation: i32) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member));
    c.call_any(ApiKey::Heartbeat, request).unwrap().error_code
}

fn commit(c: &mut Client, group: &str, member: &str, generation: i32, topic: &str, offsets: &[(i32, i64)]) -> Vec<i16> {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(topic_name(topic)).with_partitions(
            offsets
                .iter()
                .map(|(p, o)| {
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(*p)
                        .with_committed_offset(*o)
                        .with_committed_leader_epoch(-1)
                        .with_committed_metadata(Some(s("m")))
                })
                .collect(),
        )]);
    let r = c.call_any(ApiKey::OffsetCommit, request).unwrap();
    r.topics[0].partitions.iter().map(|p| p.error_code).collect()
}

/// A group to fetch, with the topic and partitions asked (None: all).
type FetchAsk<'a> = (&'a str, Option<(&'a str, &'a [i32])>);
/// Per group: (error, [(topic, partition, offset)]).
type Fetched = Vec<(i16, Vec<(String, i32, i64)>)>;

/// OffsetFetch (v8+ shape) of several groups.
fn fetch_offsets(c: &mut Client, groups: &[FetchAsk]) -> Fetched {
    let request = OffsetFetchRequest::default().with_groups(
        groups
            .iter()
            .map(|(g, topics)| {
                OffsetFetchRequestGroup::default().with_group_id(GroupId(s(g))).with_topics(topics.map(|(t, ps)| {
                    vec![OffsetFetchRequestTopics::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps.to_vec())]
                }))
            })
            .collect(),
    );
    let r = c.call_any(ApiKey::OffsetFetch, request).unwrap();
    r.groups
        .iter()
        .map(|g| {
            let offsets = g
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| (t.name.0.to_string(), p.partition_index, p.committed_offset))
                })
                .collect();
            (g.error_code, offsets)
        })
        .collect()
}

#[test]
fn find_coordinator_answers_groups_in_batches_and_refuses_transactions() {
    let t = TestBroker::start();
    let mut c = t.client();
    let request = FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![s("g1"), s("g2")]);
    let r = c.call_any(ApiKey::FindCoordinator, request).unwrap();
    assert_eq!(r.coordinators.len(), 2);
    let port: i32 = t.addr.rsplit(':').next().unwrap().parse().unwrap();
    for co in &r.coordinators {
        assert_eq!((co.error_code, co.node_id.0, co.port), (0, 1, port), "{co:?}");
    }
    let request = FindCoordinatorRequest::default().with_key_type(1).with_coordinator_keys(vec![s("txn")]);
    let r = c.call_any(ApiKey::FindCoordinator, request).unwrap();
    assert_eq!(r.coordinators[0].error_code, 15, "COORDINATOR_NOT_AVAILABLE");
    assert!(r.coordinators[0].error_message.as_ref().unwrap().contains("transactions"));

    let md = c.metadata(Some(&["__consumer_offsets"]), false).unwrap();
    assert_eq!(md.topics[0].error_code, 0);
    assert!(md.topics[0].is_internal);
    assert_eq!(md.topics[0].partitions.len(), 50);
}

#[test]
fn two_members_join_sync_heartbeat_and_leave() {
    let t = TestBroker::start();
    let addr = t.addr.clone();
    // Both join within the initial rebalance delay: one generation for both.
    let members: Vec<JoinGroupResponse> = (0..2)
        .map(|_| {
            let addr = addr.clone();
            thread::spawn(move || join_new(&mut Client::connect(&addr).unwrap(), "g"))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    for m in &members {
        assert_eq!((m.error_code, m.generation_id), (0, 1), "{m:?}");
        assert_eq!(m.protocol_name.as_ref().map(|p| p.to_string()).as_deref(), Some("range"));
    }
    let leader = members.iter().find(|m| m.leader == m.member_id).expect("one leader");
    let follower = members.iter().find(|m| m.leader != m.member_id).expect("one follower");
    assert_eq!(leader.members.len(), 2);
    assert!(follower.members.is_empty());
    let (lid, fid) = (leader.member_id.to_string(), follower.member_id.to_string());

    // The follower's sync waits for the leader's.
    let waiting = {
        let (addr, fid) = (addr.clone(), fid.clone());
        thread::spawn(move || sync(&mut Client::connect(&addr).unwrap(), "g", &fid, 1, &[]))
    };
    thread::sleep(std::time::Duration::from_millis(200));
    let mut c = t.client();
    // Offsets are committed only for partitions that exist (as Kafka).
    assert_eq!(create_topic(&mut c, "t", 2, &[]), 0);
    assert_eq!(sync(&mut c, "g", &lid, 1, &[(&lid, "A"), (&fid, "B")]), (0, Bytes::from("A")));
    assert_eq!(waiting.join().unwrap(), (0, Bytes::from("B")));

    assert_eq!(heartbeat(&mut c, "g", &lid, 1), 0);
    assert_eq!(heartbeat(&mut c, "g", &lid, 7), 22, "ILLEGAL_GENERATION");
    assert_eq!(heartbeat(&mut c, "g", "nobody", 1), 25, "UNKNOWN_MEMBER_ID");
    assert_eq!(commit(&mut c, "g", &lid, 1, "t", &[(0, 5)]), vec![0]);
    assert_eq!(commit(&mut c, "g", &lid, 0, "t", &[(0, 5)]), vec![22]);

    // The follower leaves (batch form): the leader is told to rejoin.
    let request = LeaveGroupRequest::default().with_group_id(GroupId(s("g"))).with_members(vec![
        MemberIdentity::default().with_member_id(s(&fid)),
        MemberIdentity::default().with_member_id(s("ghost")),
    ]);
    let r = c.call_any(ApiKey::LeaveGroup, request).unwrap();
    assert_eq!(r.members.iter().map(|m| m.error_code).collect::<Vec<_>>(), vec![0, 25]);
    assert_eq!(heartbeat(&mut c, "g", &lid, 1), 27, "REBALANCE_IN_PROGRESS");
    let r = join(&mut c, "g", &lid, None);
    assert_eq!((r.error_code, r.generation_id, r.members.len()), (0, 2, 1));
}

#[test]
fn a_static_member_restarting_keeps_its_generation_and_fences_the_old_id() {
    let t = TestBroker::start();
    let mut c = t.client();
    let first = join(&mut c, "sg", "", Some("i1"));
    assert_eq!((first.error_code, first.generation_id), (0, 1));
    let old = first.member_id.to_string();
    assert_eq!(sync(&mut c, "sg", &old, 1, &[(&old, "A")]).0, 0);
    let again = join(&mut c, "sg", "", Some("i1"));
    assert_eq!((again.error_code, again.generation_id), (0, 1), "no rebalance");
    assert_ne!(again.member_id.to_string(), old);
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(s("sg")))
        .with_generation_id(1)
        .with_member_id(s(&old))
        .with_group_instance_id(Some(s("i1")));
    assert_eq!(c.call_any(ApiKey::Heartbeat, request).unwrap().error_code, 82, "FENCED_INSTANCE_ID");
}

#[test]
fn committed_offsets_are_fetched_per_group_and_survive_a_restart() {
    let mut t = TestBroker::start();
    let mut c = t.client();
    // Offsets are committed only for partitions that exist (as Kafka).
    assert_eq!(create_topic(&mut c, "orders", 2, &[]), 0);
    // Simple commits (generation -1) to groups without members.
    assert_eq!(commit(&mut c, "ga", "", -1, "orders", &[(0, 10), (1, 20)]), vec![0, 0]);
    assert_eq!(commit(&mut c, "gb", "", -1, "orders", &[(0, 7)]), vec![0]);
    assert_eq!(commit(&mut c, "ga", "", -1, "orders", &[(1, 21)]), vec![0]);
    let expect = |c: &mut Client| {
        let r = fetch_offsets(c, &[("ga", None), ("gb", Some(("orders", &[0, 3]))), ("gc", None)]);
        assert_eq!(r[0], (0, vec![("orders".into(), 0, 10), ("orders".into(), 1, 21)]));
        assert_eq!(r[1], (0, vec![("orders".into(), 0, 7), ("orders".into(), 3, -1)]));
        assert_eq!(r[2], (0, vec![]));
    };
    expect(&mut c);
    drop(c);
    t.restart();
    let mut c = t.client();
    expect(&mut c);
    let r = fetch_offsets(&mut c, &[("", None)]);
    assert_eq!(r[0].0, 24, "INVALID_GROUP_ID");
}

#[test]
fn groups_are_listed_described_and_deleted() {
    use dlog_protocol::kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use dlog_protocol::kafka_protocol::messages::{
        DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest, OffsetDeleteRequest,
    };
    let t = TestBroker::start();
    let mut c = t.client();
    // Offsets are committed only for partitions that exist (as Kafka).
    assert_eq!(create_topic(&mut c, "t", 2, &[]), 0);
    let member = join(&mut c, "live", "", Some("i1"));
    assert_eq!(member.error_code, 0);
    let mid = member.member_id.to_string();
    assert_eq!(sync(&mut c, "live", &mid, 1, &[(&mid, "A")]).0, 0);
    assert_eq!(commit(&mut c, "idle", "", -1, "t", &[(0, 3), (1, 4)]), vec![0, 0]);

    let r = c.call_any(ApiKey::ListGroups, ListGroupsRequest::default()).unwrap();
    let mut listed: Vec<(String, String)> =
        r.groups.iter().map(|g| (g.group_id.0.to_string(), g.group_state.to_string())).collect();
    listed.sort();
    assert_eq!(listed, vec![("idle".into(), "Empty".into()), ("live".into(), "Stable".into())]);
    let r = c.call_any(ApiKey::ListGroups, ListGroupsRequest::default().with_states_filter(vec![s("Stable")])).unwrap();
    assert_eq!(r.groups.len(), 1);

    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("live")), GroupId(s("nope"))]);
    let r = c.call_any(ApiKey::DescribeGroups, request).unwrap();
    assert_eq!(r.groups[0].group_state.to_string(), "Stable");
    assert_eq!(r.groups[0].protocol_data.to_string(), "range");
    assert_eq!(r.groups[0].members.len(), 1);
    assert_eq!(r.groups[0].members[0].member_assignment, Bytes::from("A"));
    assert_eq!(r.groups[0].members[0].client_host.to_string(), "/127.0.0.1");
    assert_eq!(r.groups[0].members[0].client_id.to_string(), "dlog-cli");
    assert_eq!(r.groups[0].members[0].group_instance_id.as_ref().map(|i| i.to_string()).as_deref(), Some("i1"));
    assert_eq!((r.groups[1].error_code, r.groups[1].group_state.to_string()), (69, "Dead".to_string()));
    assert_eq!(r.groups[0].authorized_operations, i32::MIN, "not asked: omitted");
    // Asked (KIP-430): with no authorizer every group operation, for groups described
    // without error, as Kafka 4.1 answers.
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(s("live")), GroupId(s("nope"))])
        .with_include_authorized_operations(true);
    let r = c.call_any(ApiKey::DescribeGroups, request).unwrap();
    assert_eq!((r.groups[0].error_code, r.groups[0].authorized_operations), (0, 0x0d48));
    assert_eq!((r.groups[1].error_code, r.groups[1].authorized_operations), (69, i32::MIN));

    let request = OffsetDeleteRequest::default().with_group_id(GroupId(s("idle"))).with_topics(vec![
        OffsetDeleteRequestTopic::default()
            .with_name(topic_name("t"))
            .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
    ]);
    let r = c.call_any(ApiKey::OffsetDelete, request).unwrap();
    assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0));
    assert_eq!(fetch_offsets(&mut c, &[("idle", None)])[0], (0, vec![("t".into(), 1, 4)]));

    let request = DeleteGroupsRequest::default().with_groups_names(vec![
        GroupId(s("live")),
        GroupId(s("idle")),
        GroupId(s("never")),
    ]);
    let r = c.call_any(ApiKey::DeleteGroups, request).unwrap();
    assert_eq!(r.results.iter().map(|g| g.error_code).collect::<Vec<_>>(), vec![68, 0, 69]);
    assert_eq!(fetch_offsets(&mut c, &[("idle", None)])[0], (0, vec![]));
}

fn describe(c: &mut Client, group: &str) -> (i16, String, Vec<String>) {
    use dlog_protocol::kafka_protocol::messages::DescribeGroupsRequest;
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let r = c.call_any(ApiKey::DescribeGroups, request).unwrap();
    let g = &r.groups[0];
    (g.error_code, g.group_state.to_string(), g.members.iter().map(|m| m.member_id.to_string()).collect())
}

fn list(c: &mut Client) -> Vec<(String, String)> {
    use dlog_protocol::kafka_protocol::messages::ListGroupsRequest;
    let r = c.call_any(ApiKey::ListGroups, ListGroupsRequest::default()).unwrap();
    let mut listed: Vec<(String, String)> =
        r.groups.iter().map(|g| (g.group_id.0.to_string(), g.group_state.to_string())).collect();
    listed.sort();
    listed
}

#[test]
fn a_stable_generation_survives_a_restart_and_its_members_carry_on() {
    let mut t = TestBroker::start_with(|c| c.coordinator.group.initial_rebalance_delay_ms = 0);
    let mut c = t.client();
    // Offsets are committed only for partitions that exist (as Kafka).
    assert_eq!(create_topic(&mut c, "t", 2, &[]), 0);
    let j = join_new(&mut c, "persisted");
    let (mid, generation) = (j.member_id.to_string(), j.generation_id);
    assert_eq!(sync(&mut c, "persisted", &mid, generation, &[(&mid, "A")]).0, 0);
    // the group metadata is stored by the shard's next housekeeping tick
    thread::sleep(Duration::from_millis(300));
    drop(c);
    t.restart();
    let mut c = t.client();
    assert_eq!(heartbeat(&mut c, "persisted", &mid, generation), 0, "the member is known after the restart");
    assert_eq!(commit(&mut c, "persisted", &mid, generation, "t", &[(0, 5)]), vec![0]);
    let (code, state, members) = describe(&mut c, "persisted");
    assert_eq!((code, state.as_str(), members), (0, "Stable", vec![mid.clone()]));
    let (code, assignment) = sync(&mut c, "persisted", &mid, generation, &[]);
    assert_eq!((code, assignment), (0, Bytes::from("A")), "the stored assignment is handed out again");
    assert_eq!(heartbeat(&mut c, "persisted", "someone-else", generation), 25, "UNKNOWN_MEMBER_ID");

    // The member leaves: the group is stored as Empty, and is listed so after a restart.
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("persisted")))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&mid))]);
    assert_eq!(c.call_any(ApiKey::LeaveGroup, request).unwrap().error_code, 0);
    thread::sleep(Duration::from_millis(300));
    drop(c);
    t.restart();
    let mut c = t.client();
    assert_eq!(list(&mut c), vec![("persisted".to_string(), "Empty".to_string())], "listed before any use");
    assert_eq!(heartbeat(&mut c, "persisted", &mid, generation), 25, "the member left before the restart");
    assert_eq!(fetch_offsets(&mut c, &[("persisted", None)])[0], (0, vec![("t".into(), 0, 5)]));
}

#[test]
fn offsets_of_a_group_without_members_expire_after_the_retention() {
    let t = TestBroker::start_with(|c| {
        c.coordinator.group.initial_rebalance_delay_ms = 0;
        c.coordinator.offsets_retention_ms = 1_500;
        c.coordinator.offsets_retention_check_interval_ms = 100;
    });
    let mut c = t.client();
    // Offsets are committed only for partitions that exist (as Kafka).
    assert_eq!(create_topic(&mut c, "t", 2, &[]), 0);
    // A group with a member keeps its offsets however old they are.
    let j = join_new(&mut c, "busy");
    let (mid, generation) = (j.member_id.to_string(), j.generation_id);
    assert_eq!(sync(&mut c, "busy", &mid, generation, &[(&mid, "A")]).0, 0);
    assert_eq!(commit(&mut c, "busy", &mid, generation, "t", &[(0, 1)]), vec![0]);
    // A simple consumer's offsets expire by their commit time.
    assert_eq!(commit(&mut c, "simple", "", -1, "t", &[(0, 9)]), vec![0]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(heartbeat(&mut c, "busy", &mid, generation), 0);
        if fetch_offsets(&mut c, &[("simple", None)])[0] == (0, vec![]) {
            break;
        }
        assert!(Instant::now() < deadline, "the simple group's offsets never expired");
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(list(&mut c), vec![("busy".to_string(), "Stable".to_string())], "an expired simple group is gone");
    assert_eq!(fetch_offsets(&mut c, &[("busy", None)])[0], (0, vec![("t".into(), 0, 1)]));

    // Once the member leaves, the retention counts from the moment the group emptied.
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("busy")))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&mid))]);
    assert_eq!(c.call_any(ApiKey::LeaveGroup, request).unwrap().error_code, 0);
    let left = Instant::now();
    let deadline = left + Duration::from_secs(10);
    while fetch_offsets(&mut c, &[("busy", None)])[0] != (0, vec![]) {
        assert!(Instant::now() < deadline, "the emptied group's offsets never expired");
        thread::sleep(Duration::from_millis(100));
    }
    assert!(left.elapsed() >= Duration::from_millis(1_400), "expired {:?} after the group emptied", left.elapsed());
    thread::sleep(Duration::from_millis(300));
    assert_eq!(list(&mut c), vec![], "a group with neither members nor offsets is forgotten");
}

#[test]
fn group_size_and_commit_metadata_are_bounded() {
    use dlog_protocol::kafka_protocol::messages::DescribeGroupsRequest;
    let t = TestBroker::start_with(|c| {
        c.coordinator.group.max_size = 1;
        c.coordinator.offset_metadata_max_bytes = 8;
    });
    let mut c = t.client();
    // Offsets are committed only for partitions that exist (as Kafka).
    assert_eq!(create_topic(&mut c, "t", 2, &[]), 0);
    let first = join(&mut c, "small", "", Some("a"));
    assert_eq!(first.error_code, 0);
    assert_eq!(join(&mut c, "small", "", Some("b")).error_code, 81, "GROUP_MAX_SIZE_REACHED");
    assert_eq!(join(&mut c, "small", "", None).error_code, 81, "GROUP_MAX_SIZE_REACHED");

    let big = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("meta")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(topic_name("t")).with_partitions(vec![
            OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(3)
                .with_committed_metadata(Some(s("123456789"))),
        ])]);
    let r = c.call_any(ApiKey::OffsetCommit, big).unwrap();
    assert_eq!(r.topics[0].partitions[0].error_code, 12, "OFFSET_METADATA_TOO_LARGE");
    assert_eq!(fetch_offsets(&mut c, &[("meta", None)])[0], (0, vec![]), "nothing was stored");
    assert_eq!(commit(&mut c, "meta", "", -1, "t", &[(0, 3)]), vec![0], "short metadata is fine");

    // DescribeGroups v6 reports an unknown group as GROUP_ID_NOT_FOUND (KIP-1043).
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("nope"))]);
    let r = c.call_any(ApiKey::DescribeGroups, request).unwrap();
    assert_eq!((r.groups[0].error_code, r.groups[0].group_state.to_string()), (69, "Dead".to_string()));
}
