//! Copyset placement: which nodes hold a new partition's replicas.
//!
//! Random placement puts each partition on its own random set of RF nodes; with many
//! partitions nearly every RF-subset of the cluster holds some partition, so any RF nodes
//! failing together lose data. Copysets (Cidon et al., "Copysets: Reducing the Frequency
//! of Data Loss in Cloud Storage", USENIX ATC 2013) restrict replica sets to a small,
//! fixed family of node groups, the copysets, while each node still shares copysets with
//! about S others (the scatter width), who re-replicate its data in parallel after it
//! fails. Fewer distinct replica sets means a lower chance that some partition loses all
//! of its copies.
//!
//! Two steps, both pure and deterministic:
//!
//! - [`copysets`] builds the family: `P = ceil(S / (RF - 1))` seeded random permutations
//!   of the nodes, each chopped into groups of RF, spanning RF distinct racks when the
//!   cluster has at least RF of them.
//! - [`assign`] maps a topic's partitions onto the family so that preferred leaders
//!   (first replicas) are spread evenly across nodes.
//!
//! Where we differ from the paper: the nodes a permutation leaves over (fewer than RF)
//! are dropped as in the paper, but a node that no permutation placed gets a repair
//! copyset of its own, because every node must be able to hold data. The permutations
//! are built rack-aware (a greedy fill), not by rejection sampling.

use std::collections::{BTreeMap, BTreeSet};

use dlog_core::NodeId;

/// The scatter width used when a topic does not choose one.
///
/// 4 gives `P = 2` permutations at the default RF of 3: each node shares copysets with
/// at most 4 others (so about `2N / 3` copysets on N nodes, against `C(N, 3)` for random
/// placement) and its data is re-replicated from 4 peers in parallel after it fails. A
/// larger S speeds up that recovery and spreads load; a smaller S lowers the chance of
/// loss. The paper works with small S of this order.
pub const DEFAULT_SCATTER_WIDTH: usize = 4;

/// A broker as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    /// Its rack or zone (`broker.rack`); a node without one counts as a rack of its own.
    pub rack: Option<String>,
}

impl Node {
    pub fn new(id: NodeId) -> Node {
        Node { id, rack: None }
    }

    pub fn in_rack(id: NodeId, rack: impl Into<String>) -> Node {
        Node { id, rack: Some(rack.into()) }
    }
}

/// Why no copysets can be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("replication factor must be at least 1")]
    NoReplicas,
    #[error("replication factor {rf} is larger than the {nodes} available nodes")]
    TooFewNodes { rf: usize, nodes: usize },
    #[error("node {0} is listed twice")]
    DuplicateNode(NodeId),
}

/// The copysets for `nodes` with replication factor `rf` and scatter width
/// `scatter_width` (each node shares copysets with about that many others), seeded by
/// `seed`.
///
/// Each copyset holds `rf` distinct nodes, sorted by id; no copyset appears twice; every
/// node is in at least one. When the nodes span at least `rf` racks (a node without a
/// rack counting as its own), every copyset spans `rf` distinct racks. The result depends
/// only on the set of nodes, `rf`, the scatter width and the seed, not on the order of
/// `nodes`.
///
/// The scatter width is clamped to `nodes.len() - 1` (no node has more peers) and gives
/// at least one permutation; `rf == 1` gives one copyset per node and `rf == nodes.len()`
/// one copyset of all nodes.
pub fn copysets(
    nodes: &[Node],
    rf: usize,
    scatter_width: usize,
    seed: u64,
) -> Result<Vec<Vec<NodeId>>, PlacementError> {
    if rf == 0 {
        return Err(PlacementError::NoReplicas);
    }
    if rf > nodes.len() {
        return Err(PlacementError::TooFewNodes { rf, nodes: nodes.len() });
    }
    let mut sorted: Vec<&Node> = nodes.iter().collect();
    sorted.sort_by_key(|node| node.id);
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0].id == pair[1].id) {
        return Err(PlacementError::DuplicateNode(pair[0].id));
    }
    let ids: Vec<NodeId> = sorted.iter().map(|node| node.id).collect();
    if rf == 1 {
        return Ok(ids.iter().map(|&id| vec![id]).collect());
    }

    let racks = rack_keys(&sorted);
    let rack_count = racks.iter().collect::<BTreeSet<_>>().len();
    let spread_racks = rack_count >= rf;
    let n = ids.len();
    let permutations = scatter_width.min(n - 1).div_ceil(rf - 1).max(1);

    let mut rng = SplitMix64::new(seed);
    // Groups of node indices (into `ids`), in the order they are made.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for _ in 0..permutations {
        let order = rng.permutation(n);
        groups.extend(chop(&order, &racks, rf, spread_racks));
    }

    // Repair: a node that no permutation placed gets a copyset with other unplaced nodes
    // first, then the nodes in fewest copysets (ties in a random order).
    let mut membership = vec![0usize; n];
    for &member in groups.iter().flatten() {
        membership[member] += 1;
    }
    let tie_order = rng.permutation(n);
    while let Some(unplaced) = (0..n).find(|&node| membership[node] == 0) {
        let mut candidates: Vec<usize> = tie_order.iter().copied().filter(|&node| node != unplaced).collect();
        candidates.sort_by_key(|&node| membership[node]);
        let mut group = vec![unplaced];
        for node in candidates {
            if group.len() == rf {
                break;
            }
            if !spread_racks || group.iter().all(|&member| racks[member] != racks[node]) {
                group.push(node);
            }
        }
        // Completing always succeeds: there are >= rf nodes, and >= rf racks when spreading.
        assert_eq!(group.len(), rf, "a repair copyset is always completed");
        for &member in &group {
            membership[member] += 1;
        }
        groups.push(group);
    }

    let mut seen = BTreeSet::new();
    let mut result = Vec::new();
    for group in groups {
        let mut copyset: Vec<NodeId> = group.iter().map(|&index| ids[index]).collect();
        copyset.sort();
        if seen.insert(copyset.clone()) {
            result.push(copyset);
        }
    }
    debug_assert!(result.iter().all(|copyset| copyset.len() == rf));
    Ok(result)
}

/// Replica lists for `partitions` new partitions, numbered from `start`: partition `i`
/// gets the list for slot `start + i`. The first replica of each list is its preferred
/// leader.
///
/// Leaders go round-robin over the nodes in the order of their first appearance when the
/// copysets are read column by column (the first member of every copyset, then the
/// second, ...), and the `k`-th time a node leads it takes its `k`-th copyset (in list
/// order, cyclically), rotated to put it first. So in any run of consecutive slots the
/// leader counts of two nodes differ by at most one. When the copysets are disjoint and
/// cover the nodes (one permutation), this is the plain rule "slot `j` takes copyset
/// `j % len` rotated by `j / len`"; and over `nodes * P` slots from 0, a family in which
/// every node is in `P` copysets uses every copyset once per member, so replicas spread
/// evenly too.
///
/// `start` lets a topic begin at a different node (callers pass a hash of the topic id)
/// and lets CreatePartitions continue from the existing count.
///
/// Panics if `partitions > 0` and `copysets` is empty or holds an empty copyset.
pub fn assign(copysets: &[Vec<NodeId>], partitions: usize, start: usize) -> Vec<Vec<NodeId>> {
    if partitions == 0 {
        return Vec::new();
    }
    assert!(!copysets.is_empty(), "assign needs at least one copyset");
    assert!(copysets.iter().all(|copyset| !copyset.is_empty()), "copysets are not empty");

    let width = copysets.iter().map(Vec::len).max().unwrap_or(0);
    let mut leaders: Vec<NodeId> = Vec::new();
    let mut seen = BTreeSet::new();
    for column in 0..width {
        for copyset in copysets {
            if let Some(&node) = copyset.get(column) {
                if seen.insert(node) {
                    leaders.push(node);
                }
            }
        }
    }
    let mut copysets_of: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
    for (index, copyset) in copysets.iter().enumerate() {
        for &node in copyset {
            copysets_of.entry(node).or_default().push(index);
        }
    }

    let n = leaders.len() as u128;
    (0..partitions)
        .map(|i| {
            // u128: `start` may be any hash, and `start + i` must not wrap.
            let slot = start as u128 + i as u128;
            let leader = leaders[(slot % n) as usize];
            let round = slot / n;
            let own = &copysets_of[&leader];
            let copyset = &copysets[own[(round % own.len() as u128) as usize]];
            let at = copyset.iter().position(|&node| node == leader).expect("a leader is in its copyset");
            let mut replicas = copyset[at..].to_vec();
            replicas.extend_from_slice(&copyset[..at]);
            replicas
        })
        .collect()
}

/// One key per distinct rack; a node without a rack gets a key of its own.
fn rack_keys(sorted: &[&Node]) -> Vec<usize> {
    let mut named: BTreeMap<&str, usize> = BTreeMap::new();
    let mut next = 0;
    sorted
        .iter()
        .map(|node| {
            let key = match &node.rack {
                Some(rack) => *named.entry(rack.as_str()).or_insert(next),
                None => next,
            };
            if key == next {
                next += 1;
            }
            key
        })
        .collect()
}

/// Chops one permutation into groups of `rf`. With `spread_racks`, each slot takes, among
/// the nodes whose rack is not yet in the group, one from the rack with the most nodes
/// left (earliest in the permutation on ties): taking from the largest racks first makes
/// the most rack-distinct groups. The nodes left when no further group can be filled
/// are dropped, as in the paper.
fn chop(order: &[usize], racks: &[usize], rf: usize, spread_racks: bool) -> Vec<Vec<usize>> {
    let mut pool: Vec<usize> = order.to_vec();
    let mut left_in_rack: BTreeMap<usize, usize> = BTreeMap::new();
    for &node in &pool {
        *left_in_rack.entry(racks[node]).or_default() += 1;
    }
    let mut groups = Vec::new();
    // Each round removes rf >= 2 nodes from the pool or stops.
    while pool.len() >= rf {
        let mut group: Vec<usize> = Vec::with_capacity(rf);
        let mut taken: Vec<usize> = Vec::with_capacity(rf);
        while group.len() < rf {
            let mut best: Option<(usize, usize)> = None; // (position in pool, nodes left in its rack)
            for (position, &node) in pool.iter().enumerate() {
                if taken.contains(&position) {
                    continue;
                }
                let rack = racks[node];
                if spread_racks && group.iter().any(|&member| racks[member] == rack) {
                    continue;
                }
                let left = if spread_racks { left_in_rack[&rack] } else { 0 };
                if best.is_none_or(|(_, most)| left > most) {
                    best = Some((position, left));
                }
                if !spread_racks {
                    break;
                }
            }
            let Some((position, _)) = best else { break };
            taken.push(position);
            group.push(pool[position]);
        }
        if group.len() < rf {
            break;
        }
        for &member in &group {
            *left_in_rack.get_mut(&racks[member]).expect("counted") -= 1;
        }
        taken.sort_unstable();
        for &position in taken.iter().rev() {
            pool.remove(position);
        }
        groups.push(group);
    }
    groups
}

/// Steele, Lea and Flood's SplitMix64: tiny, seedable, and the same on every platform.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound > 0`); the modulo bias is negligible for cluster sizes.
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    /// A uniformly shuffled `0..n` (Fisher-Yates).
    fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, self.below(i + 1));
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn plain(n: i32) -> Vec<Node> {
        (1..=n).map(|id| Node::new(NodeId(id))).collect()
    }

    /// `n` nodes over `racks` racks, round-robin by id.
    fn racked(n: i32, racks: i32) -> Vec<Node> {
        (1..=n).map(|id| Node::in_rack(NodeId(id), format!("r{}", id % racks))).collect()
    }

    /// The structural properties every family must have.
    fn check(nodes: &[Node], rf: usize, family: &[Vec<NodeId>]) {
        let ids: BTreeSet<NodeId> = nodes.iter().map(|node| node.id).collect();
        let rack_of: BTreeMap<NodeId, Option<&str>> =
            nodes.iter().map(|node| (node.id, node.rack.as_deref())).collect();
        let racks: BTreeSet<String> =
            nodes.iter().map(|node| node.rack.clone().unwrap_or_else(|| format!("own rack of {}", node.id))).collect();
        let covered: BTreeSet<NodeId> = family.iter().flatten().copied().collect();
        assert_eq!(covered, ids, "every node is in some copyset, and only the given nodes");
        assert_eq!(family.iter().collect::<BTreeSet<_>>().len(), family.len(), "no duplicates: {family:?}");
        for copyset in family {
            assert_eq!(copyset.len(), rf, "{copyset:?}");
            assert!(copyset.windows(2).all(|pair| pair[0] < pair[1]), "distinct and sorted: {copyset:?}");
            if racks.len() >= rf {
                let spanned: BTreeSet<String> = copyset
                    .iter()
                    .map(|id| rack_of[id].map(str::to_owned).unwrap_or_else(|| format!("own rack of {id}")))
                    .collect();
                assert_eq!(spanned.len(), rf, "rack spread of {copyset:?} over {nodes:?}");
            }
        }
    }

    fn leader_counts(lists: &[Vec<NodeId>]) -> BTreeMap<NodeId, usize> {
        let mut counts = BTreeMap::new();
        for list in lists {
            *counts.entry(list[0]).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn every_node_is_covered_and_copysets_have_rf_distinct_nodes() {
        for n in 1..=13 {
            for rf in 1..=n.min(5) {
                for s in [0, 1, 2, 4, 7, 100] {
                    let nodes = plain(n as i32);
                    check(&nodes, rf, &copysets(&nodes, rf, s, 7).unwrap());
                }
            }
        }
    }

    #[test]
    fn racks_are_spread_when_there_are_enough() {
        for (n, racks, rf) in [(9, 3, 3), (12, 4, 3), (10, 3, 3), (8, 5, 4), (6, 2, 2)] {
            let nodes = racked(n, racks);
            for seed in 0..20 {
                check(&nodes, rf as usize, &copysets(&nodes, rf as usize, DEFAULT_SCATTER_WIDTH, seed).unwrap());
            }
        }
        // Lopsided: most nodes in one rack still each get copysets spanning all three.
        let mut nodes: Vec<Node> = (1..=5).map(|id| Node::in_rack(NodeId(id), "a")).collect();
        nodes.extend([Node::in_rack(NodeId(6), "b"), Node::in_rack(NodeId(7), "c"), Node::new(NodeId(8))]);
        for seed in 0..20 {
            check(&nodes, 3, &copysets(&nodes, 3, 2, seed).unwrap());
        }
    }

    #[test]
    fn too_few_racks_fall_back_to_plain_copysets() {
        let nodes = racked(6, 2);
        let family = copysets(&nodes, 3, 4, 1).unwrap();
        check(&nodes, 3, &family);
    }

    #[test]
    fn same_seed_same_copysets_whatever_the_node_order() {
        let nodes = racked(11, 4);
        let mut reversed = nodes.clone();
        reversed.reverse();
        let family = copysets(&nodes, 3, 4, 42).unwrap();
        assert_eq!(family, copysets(&reversed, 3, 4, 42).unwrap());
        assert_eq!(family, copysets(&nodes, 3, 4, 42).unwrap());
        assert_ne!(family, copysets(&nodes, 3, 4, 43).unwrap(), "another seed, another family (for these seeds)");
    }

    #[test]
    fn far_fewer_copysets_than_random_placement() {
        let nodes = plain(9);
        let random_sets = 9 * 8 * 7 / 6; // C(9, 3) = 84
        for seed in 0..10 {
            let family = copysets(&nodes, 3, 2, seed).unwrap();
            assert_eq!(family.len(), 3, "one permutation of 9 nodes: 3 disjoint copysets");
            assert!(family.len() * 20 < random_sets);
        }
    }

    #[test]
    fn each_node_has_at_most_scatter_width_peers() {
        let nodes = plain(12);
        for seed in 0..10 {
            let family = copysets(&nodes, 3, 4, seed).unwrap();
            for node in &nodes {
                let peers: BTreeSet<NodeId> = family
                    .iter()
                    .filter(|c| c.contains(&node.id))
                    .flatten()
                    .copied()
                    .filter(|&p| p != node.id)
                    .collect();
                assert!(peers.len() <= 4, "{} has peers {peers:?}", node.id);
            }
        }
    }

    #[test]
    fn edge_cases() {
        let nodes = plain(4);
        assert_eq!(copysets(&nodes, 1, 4, 0).unwrap(), (1..=4).map(|id| vec![NodeId(id)]).collect::<Vec<_>>());
        assert_eq!(copysets(&nodes, 4, 4, 0).unwrap(), vec![(1..=4).map(NodeId).collect::<Vec<_>>()]);
        assert_eq!(copysets(&nodes, 0, 4, 0), Err(PlacementError::NoReplicas));
        assert_eq!(copysets(&nodes, 5, 4, 0), Err(PlacementError::TooFewNodes { rf: 5, nodes: 4 }));
        let twice = [Node::new(NodeId(1)), Node::new(NodeId(2)), Node::new(NodeId(1))];
        assert_eq!(copysets(&twice, 2, 4, 0), Err(PlacementError::DuplicateNode(NodeId(1))));
        assert!(assign(&[], 0, 3).is_empty());
    }

    #[test]
    fn leaders_spread_within_one_across_nodes() {
        let nodes = plain(9);
        let family = copysets(&nodes, 3, 2, 5).unwrap();
        for partitions in [1, 5, 9, 10, 100, 1000] {
            for start in [0, 4, 17, usize::MAX] {
                let counts = leader_counts(&assign(&family, partitions, start));
                let most = counts.values().max().unwrap();
                let least = if counts.len() < 9 { &0 } else { counts.values().min().unwrap() };
                assert!(most - least <= 1, "{partitions} from {start}: {counts:?}");
            }
        }
    }

    #[test]
    fn disjoint_copysets_follow_the_plain_rotation_rule() {
        let family = copysets(&plain(9), 3, 2, 3).unwrap();
        let lists = assign(&family, 30, 0);
        for (j, list) in lists.iter().enumerate() {
            let mut expected = family[j % 3].clone();
            expected.rotate_left((j / 3) % 3);
            assert_eq!(list, &expected);
        }
    }

    #[test]
    fn replicas_spread_evenly_over_a_full_round() {
        let nodes = plain(12);
        let family = copysets(&nodes, 3, 4, 9).unwrap();
        let mut membership: BTreeMap<NodeId, usize> = BTreeMap::new();
        for &node in family.iter().flatten() {
            *membership.entry(node).or_insert(0) += 1;
        }
        let per_node = membership[&NodeId(1)];
        assert!(membership.values().all(|&m| m == per_node), "even family for this seed: {family:?}");
        let lists = assign(&family, 12 * per_node, 0);
        let mut replicas: BTreeMap<NodeId, usize> = BTreeMap::new();
        for &node in lists.iter().flatten() {
            *replicas.entry(node).or_insert(0) += 1;
        }
        assert!(replicas.values().all(|&r| r == 3 * per_node), "{replicas:?}");
    }

    #[test]
    fn create_partitions_continues_where_the_topic_left_off() {
        let family = copysets(&racked(10, 3), 3, 4, 11).unwrap();
        let all = assign(&family, 40, 1234);
        let first = assign(&family, 25, 1234);
        let more = assign(&family, 15, 1234 + 25);
        assert_eq!(all, [first, more].concat());
    }

    fn arb_nodes() -> impl Strategy<Value = (usize, Vec<Node>)> {
        (1usize..=5).prop_flat_map(|rf| {
            let node = proptest::option::weighted(0.7, 0u8..4);
            (Just(rf), proptest::collection::vec(node, rf..=12)).prop_map(|(rf, racks)| {
                let nodes = racks
                    .into_iter()
                    .enumerate()
                    .map(|(i, rack)| Node { id: NodeId(i as i32 * 3 + 1), rack: rack.map(|r| format!("z{r}")) })
                    .collect();
                (rf, nodes)
            })
        })
    }

    proptest! {
        #[test]
        fn structure_holds_for_any_cluster(
            (rf, nodes) in arb_nodes(),
            scatter_width in 0usize..10,
            seed in any::<u64>(),
            partitions in 0usize..60,
            start in any::<usize>(),
        ) {
            let family = copysets(&nodes, rf, scatter_width, seed).unwrap();
            check(&nodes, rf, &family);
            let mut reversed = nodes.clone();
            reversed.reverse();
            prop_assert_eq!(&family, &copysets(&reversed, rf, scatter_width, seed).unwrap());

            let lists = assign(&family, partitions, start);
            prop_assert_eq!(lists.len(), partitions);
            for list in &lists {
                let mut set = list.clone();
                set.sort();
                prop_assert!(family.contains(&set), "{:?} is a copyset rotated", list);
            }
            let counts = leader_counts(&lists);
            let most = counts.values().max().copied().unwrap_or(0);
            let least = if counts.len() < nodes.len() { 0 } else { counts.values().min().copied().unwrap_or(0) };
            prop_assert!(most - least <= 1, "leaders {:?}", counts);
        }
    }
}
