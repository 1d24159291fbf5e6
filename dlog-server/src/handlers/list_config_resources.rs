//! ListConfigResources (KIP-1142; v0 was ListClientMetricsResources): the resources of
//! each asked type that have configs, in Kafka 4.1's order (groups, client metrics,
//! brokers, topics). No types asked means every supported one; an unsupported type
//! fails the whole request with UNSUPPORTED_VERSION, as Kafka answers.
//!
//! DLog lists every topic and every live broker. It has no group configs and no client
//! metrics subscriptions yet, so those types are supported and list nothing; broker
//! loggers have no configs in DLog, so that type is not supported.

use std::rc::Rc;

use dlog_protocol::errors::ResponseError;
use dlog_protocol::kafka_protocol::messages::list_config_resources_response::ConfigResource;
use dlog_protocol::kafka_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};

use super::metadata::{all_topics, live_brokers};
use super::wire;
use crate::shard::Shard;

/// Config resource types, by Kafka's codes (`ConfigResource.Type`).
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const CLIENT_METRICS: i8 = 16;
const GROUP: i8 = 32;

pub fn handle(shard: &Rc<Shard>, request: ListConfigResourcesRequest, version: i16) -> ListConfigResourcesResponse {
    let supported: &[i8] = if version == 0 { &[CLIENT_METRICS] } else { &[TOPIC, BROKER, CLIENT_METRICS, GROUP] };
    let asked = if request.resource_types.is_empty() { supported.to_vec() } else { request.resource_types };
    if asked.iter().any(|t| !supported.contains(t)) {
        return ListConfigResourcesResponse::default().with_error_code(ResponseError::UnsupportedVersion.code());
    }
    let mut resources = Vec::new();
    if asked.contains(&BROKER) {
        resources.extend(live_brokers(shard).into_iter().map(|b| (b.0.to_string(), BROKER)));
    }
    if asked.contains(&TOPIC) {
        resources.extend(all_topics(shard).into_iter().map(|t| (t, TOPIC)));
    }
    let resources = resources
        .into_iter()
        .map(|(name, kind)| ConfigResource::default().with_resource_name(wire(&name)).with_resource_type(kind))
        .collect();
    ListConfigResourcesResponse::default().with_config_resources(resources)
}
