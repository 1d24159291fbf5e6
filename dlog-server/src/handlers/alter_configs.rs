//! IncrementalAlterConfigs (set, delete) and the legacy AlterConfigs (replace all) for
//! topic configs. Broker configs are static: changing them is refused with a reason.

use std::collections::BTreeMap;
use std::rc::Rc;

use dlog_core::{Error, Result};
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use dlog_protocol::kafka_protocol::messages::{
    alter_configs_response, AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use dlog_protocol::kafka_protocol::protocol::StrBytes;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{topic_admin, wire};
use crate::controller::ConfigChange;
use crate::shard::Shard;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub async fn incremental(
    shard: &Rc<Shard>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for r in request.resources {
        let name = r.resource_name.to_string();
        let result = match check_resource(r.resource_type) {
            Err(e) => Err(e),
            Ok(()) => match shard.shared.topic(&name) {
                None => Err(Error::UnknownTopicOrPartition(name.clone())),
                Some(_) => {
                    let mut change = ConfigChange::default();
                    let mut bad = None;
                    for c in &r.configs {
                        let key = c.name.to_string();
                        match (c.config_operation, &c.value) {
                            (OP_SET, Some(v)) => {
                                change.delete.retain(|k| *k != key);
                                change.set.insert(key, v.to_string());
                            }
                            (OP_SET, None) => bad = Some(Error::InvalidConfig(format!("no value to set for {key}"))),
                            (OP_DELETE, _) => {
                                change.set.remove(&key);
                                change.delete.push(key);
                            }
                            (OP_APPEND | OP_SUBTRACT, _) => {
                                bad = Some(Error::InvalidConfig(format!("{key} is not a list config")))
                            }
                            (op, _) => bad = Some(Error::InvalidConfig(format!("unknown config operation {op}"))),
                        }
                    }
                    match bad {
                        Some(e) => Err(e),
                        None => {
                            topic_admin::alter_configs(shard, &name, change, request.validate_only).await.map(|_| ())
                        }
                    }
                }
            },
        };
        responses.push(response(r.resource_type, r.resource_name, result));
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

pub async fn legacy(shard: &Rc<Shard>, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for r in request.resources {
        let name = r.resource_name.to_string();
        let result = match check_resource(r.resource_type) {
            Err(e) => Err(e),
            Ok(()) => {
                let set: BTreeMap<String, String> = r
                    .configs
                    .iter()
                    .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                    .collect();
                let change = ConfigChange { replace: true, set, delete: Vec::new() };
                topic_admin::alter_configs(shard, &name, change, request.validate_only).await.map(|_| ())
            }
        };
        let inc = response(r.resource_type, r.resource_name, result);
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(inc.error_code)
                .with_error_message(inc.error_message)
                .with_resource_type(inc.resource_type)
                .with_resource_name(inc.resource_name),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

fn check_resource(resource_type: i8) -> Result<()> {
    match resource_type {
        RESOURCE_TOPIC => Ok(()),
        RESOURCE_BROKER => Err(Error::InvalidRequest(
            "broker configs are static in DLog: set them in the config file and restart".into(),
        )),
        other => Err(Error::InvalidRequest(format!("resource type {other} is not supported"))),
    }
}

fn response(resource_type: i8, resource_name: StrBytes, result: Result<()>) -> AlterConfigsResourceResponse {
    let mut r =
        AlterConfigsResourceResponse::default().with_resource_type(resource_type).with_resource_name(resource_name);
    if let Err(e) = result {
        r = r.with_error_code(error_code(&e)).with_error_message(Some(wire(&e.to_string())));
    }
    r
}
