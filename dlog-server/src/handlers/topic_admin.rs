//! Topic administration shared by CreateTopics, Metadata and Produce (auto-creation),
//! DeleteTopics, CreatePartitions and the config APIs: change the registry, then tell
//! the owning shards.

use std::collections::BTreeMap;
use std::rc::Rc;

use dlog_core::{Error, Result, ShardId};

use crate::shard::Shard;
use crate::topics::TopicMeta;

/// Creates a topic and opens its partitions on their shards.
pub async fn create(
    shard: &Rc<Shard>,
    name: &str,
    partitions: i32,
    overrides: BTreeMap<String, String>,
) -> Result<TopicMeta> {
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
pub async fn grow(shard: &Rc<Shard>, name: &str, partitions: i32, validate_only: bool) -> Result<TopicMeta> {
    let meta =
        shard.shared.topics.write().expect("topic registry lock").set_partitions(name, partitions, validate_only)?;
    if !validate_only {
        open_everywhere(shard, &meta).await?;
    }
    Ok(meta)
}

/// Deletes a topic: registry first (so no new request finds it), then the logs.
pub async fn delete(shard: &Rc<Shard>, name: &str) -> Result<TopicMeta> {
    let meta = shard.shared.topics.write().expect("topic registry lock").delete(name)?;
    for i in 0..shard.shared.senders.len() {
        let topic = meta.name.clone();
        shard.run_on(ShardId(i), move |s| async move { s.delete_topic(&topic) }).await??;
    }
    tracing::info!(topic = name, "deleted topic");
    Ok(meta)
}

/// Replaces a topic's config overrides and applies them to its open partitions.
pub async fn set_overrides(
    shard: &Rc<Shard>,
    name: &str,
    overrides: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<TopicMeta> {
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
