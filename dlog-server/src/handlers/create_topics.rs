//! CreateTopics: validate names, partition counts, replication factors and configs;
//! create unless `validate_only`.

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

use dlog_core::{Error, Result};
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use dlog_protocol::kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use dlog_protocol::kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{describe_configs, topic_admin, wire, wire_uuid};
use crate::shard::Shard;
use crate::topics::TopicMeta;

pub async fn handle(shard: &Rc<Shard>, request: CreateTopicsRequest, _version: i16) -> CreateTopicsResponse {
    let deadline = super::Deadline::from_timeout_ms(request.timeout_ms);
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> =
        request.topics.iter().map(|t| t.name.0.to_string()).filter(|n| !seen.insert(n.clone())).collect();
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let result = if duplicates.contains(&name) {
            Err(Error::InvalidRequest(format!("topic {name:?} appears more than once in the request")))
        } else {
            create_one(shard, &topic, request.validate_only, deadline).await
        };
        results.push(match result {
            Ok(meta) => CreatableTopicResult::default()
                .with_name(topic.name)
                .with_topic_id(if request.validate_only { uuid::Uuid::nil() } else { wire_uuid(meta.id) })
                .with_num_partitions(meta.partitions)
                .with_replication_factor(meta.replication_factor() as i16)
                .with_configs(Some(configs_of(shard, &meta))),
            Err(e) => CreatableTopicResult::default()
                .with_name(topic.name)
                .with_error_code(error_code(&e))
                .with_error_message(Some(wire(&e.to_string())))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn create_one(
    shard: &Rc<Shard>,
    topic: &CreatableTopic,
    validate_only: bool,
    deadline: super::Deadline,
) -> Result<TopicMeta> {
    let name = topic.name.0.to_string();
    let node = shard.shared.config.node_id.0;
    let partitions = if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(Error::InvalidRequest(
                "give either replica assignments or partitions and replication factor, not both".into(),
            ));
        }
        for a in topic.assignments.iter().filter(|_| shard.shared.cluster.is_none()) {
            if a.broker_ids.iter().any(|b| b.0 != node) || a.broker_ids.is_empty() {
                return Err(Error::InvalidReplicationFactor(format!(
                    "partition {} is assigned to brokers {:?}; this cluster has only broker {node}",
                    a.partition_index,
                    a.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>()
                )));
            }
        }
        topic.assignments.len() as i32
    } else if topic.num_partitions == -1 {
        shard.shared.config.num_partitions
    } else {
        topic.num_partitions
    };
    let mut overrides = BTreeMap::new();
    for c in &topic.configs {
        if let Some(v) = &c.value {
            overrides.insert(c.name.to_string(), v.to_string());
        }
    }
    // `replication.factor` is accepted as a config too (it is not one a topic keeps).
    let mut requested = (topic.replication_factor != -1).then_some(i32::from(topic.replication_factor));
    if let Some(v) = overrides.remove("replication.factor") {
        let rf = v
            .trim()
            .parse::<i32>()
            .map_err(|_| Error::InvalidConfig(format!("invalid value {v:?} for replication.factor: not an integer")))?;
        if requested.is_some_and(|r| r != rf) {
            return Err(Error::InvalidReplicationFactor(format!(
                "replication factor {} and config replication.factor={rf} disagree",
                topic.replication_factor
            )));
        }
        requested = Some(rf);
    }
    let replicas = match &shard.shared.cluster {
        None => match requested {
            None | Some(1) => 1,
            Some(rf) if rf <= 0 => {
                return Err(Error::InvalidReplicationFactor(format!("replication factor must be positive, got {rf}")))
            }
            Some(rf) => {
                return Err(Error::InvalidReplicationFactor(format!(
                    "replication factor {rf} is larger than the 1 available broker"
                )))
            }
        },
        Some(_) if !topic.assignments.is_empty() => {
            topic.assignments.iter().map(|a| a.broker_ids.len()).max().unwrap_or(1)
        }
        Some(cluster) => crate::controller::check_replication_factor(requested, cluster.brokers().len())?,
    };
    if validate_only {
        let registry = shard.shared.topics.read().expect("topic registry lock");
        let config = registry.check_create(&name, partitions, &overrides, replicas)?;
        let node = shard.shared.config.node_id;
        let assignments = (0..partitions)
            .map(|_| crate::topics::Assignment {
                replicas: vec![node; replicas],
                ..crate::topics::Assignment::local(node)
            })
            .collect();
        return Ok(TopicMeta {
            name: name.into(),
            id: dlog_core::TopicId::NONE,
            partitions,
            overrides,
            config,
            assignments,
        });
    }
    let assignment = (!topic.assignments.is_empty()).then(|| {
        let mut by_partition: Vec<_> = topic.assignments.iter().collect();
        by_partition.sort_by_key(|a| a.partition_index);
        by_partition.iter().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect()
    });
    let rf = shard.shared.cluster.as_ref().map(|_| replicas as i32);
    topic_admin::create_assigned(shard, &name, partitions, overrides, assignment, rf, deadline.left()).await
}

fn configs_of(shard: &Shard, meta: &TopicMeta) -> Vec<CreatableTopicConfigs> {
    describe_configs::topic_entries(meta, &shard.shared.config.topic_default_settings, None)
        .into_iter()
        .map(|e| {
            CreatableTopicConfigs::default()
                .with_name(e.name)
                .with_value(e.value)
                .with_read_only(e.read_only)
                .with_config_source(e.config_source)
                .with_is_sensitive(false)
        })
        .collect()
}
