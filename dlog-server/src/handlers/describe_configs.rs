//! DescribeConfigs for topics (every config DLog knows, with its source) and for this
//! broker (its listener, data directory and topic defaults).

use std::rc::Rc;

use dlog_core::config::{key, TOPIC_CONFIGS};
use dlog_core::Error;
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use dlog_protocol::kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::wire;
use crate::config::BrokerTopicDefaults;
use crate::shard::Shard;
use crate::topics::TopicMeta;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Kafka's ConfigSource values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Kafka's ConfigType values for the broker entries.
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_BOOLEAN: i8 = 1;

pub fn handle(shard: &Rc<Shard>, request: DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
    let with_docs = version >= 3 && request.include_documentation;
    let mut results = Vec::with_capacity(request.resources.len());
    for r in request.resources {
        let keys: Option<Vec<String>> =
            r.configuration_keys.as_ref().map(|k| k.iter().map(|s| s.to_string()).collect());
        let name = r.resource_name.to_string();
        let outcome = match r.resource_type {
            RESOURCE_TOPIC => match shard.shared.topic(&name) {
                Some(meta) => Ok(topic_entries(&meta, &shard.shared.config.topic_default_settings, keys.as_deref())),
                None => Err(Error::UnknownTopicOrPartition(name.clone())),
            },
            RESOURCE_BROKER => {
                if name.is_empty() || name == shard.shared.config.node_id.to_string() {
                    Ok(broker_entries(shard, keys.as_deref()))
                } else {
                    Err(Error::InvalidRequest(format!("broker {name} is not this broker")))
                }
            }
            other => Err(Error::InvalidRequest(format!("resource type {other} is not supported"))),
        };
        let mut result =
            DescribeConfigsResult::default().with_resource_type(r.resource_type).with_resource_name(r.resource_name);
        match outcome {
            Ok(mut configs) => {
                for c in &mut configs {
                    if !request.include_synonyms {
                        c.synonyms.clear();
                    }
                    if with_docs {
                        c.documentation = key(&c.name).map(|k| wire(k.doc));
                    }
                }
                result = result.with_configs(configs);
            }
            Err(e) => {
                result = result.with_error_code(error_code(&e)).with_error_message(Some(wire(&e.to_string())));
            }
        }
        results.push(result);
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// Every topic config (or those in `keys`) with its value and, as Kafka's ConfigHelper
/// builds them, its synonyms, highest priority first: the topic's override, the broker
/// settings that set its default (`broker` maps a topic config to the broker name and
/// value it was set by), then Kafka's default under the first broker synonym. The
/// source is the first synonym's, else DEFAULT_CONFIG. Internal configs are listed
/// only when set.
pub fn topic_entries(
    meta: &TopicMeta,
    broker: &BrokerTopicDefaults,
    keys: Option<&[String]>,
) -> Vec<DescribeConfigsResourceResult> {
    TOPIC_CONFIGS
        .iter()
        .filter(|k| keys.is_none_or(|keys| keys.iter().any(|x| x == k.name)))
        .filter_map(|k| {
            let value = meta.config.get(k.name)?;
            let mut synonyms = Vec::new();
            if let Some(set) = meta.overrides.get(k.name) {
                synonyms.push(synonym(k.name, set, SOURCE_TOPIC));
            }
            if let Some((name, set)) = broker.get(k.name) {
                synonyms.push(synonym(name, set, SOURCE_STATIC_BROKER));
            }
            if let Some(first) = k.synonyms.first().filter(|_| !k.kafka_default.is_empty()) {
                synonyms.push(synonym(first.name, k.kafka_default, SOURCE_DEFAULT));
            }
            let source = if meta.overrides.contains_key(k.name) {
                SOURCE_TOPIC
            } else if broker.contains_key(k.name) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            Some(
                DescribeConfigsResourceResult::default()
                    .with_name(wire(k.name))
                    .with_value(Some(wire(&value)))
                    .with_read_only(false)
                    .with_config_source(source)
                    .with_is_sensitive(false)
                    .with_synonyms(synonyms)
                    .with_config_type(k.kind.id()),
            )
        })
        .collect()
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default().with_name(wire(name)).with_value(Some(wire(value))).with_source(source)
}

fn broker_entries(shard: &Rc<Shard>, keys: Option<&[String]>) -> Vec<DescribeConfigsResourceResult> {
    let c = &shard.shared.config;
    let mut entries: Vec<(String, String, i8)> = vec![
        ("node.id".into(), c.node_id.to_string(), TYPE_INT),
        ("broker.id".into(), c.node_id.to_string(), TYPE_INT),
        ("listeners".into(), format!("PLAINTEXT://{}", c.listen), TYPE_STRING),
        ("advertised.listeners".into(), format!("PLAINTEXT://{}:{}", c.advertise_host, c.advertise_port), TYPE_STRING),
        ("log.dirs".into(), c.data_dir.display().to_string(), TYPE_STRING),
        ("num.partitions".into(), c.num_partitions.to_string(), TYPE_INT),
        ("auto.create.topics.enable".into(), c.auto_create_topics.to_string(), TYPE_BOOLEAN),
        ("default.replication.factor".into(), "1".into(), TYPE_INT),
        ("socket.request.max.bytes".into(), c.connections.socket_request_max_bytes.to_string(), TYPE_INT),
        ("max.connections".into(), c.connections.max_connections.to_string(), TYPE_INT),
        ("max.connections.per.ip".into(), c.connections.max_connections_per_ip.to_string(), TYPE_INT),
        ("connections.max.idle.ms".into(), c.connections.idle.as_millis().to_string(), TYPE_LONG),
        ("queued.max.request.bytes".into(), c.connections.queued_max_request_bytes.to_string(), TYPE_LONG),
    ];
    // Each topic config's default under its first broker synonym.
    for k in TOPIC_CONFIGS {
        if let (Some(first), Some(value)) = (k.synonyms.first(), c.topic_defaults.get(k.name)) {
            entries.push((first.name.to_string(), value, k.kind.id()));
        }
    }
    entries
        .into_iter()
        .filter(|(name, _, _)| keys.is_none_or(|keys| keys.iter().any(|x| x == name)))
        .map(|(name, value, ty)| {
            DescribeConfigsResourceResult::default()
                .with_name(wire(&name))
                .with_value(Some(wire(&value)))
                .with_read_only(true)
                .with_config_source(SOURCE_STATIC_BROKER)
                .with_is_sensitive(false)
                .with_config_type(ty)
        })
        .collect()
}
