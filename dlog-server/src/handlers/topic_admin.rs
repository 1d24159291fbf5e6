//! Topic administration shared by CreateTopics, Metadata and Produce (auto-creation),
//! DeleteTopics, CreatePartitions and the config APIs. A single node changes its
//! registry, then tells the owning shards. A cluster member forwards the change to the
//! controller and answers once its own image shows it (its reconciler has opened,
//! deleted or reconfigured the local partitions by then).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use dlog_core::{Error, Result, ShardId};

use crate::controller::{ConfigChange, ControllerRequest};
use crate::shard::Shard;
use crate::topics::TopicMeta;

/// Forwards `request` to the controller and returns topic `name` as this node's image
/// shows it afterwards.
async fn forward(
    shard: &Rc<Shard>,
    name: &str,
    request: ControllerRequest,
    within: Option<Duration>,
) -> Option<Result<TopicMeta>> {
    let cluster = shard.shared.cluster.as_ref()?;
    Some(match cluster.forward(request, within).await {
        Ok(()) => shard.shared.topic(name).ok_or_else(|| Error::UnknownTopicOrPartition(name.to_string())),
        Err(e @ Error::TopicAlreadyExists(_)) => {
            // Created elsewhere, perhaps not yet in this node's image: the caller (an
            // auto-create racing another) looks it up next.
            cluster.catch_up(std::time::Duration::from_secs(5)).await;
            Err(e)
        }
        Err(e) => Err(e),
    })
}

/// Creates a topic and opens its partitions on their shards.
pub async fn create(
    shard: &Rc<Shard>,
    name: &str,
    partitions: i32,
    overrides: BTreeMap<String, String>,
) -> Result<TopicMeta> {
    create_assigned(shard, name, partitions, overrides, None, None, None).await
}

/// Creates a topic with the replicas the client chose (`assignment`, one list per
/// partition), or placed by the controller, waiting for the controller at most `within`
/// (the request's timeout; the broker's default when `None`).
pub async fn create_assigned(
    shard: &Rc<Shard>,
    name: &str,
    partitions: i32,
    overrides: BTreeMap<String, String>,
    assignment: Option<Vec<Vec<i32>>>,
    replication_factor: Option<i32>,
    within: Option<Duration>,
) -> Result<TopicMeta> {
    let request = ControllerRequest::CreateTopic {
        name: name.to_string(),
        id: dlog_core::TopicId(*uuid::Uuid::new_v4().as_bytes()).to_hex(),
        partitions,
        configs: overrides.clone(),
        assignment,
        replication_factor,
    };
    if let Some(done) = forward(shard, name, request, within).await {
        return done;
    }
    let meta = shard.shared.topics.write().expect("topic registry lock").create(name, partitions, overrides)?;
    tracing::info!(topic = name, partitions, "created topic");
    open_everywhere(shard, &meta).await?;
    Ok(meta)
}

/// Returns the topic, auto-creating it with the broker defaults when allowed.
pub async fn get_or_auto_create(shard: &Rc<Shard>, name: &str, allow: bool) -> Result<TopicMeta> {
    if let Some(meta) = shard.shared.topic(name) {
        return Ok(meta);
    }
    if !(allow && shard.shared.config.auto_create_topics) {
        return Err(Error::UnknownTopicOrPartition(name.to_string()));
    }
    match create(shard, name, shard.shared.config.num_partitions, BTreeMap::new()).await {
        // Another connection created it between our look-up and our create.
        Err(Error::TopicAlreadyExists(_)) => {
            shard.shared.topic(name).ok_or_else(|| Error::UnknownTopicOrPartition(name.to_string()))
        }
        other => other,
    }
}

/// Grows a topic and opens the new partitions.
pub async fn grow(
    shard: &Rc<Shard>,
    name: &str,
    partitions: i32,
    assignment: Option<Vec<Vec<i32>>>,
    validate_only: bool,
    within: Option<Duration>,
) -> Result<TopicMeta> {
    if !validate_only {
        let request = ControllerRequest::CreatePartitions {
            name: name.to_string(),
            count: partitions,
            assignment,
            retried: false,
        };
        if let Some(done) = forward(shard, name, request, within).await {
            return done;
        }
    }
    let meta =
        shard.shared.topics.write().expect("topic registry lock").set_partitions(name, partitions, validate_only)?;
    if !validate_only {
        open_everywhere(shard, &meta).await?;
    }
    Ok(meta)
}

/// Deletes a topic: registry first (so no new request finds it), then the logs.
pub async fn delete(shard: &Rc<Shard>, name: &str, within: Option<Duration>) -> Result<TopicMeta> {
    if let Some(cluster) = &shard.shared.cluster {
        if shard.shared.topic(name).is_none() {
            // Perhaps created through another node a moment ago.
            cluster.catch_up(std::time::Duration::from_secs(5)).await;
        }
        let meta = shard.shared.topic(name).ok_or_else(|| Error::UnknownTopicOrPartition(name.to_string()))?;
        cluster.forward(ControllerRequest::DeleteTopic { name: name.to_string(), retried: false }, within).await?;
        return Ok(meta);
    }
    let meta = shard.shared.topics.write().expect("topic registry lock").delete(name)?;
    for i in 0..shard.shared.senders.len() {
        let topic = meta.name.clone();
        shard.run_on(ShardId(i), move |s| async move { s.delete_topic(&topic) }).await??;
    }
    tracing::info!(topic = name, "deleted topic");
    Ok(meta)
}

/// Changes a topic's config overrides and applies them to its open partitions.
pub async fn alter_configs(
    shard: &Rc<Shard>,
    name: &str,
    change: ConfigChange,
    validate_only: bool,
) -> Result<TopicMeta> {
    let current = shard.shared.topic(name).ok_or_else(|| Error::UnknownTopicOrPartition(name.to_string()))?;
    let overrides = change.apply(&current.overrides);
    if !validate_only {
        let request = ControllerRequest::AlterConfigs { name: name.to_string(), change };
        if let Some(done) = forward(shard, name, request, None).await {
            return done;
        }
    }
    let meta =
        shard.shared.topics.write().expect("topic registry lock").set_overrides(name, overrides, validate_only)?;
    if !validate_only {
        for i in 0..shard.shared.senders.len() {
            let m = meta.clone();
            shard.run_on(ShardId(i), move |s| async move { s.reconfigure_topic(&m) }).await?;
        }
    }
    Ok(meta)
}

async fn open_everywhere(shard: &Rc<Shard>, meta: &TopicMeta) -> Result<()> {
    for i in 0..shard.shared.senders.len() {
        let m = meta.clone();
        shard.run_on(ShardId(i), move |s| async move { s.open_topic(&m) }).await??;
    }
    Ok(())
}
