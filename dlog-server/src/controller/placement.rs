//! Where the controller puts replicas: rack-alternated copysets of the live brokers,
//! the replication factor of a new topic, and the checks of client-chosen replicas.

use super::*;

/// Kafka's rack-alternating order of brokers: sorted by id within each rack, the racks
/// taken in turn, so that consecutive positions fall in different racks whenever
/// possible. Brokers without a rack form one rack of their own.
pub fn rack_alternated(brokers: &[BrokerInfo]) -> Vec<NodeId> {
    let mut racks: BTreeMap<Option<&str>, Vec<NodeId>> = BTreeMap::new();
    for b in brokers {
        racks.entry(b.rack.as_deref()).or_default().push(b.id);
    }
    for ids in racks.values_mut() {
        ids.sort();
    }
    let longest = racks.values().map(Vec::len).max().unwrap_or(0);
    let mut order = Vec::with_capacity(brokers.len());
    for i in 0..longest {
        for ids in racks.values() {
            if let Some(&id) = ids.get(i) {
                order.push(id);
            }
        }
    }
    order
}

/// The replication factor of a new topic: the requested one (at most the live
/// brokers), or 3 capped at the live brokers.
pub fn check_replication_factor(requested: Option<i32>, live: usize) -> Result<usize> {
    match requested {
        None | Some(-1) => Ok(live.clamp(1, DEFAULT_REPLICATION_FACTOR)),
        Some(rf) if rf <= 0 => {
            Err(Error::InvalidReplicationFactor(format!("replication factor must be positive, got {rf}")))
        }
        Some(rf) if rf as usize > live => Err(Error::InvalidReplicationFactor(format!(
            "replication factor {rf} is larger than the {live} live broker(s)"
        ))),
        Some(rf) => Ok(rf as usize),
    }
}

/// Replicas per partition when a topic asks for none.
pub const DEFAULT_REPLICATION_FACTOR: usize = 3;

/// Places partitions `from..to` of a topic, `rf` replicas each, on copysets of the
/// live brokers (Cidon et al.: few distinct replica sets, so that `rf` simultaneous
/// failures rarely take every copy of some partition; spread over racks when there
/// are enough). The copysets depend only on the brokers, so every topic shares them;
/// `start` (from the topic id) staggers where a topic's leaders begin.
pub fn place(
    brokers: &[BrokerInfo],
    start: usize,
    from: i32,
    to: i32,
    rf: usize,
    scatter_width: usize,
) -> Result<Vec<PartitionRecord>> {
    let nodes: Vec<Node> = brokers.iter().map(|b| Node { id: b.id, rack: b.rack.clone() }).collect();
    let sets = copysets(&nodes, rf, scatter_width, COPYSET_SEED)
        .map_err(|e| Error::InvalidReplicationFactor(e.to_string()))?;
    let lists = assign(&sets, (to - from) as usize, start.wrapping_add(from as usize));
    Ok(lists
        .into_iter()
        .map(|replicas| {
            let replicas: Vec<i32> = replicas.iter().map(|n| n.0).collect();
            PartitionRecord { leader: replicas[0], replicas, epoch: 0, isr: None, cannot_lead: Vec::new() }
        })
        .collect())
}

/// Every node computes the same copysets from the same brokers.
pub(crate) const COPYSET_SEED: u64 = 0x646c_6f67;

/// Checks replicas the client chose: distinct live brokers, the same number for every
/// partition.
pub(crate) fn chosen(assignment: &[Vec<i32>], live: &BTreeSet<i32>, first: i32) -> Result<Vec<PartitionRecord>> {
    let rf = assignment.first().map_or(0, Vec::len);
    assignment
        .iter()
        .enumerate()
        .map(|(i, replicas)| {
            let p = first + i as i32;
            if replicas.is_empty() || replicas.len() != rf {
                return Err(Error::InvalidReplicaAssignment(format!(
                    "partition {p} is assigned {} replicas; every partition needs the same number, at least 1",
                    replicas.len()
                )));
            }
            if let Some(b) = replicas.iter().find(|b| !live.contains(b)) {
                return Err(Error::InvalidReplicaAssignment(format!(
                    "partition {p} is assigned to broker {b}, which is not a live broker"
                )));
            }
            if replicas.iter().collect::<BTreeSet<_>>().len() != replicas.len() {
                return Err(Error::InvalidReplicaAssignment(format!(
                    "partition {p} names a broker twice: {replicas:?}"
                )));
            }
            Ok(PartitionRecord {
                replicas: replicas.clone(),
                leader: replicas[0],
                epoch: 0,
                isr: None,
                cannot_lead: Vec::new(),
            })
        })
        .collect()
}
