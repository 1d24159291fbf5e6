//! The group coordinator. [`state`] is one group's classic rebalance protocol,
//! I/O-free; [`coordinator`] holds a shard's groups and committed offsets and drives
//! the state machines from the group APIs' handlers and the shard's clock.
//!
//! A group's coordinator is the owner shard of its `__consumer_offsets` partition
//! ([`coordinator::partition_for`]); every group request runs there
//! ([`on_coordinator`]), so group state needs no locks.

pub mod coordinator;
pub mod state;

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

use dlog_core::{Error, Result, TopicPartition};

pub use coordinator::{partition_for, Coordinator, CoordinatorConfig, OFFSETS_PARTITIONS, OFFSETS_TOPIC};

use crate::handlers::topic_admin;
use crate::shard::Shard;

/// Creates `__consumer_offsets` on first use.
pub async fn ensure_offsets_topic(shard: &Rc<Shard>) -> Result<()> {
    if shard.shared.topic(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    match topic_admin::create(shard, OFFSETS_TOPIC, OFFSETS_PARTITIONS, BTreeMap::new()).await {
        Ok(_) | Err(Error::TopicAlreadyExists(_)) => Ok(()),
        Err(e) => Err(Error::CoordinatorNotAvailable(format!("cannot create {OFFSETS_TOPIC}: {e}"))),
    }
}

/// The broker leading `group`'s `__consumer_offsets` partition (the topic exists).
pub fn coordinator_of(shard: &Shard, group: &str) -> Result<dlog_core::NodeId> {
    let p = partition_for(group, OFFSETS_PARTITIONS);
    let topic = shard
        .shared
        .topic(OFFSETS_TOPIC)
        .ok_or_else(|| Error::CoordinatorNotAvailable(format!("{OFFSETS_TOPIC} is not in this node's metadata yet")))?;
    topic
        .assignment(p)
        .and_then(|a| a.leader)
        .ok_or_else(|| Error::CoordinatorNotAvailable(format!("{OFFSETS_TOPIC}-{p} has no leader")))
}

/// Runs `f` on the coordinator shard of `group`, with its offsets partition loaded.
/// NOT_COORDINATOR when another broker coordinates it.
pub async fn on_coordinator<T, F, Fut>(shard: &Rc<Shard>, group: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>> + 'static,
{
    if group.is_empty() {
        return Err(Error::InvalidGroupId("the group id is empty".into()));
    }
    ensure_offsets_topic(shard).await?;
    let leader = coordinator_of(shard, group)?;
    if leader != shard.shared.config.node_id {
        return Err(Error::NotCoordinator(format!("group {group:?} (broker {leader} coordinates it)")));
    }
    let p = partition_for(group, OFFSETS_PARTITIONS);
    let tp = TopicPartition::new(OFFSETS_TOPIC, p);
    let owner = shard.shared.owner(&tp);
    // A connection that lost the race to create the topic may get here before the
    // winner has opened its partitions: wait briefly rather than fail.
    for _ in 0..100 {
        let t = tp.clone();
        if shard.run_on(owner, move |s| async move { s.partition(&t).is_some() }).await? {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    shard
        .run_on(owner, move |s| async move {
            s.coordinator.ensure_loaded(&s, p)?;
            f(s).await
        })
        .await?
}
