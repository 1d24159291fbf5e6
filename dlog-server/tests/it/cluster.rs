//! Three brokers in one process, each a full cluster member (its own Raft node, RPC
//! listener and shards) on loopback: topics created at one node are placed across all
//! three by the controller, every node answers Metadata for all of them, produce and
//! fetch go to the leader (others say NOT_LEADER_OR_FOLLOWER), groups to their
//! coordinator, and partitions follow their broker out and back in.

use std::time::{Duration, Instant};

use dlog_protocol::kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use dlog_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use dlog_protocol::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use dlog_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use dlog_protocol::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use dlog_protocol::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use dlog_protocol::kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    ElectLeadersRequest, FindCoordinatorRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest,
    JoinGroupRequest, MetadataResponse, ProducerId,
};
use dlog_protocol::kafka_protocol::protocol::StrBytes;
use dlog_protocol::records::Compression;
use dlog_server::broker::Broker;
use dlog_server::cli::client::Client;
use dlog_server::config::{BrokerArgs, BrokerConfig};

use super::{batch, create_topic, decode, fetch, produce, record, topic_name};

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const LEADER_NOT_AVAILABLE: i16 = 5;
const NOT_COORDINATOR: i16 = 16;

/// A port free now and not handed out before by this test process: the kernel may give
/// a just-released port again, and two members sharing one cannot both listen.
fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
}

struct Node {
    _dir: tempfile::TempDir,
    config: BrokerConfig,
    broker: Option<Broker>,
}

impl Node {
    fn addr(&self) -> String {
        self.broker.as_ref().expect("running").local_addr.to_string()
    }

    fn client(&self) -> Client {
        Client::connect(&self.addr()).unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown();
        }
    }
}

/// Starts `n` members at once (each waits for the others to form the group).
fn cluster(n: i32) -> Vec<Node> {
    let rpc: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let members: Vec<String> = (0..n).map(|i| format!("{}=127.0.0.1:{}", i + 1, rpc[i as usize])).collect();
    let mut nodes: Vec<Node> = (0..n)
        .map(|i| {
            let dir = tempfile::tempdir().unwrap();
            let args = BrokerArgs {
                node_id: Some(i + 1),
                data_dir: Some(dir.path().to_path_buf()),
                listen: Some(format!("127.0.0.1:{}", free_port())),
                shards: Some(2),
                rpc_listen: Some(format!("127.0.0.1:{}", rpc[i as usize])),
                cluster_nodes: Some(members.join(",")),
                ..Default::default()
            };
            Node { config: BrokerConfig::resolve(&args).unwrap(), _dir: dir, broker: None }
        })
        .collect();
    let started: Vec<Broker> = std::thread::scope(|s| {
        let handles: Vec<_> =
            nodes.iter().map(|node| s.spawn(|| Broker::start(node.config.clone()).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (node, broker) in nodes.iter_mut().zip(started) {
        node.broker = Some(broker);
    }
    nodes
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Each partition's (leader, epoch, error) in `m` for `topic`.
fn leaders(m: &MetadataResponse, topic: &str) -> Vec<(i32, i32, i16)> {
    let t = m.topics.iter().find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic)).expect("topic listed");
    let mut ps: Vec<_> =
        t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0, p.leader_epoch, p.error_code)).collect();
    ps.sort();
    ps.into_iter().map(|(_, l, e, c)| (l, e, c)).collect()
}

fn metadata(node: &Node, topic: &str) -> MetadataResponse {
    node.client().metadata(Some(&[topic]), false).unwrap()
}

#[test]
fn topics_spread_over_the_cluster_and_follow_their_brokers() {
    let mut nodes = cluster(3);
    // Every broker registers; every node lists all three.
    for node in &nodes {
        wait_until("three live brokers", Duration::from_secs(10), || {
            let m = node.client().metadata(Some(&[]), false).ok()?;
            (m.brokers.len() == 3).then_some(())
        });
    }

    // Created at node 1, placed on all three; every node agrees at once (a forwarded
    // change is visible on the forwarding node when it answers, and soon everywhere).
    let request = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic_name("spread"))
        .with_num_partitions(6)
        .with_replication_factor(1)]);
    let created = nodes[0].client().call_any(ApiKey::CreateTopics, request).unwrap();
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0].error_message);
    let placed = leaders(&metadata(&nodes[0], "spread"), "spread");
    let mut used: Vec<i32> = placed.iter().map(|p| p.0).collect();
    used.sort();
    used.dedup();
    assert_eq!(used, vec![1, 2, 3], "partitions spread over every broker: {placed:?}");
    for node in &nodes[1..] {
        wait_until("the same placement everywhere", Duration::from_secs(5), || {
            (leaders(&metadata(node, "spread"), "spread") == placed).then_some(())
        });
    }
    assert_eq!(create_topic(&mut nodes[2].client(), "spread", 1, &[]), 36, "TOPIC_ALREADY_EXISTS from any node");

    // Produce and fetch at each partition's leader; a non-leader refuses with 6.
    for (p, (leader, _, _)) in placed.iter().enumerate() {
        let p = p as i32;
        let at = &nodes[(*leader - 1) as usize];
        let mut records = [record("k", &format!("v{p}"), 1)];
        let r = produce(&mut at.client(), "spread", p, batch(&mut records, Compression::None));
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "produce at leader {leader}");
        let (code, hw, bytes) = fetch(&mut at.client(), "spread", p, 0, 0);
        // Offset 0 holds the control batch that opened epoch 0.
        assert_eq!((code, hw), (0, 2));
        assert_eq!(decode(&bytes)[0], (1, "k".to_string(), format!("v{p}")));
        let other = &nodes[(*leader % 3) as usize];
        let mut records = [record("k", "misrouted", 1)];
        let r = produce(&mut other.client(), "spread", p, batch(&mut records, Compression::None));
        assert_eq!(r.responses[0].partition_responses[0].error_code, NOT_LEADER_OR_FOLLOWER);
        assert_eq!(fetch(&mut other.client(), "spread", p, 0, 0).0, NOT_LEADER_OR_FOLLOWER);
    }

    // CreatePartitions at node 3, DeleteTopics at node 2: forwarded to the controller.
    let grow = CreatePartitionsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatePartitionsTopic::default().with_name(topic_name("spread")).with_count(9)]);
    let r = nodes[2].client().call_any(ApiKey::CreatePartitions, grow).unwrap();
    assert_eq!(r.results[0].error_code, 0, "{:?}", r.results[0].error_message);
    assert_eq!(leaders(&metadata(&nodes[2], "spread"), "spread").len(), 9);
    // ... and with the replica the client chose, which then takes records.
    let grow =
        CreatePartitionsRequest::default().with_timeout_ms(10_000).with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name("spread"))
            .with_count(10)
            .with_assignments(Some(vec![CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(2)])]))]);
    let r = nodes[0].client().call_any(ApiKey::CreatePartitions, grow).unwrap();
    assert_eq!(r.results[0].error_code, 0, "{:?}", r.results[0].error_message);
    assert_eq!(leaders(&metadata(&nodes[0], "spread"), "spread")[9], (2, 0, 0));
    // Node 2 learns of it by following the store (it was forwarded through node 1).
    wait_until("node 2 to show the new partition", Duration::from_secs(5), || {
        (leaders(&metadata(&nodes[1], "spread"), "spread").len() == 10).then_some(())
    });
    let mut records = [record("k", "new", 1)];
    let r = produce(&mut nodes[1].client(), "spread", 9, batch(&mut records, Compression::None));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);

    // Config changes through different nodes each change only their keys: the second
    // node's image may not show the first change yet, and must not undo it.
    let alter = |node: &Node, key: &'static str, value: &'static str| {
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("spread"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str(key))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str(value)))])]);
        let r = node.client().call_any(ApiKey::IncrementalAlterConfigs, request).unwrap();
        assert_eq!(r.responses[0].error_code, 0, "{:?}", r.responses[0].error_message);
    };
    alter(&nodes[0], "retention.ms", "123456");
    alter(&nodes[1], "segment.ms", "654321");
    for node in &nodes {
        wait_until("both config changes everywhere", Duration::from_secs(5), || {
            let request = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("spread"))
                .with_configuration_keys(None)]);
            let r = node.client().call_any(ApiKey::DescribeConfigs, request).unwrap();
            let value = |k: &str| {
                r.results[0]
                    .configs
                    .iter()
                    .find(|c| c.name.as_str() == k)
                    .and_then(|c| c.value.as_ref().map(|v| v.to_string()))
            };
            (value("retention.ms").as_deref() == Some("123456") && value("segment.ms").as_deref() == Some("654321"))
                .then_some(())
        });
    }
    assert_eq!(create_topic(&mut nodes[1].client(), "doomed", 3, &[]), 0);
    let delete = DeleteTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![DeleteTopicState::default().with_name(Some(topic_name("doomed")))]);
    let r = nodes[1].client().call_any(ApiKey::DeleteTopics, delete).unwrap();
    assert_eq!(r.responses[0].error_code, 0);
    for node in &nodes {
        wait_until("the deleted topic gone everywhere", Duration::from_secs(5), || {
            let m = metadata(node, "doomed");
            (m.topics[0].error_code == 3).then_some(())
        });
    }

    // Producer ids are unique across the cluster.
    let ids: Vec<i64> = nodes
        .iter()
        .map(|n| {
            let request = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            let r = n.client().call_any(ApiKey::InitProducerId, request).unwrap();
            assert_eq!(r.error_code, 0);
            r.producer_id.0
        })
        .collect();
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2], "producer ids {ids:?}");

    // A group has one coordinator, whichever node is asked; the others refuse its
    // group requests with NOT_COORDINATOR.
    let find = |n: &Node| {
        let r = n
            .client()
            .call_version(FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g1")), 3)
            .unwrap();
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        r.node_id.0
    };
    let coordinator = find(&nodes[0]);
    assert!(nodes.iter().all(|n| find(n) == coordinator));
    let not_it = &nodes[(coordinator % 3) as usize];
    let join = JoinGroupRequest::default()
        .with_group_id(StrBytes::from_static_str("g1").into())
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"));
    assert_eq!(not_it.client().call_version(join, 5).unwrap().error_code, NOT_COORDINATOR);

    // Broker 3 stops: once its registration expires its partitions go offline (leader
    // -1, LEADER_NOT_AVAILABLE, epoch bumped); when it returns they come back to it.
    let before = leaders(&metadata(&nodes[0], "spread"), "spread");
    nodes[2].broker.take().unwrap().shutdown();
    let offline = wait_until("broker 3's partitions offline", Duration::from_secs(15), || {
        let m = metadata(&nodes[0], "spread");
        let now = leaders(&m, "spread");
        (m.brokers.len() == 2 && now.iter().all(|p| p.0 != 3)).then_some(now)
    });
    for (b, a) in before.iter().zip(&offline) {
        if b.0 == 3 {
            assert_eq!(*a, (-1, b.1 + 1, LEADER_NOT_AVAILABLE));
        } else {
            assert_eq!(a, b, "partitions of live brokers are untouched");
        }
    }
    let back = Broker::start(nodes[2].config.clone()).unwrap();
    nodes[2].broker = Some(back);
    let restored = wait_until("broker 3's partitions back", Duration::from_secs(15), || {
        let now = leaders(&metadata(&nodes[0], "spread"), "spread");
        now.iter().all(|p| p.0 > 0).then_some(now)
    });
    for (b, a) in before.iter().zip(&restored) {
        let bumps = if b.0 == 3 { 2 } else { 0 };
        assert_eq!(*a, (b.0, b.1 + bumps, 0));
    }
    // Its data survived, and it serves it again at the new epoch.
    let p = before.iter().position(|p| p.0 == 3).unwrap() as i32;
    let (code, hw, _) = wait_until("broker 3 serving again", Duration::from_secs(10), || {
        let r = fetch(&mut nodes[2].client(), "spread", p, 0, 0);
        (r.0 == 0).then_some(r)
    });
    assert_eq!((code, hw), (0, 3), "the record and the control batches of epochs 0 and 2");
    drop(nodes);
}

/// The one leader of `topic`'s partition 0 that every running node agrees on (other
/// than `not`), with its epoch.
fn agreed_leader(nodes: &[Node], topic: &str, not: i32) -> (i32, i32) {
    wait_until("an agreed leader", Duration::from_secs(15), || {
        let views: Vec<(i32, i32, i16)> = nodes
            .iter()
            .filter(|n| n.broker.is_some())
            .map(|n| leaders(&metadata(n, topic), topic).first().copied())
            .collect::<Option<_>>()?;
        let first = views[0];
        (first.0 > 0 && first.0 != not && first.2 == 0 && views.iter().all(|v| *v == first))
            .then_some((first.0, first.1))
    })
}

/// Produces `value` at `leader` until it is acknowledged (a new leader may still be
/// opening its epoch); returns its offset.
fn produce_acked(nodes: &[Node], leader: i32, value: &str) -> i64 {
    wait_until("an acknowledged produce", Duration::from_secs(15), || {
        let mut records = [record("k", value, 1)];
        let r = produce(
            &mut nodes[(leader - 1) as usize].client(),
            "replicated",
            0,
            batch(&mut records, Compression::None),
        );
        let p = &r.responses[0].partition_responses[0];
        (p.error_code == 0).then_some(p.base_offset)
    })
}

#[test]
fn partitions_replicate_and_fail_over_without_losing_acknowledged_records() {
    let mut nodes = cluster(3);
    for node in &nodes {
        wait_until("three live brokers", Duration::from_secs(10), || {
            (node.client().metadata(Some(&[]), false).ok()?.brokers.len() == 3).then_some(())
        });
    }
    // Quorums larger than the replicas are refused, saying why.
    const INVALID_CONFIG: i16 = 40;
    assert_eq!(create_topic(&mut nodes[0].client(), "bad", 1, &[("write.quorum", "4")]), INVALID_CONFIG);
    assert_eq!(create_topic(&mut nodes[1].client(), "bad", 1, &[("min.insync.replicas", "4")]), INVALID_CONFIG);
    assert_eq!(create_topic(&mut nodes[2].client(), "bad", 1, &[("read.quorum", "4")]), INVALID_CONFIG);
    assert_eq!(create_topic(&mut nodes[2].client(), "bad", 1, &[("replication.factor", "4")]), 38);
    assert_eq!(
        create_topic(&mut nodes[0].client(), "bad", 1, &[("replication.factor", "2"), ("write.quorum", "3")]),
        40
    );
    // Defaults: three replicas, write and read quorums of two.
    assert_eq!(create_topic(&mut nodes[0].client(), "replicated", 1, &[]), 0);
    let m = metadata(&nodes[0], "replicated");
    let p = &m.topics[0].partitions[0];
    assert_eq!(p.replica_nodes.len(), 3, "three replicas by default");
    assert!(!p.isr_nodes.is_empty() && p.isr_nodes.len() <= 3, "the leader, then what it reports in sync");
    let (leader, epoch) = agreed_leader(&nodes, "replicated", 0);

    let mut acked = Vec::new();
    for i in 0..50 {
        let v = format!("a{i}");
        acked.push((produce_acked(&nodes, leader, &v), v));
    }
    let (code, hw, bytes) = fetch(&mut nodes[(leader - 1) as usize].client(), "replicated", 0, 0, 0);
    assert_eq!(code, 0);
    assert_eq!(hw, acked.last().unwrap().0 + 1, "acks=all answered at the high watermark");
    assert_eq!(decode(&bytes).len(), 50);

    // The in-sync replicas are the leader's report: all three once they hold its epoch.
    wait_until("three in-sync replicas reported", Duration::from_secs(10), || {
        let p = &metadata(&nodes[2], "replicated").topics[0].partitions[0];
        (p.isr_nodes.len() == 3).then_some(())
    });

    // The leader stops: another replica leads a newer epoch with every acknowledged
    // record, and takes new ones.
    nodes[(leader - 1) as usize].broker.take().unwrap().shutdown();
    let (second, epoch2) = agreed_leader(&nodes, "replicated", leader);
    assert!(second != leader && epoch2 > epoch, "{second}@{epoch2} after {leader}@{epoch}");
    for i in 50..60 {
        let v = format!("a{i}");
        acked.push((produce_acked(&nodes, second, &v), v));
    }
    let read_all = |nodes: &[Node], at: i32| {
        let (code, _, bytes) = fetch(&mut nodes[(at - 1) as usize].client(), "replicated", 0, 0, 0);
        assert_eq!(code, 0);
        decode(&bytes).into_iter().map(|(o, _, v)| (o, v)).collect::<Vec<_>>()
    };
    assert_eq!(read_all(&nodes, second), acked, "every acknowledged record, at its offset, once");

    // The old leader returns and catches up as a follower; then the second leader
    // stops too, and whichever replica leads next still has everything.
    let back = Broker::start(nodes[(leader - 1) as usize].config.clone()).unwrap();
    nodes[(leader - 1) as usize].broker = Some(back);
    wait_until("the old leader back in sync", Duration::from_secs(15), || {
        let m = metadata(&nodes[0], "replicated");
        (m.topics[0].partitions[0].isr_nodes.len() == 3).then_some(())
    });
    // Let the pushes reach it (the high watermark travels with the next push).
    std::thread::sleep(Duration::from_millis(500));
    nodes[(second - 1) as usize].broker.take().unwrap().shutdown();
    let (third, epoch3) = agreed_leader(&nodes, "replicated", second);
    assert!(third != second && epoch3 > epoch2);
    let v = "after".to_string();
    acked.push((produce_acked(&nodes, third, &v), v));
    let all = read_all(&nodes, third);
    assert_eq!(all, acked, "nothing acknowledged was lost, moved or duplicated over two failovers");

    // Everyone back; a preferred leader election (`dlog cluster rebalance-leaders`)
    // gives the partition to its first replica, which leads with everything.
    let back = Broker::start(nodes[(second - 1) as usize].config.clone()).unwrap();
    nodes[(second - 1) as usize].broker = Some(back);
    let preferred = metadata(&nodes[0], "replicated").topics[0].partitions[0].replica_nodes[0].0;
    let elect =
        ElectLeadersRequest::default().with_election_type(0).with_topic_partitions(None).with_timeout_ms(10_000);
    wait_until("the preferred replica leading", Duration::from_secs(20), || {
        let r = nodes[0].client().call_any(ApiKey::ElectLeaders, elect.clone()).ok()?;
        let code = r.replica_election_results.iter().find(|t| t.topic.0.as_str() == "replicated")?.partition_result[0]
            .error_code;
        (code == 84).then_some(())
    });
    let (now, _) = agreed_leader(&nodes, "replicated", 0);
    assert_eq!(now, preferred);
    let v = "preferred".to_string();
    acked.push((produce_acked(&nodes, preferred, &v), v));
    assert_eq!(read_all(&nodes, preferred), acked);

    // DeleteRecords at the leader reaches the followers: records deleted before a
    // failover stay deleted after it.
    use dlog_protocol::kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    let delete = dlog_protocol::kafka_protocol::messages::DeleteRecordsRequest::default().with_topics(vec![
        DeleteRecordsTopic::default()
            .with_name(topic_name("replicated"))
            .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(11)]),
    ]);
    let r = nodes[(preferred - 1) as usize].client().call_any(ApiKey::DeleteRecords, delete).unwrap();
    assert_eq!(r.topics[0].partitions[0].low_watermark, 11);
    std::thread::sleep(Duration::from_millis(500));
    nodes[(preferred - 1) as usize].broker.take().unwrap().shutdown();
    let (last, _) = agreed_leader(&nodes, "replicated", preferred);
    let (code, _, _) = fetch(&mut nodes[(last - 1) as usize].client(), "replicated", 0, 2, 0);
    assert_eq!(code, 1, "below the replicated log start: OFFSET_OUT_OF_RANGE");
    let (code, _, bytes) = fetch(&mut nodes[(last - 1) as usize].client(), "replicated", 0, 11, 0);
    assert_eq!(code, 0);
    assert_eq!(decode(&bytes)[0].0, 11);
    drop(nodes);
}

/// Commits `offset` for `group`'s partition 0 of `topic` at `node` (no member: a
/// standalone commit); the error code.
fn commit_at(node: &Node, group: &str, topic: &str, offset: i64) -> i16 {
    use dlog_protocol::kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use dlog_protocol::kafka_protocol::messages::{GroupId, OffsetCommitRequest};
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_string(String::new()))
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(topic_name(topic)).with_partitions(vec![
            OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1),
        ])]);
    let Ok(r) = node.client().call_any(ApiKey::OffsetCommit, request) else { return -1 };
    r.topics[0].partitions[0].error_code
}

/// `group`'s committed offset of `topic`'s partition 0 as `node` answers it:
/// (error, offset).
fn fetch_at(node: &Node, group: &str, topic: &str) -> (i16, i64) {
    use dlog_protocol::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use dlog_protocol::kafka_protocol::messages::{GroupId, OffsetFetchRequest};
    let request =
        OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_string(group.to_string()))).with_topics(
            Some(vec![OffsetFetchRequestTopic::default().with_name(topic_name(topic)).with_partition_indexes(vec![0])]),
        );
    let Ok(r) = node.client().call_version(request, 5) else { return (-1, -1) };
    if r.error_code != 0 {
        return (r.error_code, -1);
    }
    (r.topics[0].partitions[0].error_code, r.topics[0].partitions[0].committed_offset)
}

/// A node leading a group's `__consumer_offsets` partition again, after another led
/// it and took commits, answers those commits, not what it held before; and a node
/// that starts leading answers the commits of the leaders before it.
#[test]
fn a_coordinator_leading_again_answers_the_commits_made_meanwhile() {
    const OFFSETS: &str = "__consumer_offsets";
    let mut nodes = cluster(3);
    for node in &nodes {
        wait_until("three live brokers", Duration::from_secs(10), || {
            (node.client().metadata(Some(&[]), false).ok()?.brokers.len() == 3).then_some(())
        });
    }
    assert_eq!(create_topic(&mut nodes[0].client(), "t", 1, &[]), 0);
    let group = "g";
    let p = dlog_server::groups::partition_for(group, dlog_server::groups::OFFSETS_PARTITIONS) as usize;
    // The first commit creates the offsets topic; wait until it is led, all in sync.
    wait_until("a first commit", Duration::from_secs(20), || {
        nodes.iter().any(|n| commit_at(n, group, "t", 1) == 0).then_some(())
    });
    let partition = |nodes: &[Node], at: usize| {
        let m = metadata(&nodes[at], OFFSETS);
        let part = m.topics[0].partitions.iter().find(|q| q.partition_index == p as i32).cloned().expect("listed");
        (part.leader_id.0, part.replica_nodes.iter().map(|r| r.0).collect::<Vec<_>>(), part.isr_nodes.len())
    };
    let led_by = |nodes: &[Node], at: usize, leader: i32| {
        wait_until("the expected leader, all live replicas in sync", Duration::from_secs(20), || {
            let (l, replicas, isr) = partition(nodes, at);
            let live = nodes.iter().filter(|n| n.broker.is_some()).count();
            (l == leader && isr == live.min(replicas.len())).then_some(())
        })
    };
    let (_, replicas, _) = partition(&nodes, 0);
    let (x, y) = (replicas[0], replicas[1]);
    let (xi, yi) = ((x - 1) as usize, (y - 1) as usize);
    led_by(&nodes, yi, x);

    // x stops: y (the first live in-sync replica) leads and takes a commit.
    nodes[xi].broker.take().unwrap().shutdown();
    led_by(&nodes, yi, y);
    wait_until("a commit at y", Duration::from_secs(20), || (commit_at(&nodes[yi], group, "t", 10) == 0).then_some(()));
    assert_eq!(fetch_at(&nodes[yi], group, "t"), (0, 10));

    // x returns, leads again (preferred leader election) and takes a newer commit.
    let back = Broker::start(nodes[xi].config.clone()).unwrap();
    nodes[xi].broker = Some(back);
    led_by(&nodes, yi, y);
    // Meanwhile a second member's JoinGroup waits at y for the first one to rejoin (a
    // group of the same offsets partition): when y stops leading it, that request gets
    // NOT_COORDINATOR at once rather than waiting out the rebalance there.
    let offsets_partitions = dlog_server::groups::OFFSETS_PARTITIONS;
    let other =
        (0..).map(|i| format!("j{i}")).find(|g| dlog_server::groups::partition_for(g, offsets_partitions) == p as i32);
    let other = other.expect("some group id maps to the partition");
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(StrBytes::from_string(other.clone()).into())
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(bytes::Bytes::from_static(b"m"))])
    };
    let first = nodes[yi].client().call_version(join(""), 3).unwrap();
    assert_eq!(first.error_code, 0, "the first member joins (after the initial delay)");
    let mut at_y = nodes[yi].client();
    let request = join("");
    let second = std::thread::spawn(move || {
        let started = Instant::now();
        let r = at_y.call_version(request, 3).unwrap();
        (r.error_code, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!second.is_finished(), "the second member waits for the first to rejoin");
    let elect =
        ElectLeadersRequest::default().with_election_type(0).with_topic_partitions(None).with_timeout_ms(10_000);
    nodes[yi].client().call_any(ApiKey::ElectLeaders, elect).unwrap();
    led_by(&nodes, yi, x);
    let (code, waited) = second.join().unwrap();
    assert_eq!(code, NOT_COORDINATOR, "a join waiting at a coordinator that lost the partition");
    assert!(waited < Duration::from_secs(15), "answered when leadership moved, not after the rebalance ({waited:?})");
    let answered = wait_until("x answering", Duration::from_secs(20), || {
        let r = fetch_at(&nodes[xi], group, "t");
        (r.0 == 0).then_some(r)
    });
    assert_eq!(answered, (0, 10), "the new leader answers the commit made at the one before");
    wait_until("a commit at x", Duration::from_secs(20), || (commit_at(&nodes[xi], group, "t", 20) == 0).then_some(()));
    // Let the pushes carry the high watermark to y.
    std::thread::sleep(Duration::from_millis(500));

    // x stops again: y leads once more and answers x's commit, not the 10 it held.
    nodes[xi].broker.take().unwrap().shutdown();
    led_by(&nodes, yi, y);
    let answered = wait_until("y answering", Duration::from_secs(20), || {
        let r = fetch_at(&nodes[yi], group, "t");
        (r.0 == 0).then_some(r)
    });
    assert_eq!(answered, (0, 20), "y replays the partition it leads again");
    drop(nodes);
}
