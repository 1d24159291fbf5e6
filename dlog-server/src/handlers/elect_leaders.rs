//! ElectLeaders (KIP-460): preferred leader election, as `dlog cluster
//! rebalance-leaders` and Kafka's `kafka-leader-election.sh --election-type preferred`
//! send it. Each partition answers ELECTION_NOT_NEEDED when its preferred (first)
//! replica leads already, PREFERRED_LEADER_NOT_AVAILABLE when that replica's broker is
//! not live; the others move to it through the controller (a new leader epoch, which
//! the new leader opens by sealing and catching up as after any failover). Unclean
//! elections are refused: DLog's failover already elects any live replica of an
//! available topic.

use std::rc::Rc;

use dlog_core::{Error, NodeId, Result};
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use dlog_protocol::kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};

use super::{wire, wire_topic};
use crate::controller::ControllerRequest;
use crate::shard::Shard;

/// One partition's answer before forwarding: refused, or to be moved.
type Outcome = (i32, Result<()>);

pub async fn handle(shard: &Rc<Shard>, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let deadline = super::Deadline::from_timeout_ms(request.timeout_ms);
    if request.election_type != 0 {
        let e = Error::InvalidRequest("only preferred leader election (type 0) is supported".into());
        return ElectLeadersResponse::default().with_error_code(error_code(&e));
    }
    let live: std::collections::BTreeSet<NodeId> = match &shard.shared.cluster {
        Some(c) => c.brokers().iter().map(|b| b.id).collect(),
        None => [shard.shared.config.node_id].into(),
    };
    // No topic list: every partition of every topic.
    let wanted: Vec<(String, Vec<i32>)> = match &request.topic_partitions {
        Some(list) => list.iter().map(|t| (t.topic.0.to_string(), t.partitions.clone())).collect(),
        None => shard
            .shared
            .topics
            .read()
            .expect("topic registry lock")
            .list()
            .map(|t| (t.name.to_string(), (0..t.partitions).collect()))
            .collect(),
    };
    let mut outcomes: Vec<(String, Vec<Outcome>)> = Vec::new();
    let mut to_move = Vec::new();
    for (name, partitions) in wanted {
        let meta = shard.shared.topic(&name);
        let mut results = Vec::new();
        for p in partitions {
            let outcome = match meta.as_ref().and_then(|m| m.assignment(p)) {
                None => Err(Error::UnknownTopicOrPartition(format!("{name}-{p}"))),
                Some(a) => match a.replicas.first() {
                    Some(first) if a.leader == Some(*first) => Err(Error::ElectionNotNeeded(format!("{name}-{p}"))),
                    // Only to a replica the leader reports in sync: one still catching up
                    // does not hold the log (Kafka answers the same).
                    Some(first) if live.contains(first) && a.in_sync(*first) => {
                        to_move.push((name.clone(), p));
                        Ok(())
                    }
                    _ => Err(Error::PreferredLeaderNotAvailable(format!("{name}-{p}"))),
                },
            };
            results.push((p, outcome));
        }
        outcomes.push((name, results));
    }
    let forwarded = match (&shard.shared.cluster, to_move.is_empty()) {
        (Some(cluster), false) => {
            cluster.forward(ControllerRequest::ElectPreferred { partitions: to_move }, deadline.left()).await
        }
        _ => Ok(()),
    };
    let results = outcomes
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(p, outcome)| {
                    let outcome = outcome.and_then(|()| forwarded.clone());
                    let code = match &outcome {
                        Ok(()) => 0,
                        Err(e) => error_code(e),
                    };
                    PartitionResult::default()
                        .with_partition_id(p)
                        .with_error_code(code)
                        .with_error_message(outcome.err().map(|e| wire(&e.to_string())))
                })
                .collect();
            ReplicaElectionResult::default().with_topic(wire_topic(&name)).with_partition_result(partitions)
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}
