//! The controller's placement, record and request tests.

use super::*;

fn broker(id: i32, rack: Option<&str>) -> BrokerInfo {
    BrokerInfo { id: NodeId(id), host: "h".into(), port: 1, rack: rack.map(str::to_string), incarnation: String::new() }
}

#[test]
fn racks_alternate() {
    let brokers =
        [broker(1, Some("a")), broker(2, Some("a")), broker(3, Some("b")), broker(4, Some("b")), broker(5, None)];
    let order: Vec<i32> = rack_alternated(&brokers).iter().map(|n| n.0).collect();
    assert_eq!(order, vec![5, 1, 3, 2, 4]);
}

#[test]
fn partitions_are_placed_on_copysets_across_racks() {
    let brokers =
        [broker(1, Some("a")), broker(2, Some("a")), broker(3, Some("b")), broker(4, Some("b")), broker(5, None)];
    let placed = place(&brokers, 1, 0, 10, 1, 4).unwrap();
    let mut leaders: Vec<i32> = placed.iter().map(|p| p.leader).collect();
    leaders.sort();
    assert_eq!(leaders, vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5], "one replica: leaders round-robin");
    assert!(placed.iter().all(|p| p.replicas == vec![p.leader] && p.epoch == 0));
    let three = place(&brokers, 1, 0, 30, 3, 4).unwrap();
    let rack = |id: i32| brokers.iter().find(|b| b.id.0 == id).unwrap().rack.clone();
    for p in &three {
        assert_eq!(p.replicas[0], p.leader);
        let racks: BTreeSet<_> = p.replicas.iter().map(|&r| rack(r)).collect();
        assert_eq!(racks.len(), 3, "{:?} spans three racks", p.replicas);
    }
    let distinct: BTreeSet<Vec<i32>> = three
        .iter()
        .map(|p| {
            let mut r = p.replicas.clone();
            r.sort();
            r
        })
        .collect();
    assert!(distinct.len() < 10, "copysets, not every combination: {distinct:?}");
    assert!(place(&brokers, 0, 0, 1, 6, 4).is_err());
}

#[test]
fn leaders_follow_their_brokers_with_growing_epochs() {
    let mut r = TopicRecord {
        id: TopicId::NONE.to_hex(),
        configs: BTreeMap::new(),
        partitions: place(&[broker(1, None), broker(2, None)], 0, 0, 2, 1, 4).unwrap(),
    };
    assert_eq!(elect_leaders(&mut r, &[1, 2].into()), 0);
    assert_eq!(elect_leaders(&mut r, &[1].into()), 1, "broker 2 is gone");
    assert_eq!((r.partitions[1].leader, r.partitions[1].epoch), (-1, 1));
    assert_eq!(elect_leaders(&mut r, &[1].into()), 0, "still offline: no change");
    assert_eq!(elect_leaders(&mut r, &[1, 2].into()), 1, "broker 2 is back");
    assert_eq!((r.partitions[1].leader, r.partitions[1].epoch), (2, 2));
    assert_eq!((r.partitions[0].leader, r.partitions[0].epoch), (1, 0));
}

#[test]
fn a_new_leader_is_a_live_replica_the_last_leader_counted_in_sync() {
    let mut r = TopicRecord {
        id: TopicId::NONE.to_hex(),
        configs: BTreeMap::new(),
        partitions: vec![PartitionRecord {
            replicas: vec![1, 2, 3],
            leader: 1,
            epoch: 4,
            isr: Some(vec![1, 3]),
            cannot_lead: Vec::new(),
        }],
    };
    assert_eq!(elect_leaders(&mut r, &[2, 3].into()), 1);
    let p = &r.partitions[0];
    assert_eq!((p.leader, p.epoch, &p.isr), (3, 5, &None), "3 was in sync, 2 was not");
    r.partitions[0].isr = Some(vec![3]);
    assert_eq!(elect_leaders(&mut r, &[2].into()), 1, "no in-sync replica live: any live one");
    assert_eq!(r.partitions[0].leader, 2);
    assert_eq!(prefer(&mut r, &[1, 2].into(), |_| true), 0, "1 is not known to be in sync");
    r.partitions[0].isr = Some(vec![2, 3]);
    assert_eq!(prefer(&mut r, &[1, 2].into(), |_| true), 0, "1 is not in sync");
    r.partitions[0].isr = Some(vec![2, 1]);
    assert_eq!(prefer(&mut r, &[1, 2].into(), |_| true), 1);
    assert_eq!((r.partitions[0].leader, r.partitions[0].epoch), (1, 7));
    assert_eq!(prefer(&mut r, &[1, 2].into(), |_| true), 0, "already preferred");
}

/// A replica whose node reported it unfit (a disk error, or data lost and not
/// caught up) leaves the in-sync set, loses the leadership to an in-sync replica,
/// and is never elected or preferred until its node reports it fit again.
#[test]
fn a_replica_reported_unfit_loses_the_leadership_and_is_never_elected() {
    let all: BTreeSet<i32> = [1, 2, 3].into();
    let mut p = PartitionRecord {
        replicas: vec![1, 2, 3],
        leader: 1,
        epoch: 4,
        isr: Some(vec![1, 2, 3]),
        cannot_lead: Vec::new(),
    };
    assert!(!p.set_fit(2, false, &all), "a follower unfit: no leader change");
    assert_eq!((p.leader, p.epoch, p.isr.clone()), (1, 4, Some(vec![1, 3])));
    assert!(p.set_fit(1, false, &all), "the leader unfit: it moves");
    assert_eq!((p.leader, p.epoch, &p.isr), (3, 5, &None), "to the fit one it counted in sync");
    assert_eq!(p.cannot_lead, vec![2, 1]);
    assert!(!p.in_sync(1) && !p.may_lead(1));

    let mut r = TopicRecord { id: TopicId::NONE.to_hex(), configs: BTreeMap::new(), partitions: vec![p] };
    r.partitions[0].isr = Some(vec![1, 2, 3]);
    assert_eq!(prefer(&mut r, &all, |_| true), 0, "an unfit preferred replica is not made leader");
    assert_eq!(elect_leaders(&mut r, &[1, 2].into()), 1, "its leader died");
    assert_eq!(r.partitions[0].leader, -1, "only unfit replicas live: offline rather than unfit");
    assert!(!r.partitions[0].set_fit(2, true, &all));
    assert_eq!(elect_leaders(&mut r, &[1, 2].into()), 1);
    assert_eq!(r.partitions[0].leader, 2, "fit again: elected");
    let decoded = TopicRecord::decode(&r.encode()).unwrap();
    assert_eq!(decoded.partitions[0].cannot_lead, vec![1]);
    let old = br#"{"id":"00000000000000000000000000000000","configs":{},"partitions":[{"replicas":[1],"leader":1,"epoch":0}]}"#;
    assert!(TopicRecord::decode(old).unwrap().partitions[0].cannot_lead.is_empty(), "records before it decode");
}

#[test]
fn records_and_requests_round_trip() {
    let r = TopicRecord {
        id: TopicId([7; 16]).to_hex(),
        configs: [("retention.ms".to_string(), "5".to_string())].into(),
        partitions: place(&[broker(3, None)], 0, 0, 2, 1, 4).unwrap(),
    };
    assert_eq!(TopicRecord::decode(&r.encode()).unwrap(), r);
    let meta = r.to_meta("t", &TopicConfig::default()).unwrap();
    assert_eq!((meta.partitions, meta.config.retention_ms), (2, 5));
    assert_eq!(meta.assignments[1].leader, Some(NodeId(3)));
    let mut q = ControllerRequest::CreatePartitions {
        name: "t".into(),
        count: 3,
        assignment: Some(vec![vec![1]]),
        retried: false,
    };
    assert_eq!(ControllerRequest::from_bytes(&q.to_bytes()).unwrap(), q);
    q.mark_retried();
    assert!(matches!(q, ControllerRequest::CreatePartitions { retried: true, .. }));
    let change = ConfigChange {
        replace: false,
        set: [("a".to_string(), "1".to_string())].into(),
        delete: vec!["b".to_string()],
    };
    let before: BTreeMap<String, String> =
        [("b".to_string(), "2".to_string()), ("c".to_string(), "3".to_string())].into();
    assert_eq!(change.apply(&before), [("a".to_string(), "1".to_string()), ("c".to_string(), "3".to_string())].into());
    assert_eq!(ConfigChange { replace: true, ..change }.apply(&before).len(), 1);
    let refused: ControllerReply = Err(Error::TopicAlreadyExists("t".into()));
    assert_eq!(decode_reply(&encode_reply(&refused)), refused);
    assert_eq!(decode_reply(&encode_reply(&Ok(42))), Ok(42));
}

#[test]
fn chosen_replicas_must_be_distinct_live_brokers() {
    let live: BTreeSet<i32> = [1, 2].into();
    assert!(chosen(&[vec![1], vec![2]], &live, 0).is_ok());
    assert!(chosen(&[vec![1, 2], vec![2, 1]], &live, 0).is_ok());
    assert!(matches!(chosen(&[vec![9]], &live, 0), Err(Error::InvalidReplicaAssignment(_))));
    assert!(matches!(chosen(&[vec![1, 1]], &live, 0), Err(Error::InvalidReplicaAssignment(_))));
    assert!(matches!(chosen(&[vec![1, 2], vec![1]], &live, 0), Err(Error::InvalidReplicaAssignment(_))));
    assert_eq!(check_replication_factor(None, 2), Ok(2));
    assert_eq!(check_replication_factor(Some(-1), 5), Ok(3));
    assert!(matches!(check_replication_factor(Some(4), 3), Err(Error::InvalidReplicationFactor(_))));
    assert!(matches!(check_replication_factor(Some(0), 3), Err(Error::InvalidReplicationFactor(_))));
    let mut r = TopicRecord { id: TopicId::NONE.to_hex(), configs: BTreeMap::new(), partitions: vec![] };
    let brokers = [broker(1, None)];
    assert!(grow(&mut r, 0, None, &brokers, 4).is_err());
    grow(&mut r, 3, None, &brokers, 4).unwrap();
    assert_eq!(r.partitions.len(), 3);
}
