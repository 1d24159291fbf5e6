//! Changing who is in the metadata group while it runs: adding a node (as a learner
//! until it has caught up, then a voter if [`controller_voters`] makes it one) and
//! removing one. Both run on the leader (the controller forwards them there) and go
//! through openraft's joint consensus, so a quorum of the old and of the new voters
//! agrees on every step and no committed entry is lost.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dlog_core::NodeId;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};

use super::{controller_voters, node_id, raft_id, RaftStore};
use crate::store::MetadataError;

impl RaftStore {
    /// Every node of the group's membership with its address, voters and learners.
    pub fn members(&self) -> BTreeMap<NodeId, String> {
        let metrics = self.node.raft.metrics().borrow().clone();
        metrics
            .membership_config
            .membership()
            .nodes()
            .filter_map(|(id, n)| node_id(*id).map(|id| (id, n.addr.clone())))
            .collect()
    }

    /// The voters of the group's current membership.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        let metrics = self.node.raft.metrics().borrow().clone();
        metrics.membership_config.membership().voter_ids().filter_map(node_id).collect()
    }

    fn check_leader(&self) -> Result<(), MetadataError> {
        let leader = self.status().leader;
        if leader == Some(self.node.id) {
            Ok(())
        } else {
            Err(MetadataError::NotLeader { leader })
        }
    }

    /// Adds `node`, reachable at `addr`: it joins as a learner and, once it holds the
    /// log (`timeout` bounds the wait), becomes a voter if the group has room for one.
    /// Runs on the leader only (`NotLeader` elsewhere). Adding a member again is a
    /// no-op.
    pub async fn add_member(&self, node: NodeId, addr: String, timeout: Duration) -> Result<(), MetadataError> {
        self.check_leader()?;
        let mut members = self.members();
        if members.get(&node) != Some(&addr) {
            let learner = self.node.raft.add_learner(raft_id(node), BasicNode::new(addr.clone()), true);
            match tokio::time::timeout(timeout, learner).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(change_error(e)),
                Err(_) => {
                    return Err(MetadataError::Unavailable(format!(
                        "node {node} at {addr} did not catch up within {timeout:?}: is it running?"
                    )))
                }
            }
            members.insert(node, addr);
        }
        self.set_voters(members.keys().copied(), timeout).await
    }

    /// Removes `node` from the group (voter or learner). Runs on the leader only; the
    /// leader may remove itself, after which another node leads.
    pub async fn remove_member(&self, node: NodeId, timeout: Duration) -> Result<(), MetadataError> {
        self.check_leader()?;
        let members = self.members();
        if !members.contains_key(&node) {
            return Ok(());
        }
        let rest: Vec<NodeId> = members.keys().copied().filter(|&n| n != node).collect();
        if rest.is_empty() {
            return Err(MetadataError::InvalidArgument(format!("node {node} is the group's last member")));
        }
        self.set_voters(rest.iter().copied(), timeout).await?;
        let removed = BTreeSet::from([raft_id(node)]);
        let change = self.node.raft.change_membership(ChangeMembers::RemoveNodes(removed), false);
        match tokio::time::timeout(timeout, change).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(change_error(e)),
            Err(_) => Err(MetadataError::Unavailable(format!("node {node} not removed within {timeout:?}"))),
        }
    }

    /// Makes the voters those [`controller_voters`] picks among `nodes` (the others
    /// stay learners).
    async fn set_voters(&self, nodes: impl Iterator<Item = NodeId>, timeout: Duration) -> Result<(), MetadataError> {
        let (voters, _) = controller_voters(nodes, self.node.config.max_voters);
        if voters == self.voters() {
            return Ok(());
        }
        let ids: BTreeSet<u64> = voters.iter().map(|v| raft_id(*v)).collect();
        let change = self.node.raft.change_membership(ChangeMembers::ReplaceAllVoters(ids), true);
        match tokio::time::timeout(timeout, change).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(change_error(e)),
            Err(_) => Err(MetadataError::Unavailable(format!("voters not changed within {timeout:?}"))),
        }
    }
}

fn change_error(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> MetadataError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            MetadataError::NotLeader { leader: f.leader_id.and_then(node_id) }
        }
        // Another change in progress: nothing was done; retriable.
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => MetadataError::Unavailable(e.to_string()),
        RaftError::Fatal(fatal) => MetadataError::Unavailable(format!("Raft stopped: {fatal}")),
    }
}
