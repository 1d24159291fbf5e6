//! IncrementalAlterConfigs (set, delete, append and subtract for LIST configs) and the legacy AlterConfigs (replace all) for
//! topic configs. Broker configs are static: changing them is refused with a reason.

use std::collections::BTreeMap;
use std::rc::Rc;

use dlog_core::config::ConfigType;
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
                Some(meta) => {
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
                            (op @ (OP_APPEND | OP_SUBTRACT), value) => {
                                let verb = if op == OP_APPEND { "APPEND" } else { "SUBTRACT" };
                                match dlog_core::config::key(&key) {
                                    Some(k) if k.kind == ConfigType::List => {
                                        // Against the value as this request leaves it so far, else
                                        // the topic's effective one.
                                        let current = change
                                            .set
                                            .get(&key)
                                            .cloned()
                                            .or_else(|| meta.config.get(&key))
                                            .unwrap_or_default();
                                        let items = list_op(&current, value.as_deref().unwrap_or(""), op == OP_APPEND);
                                        change.delete.retain(|k| *k != key);
                                        change.set.insert(key, items);
                                    }
                                    _ => {
                                        bad = Some(Error::InvalidConfig(format!(
                                            "Can't {verb} to key {key} because its type is not LIST."
                                        )))
                                    }
                                }
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

/// A LIST config's value with `given`'s elements appended (those not already in it)
/// or subtracted, as Kafka's IncrementalAlterConfigs does.
fn list_op(current: &str, given: &str, append: bool) -> String {
    let split = |s: &str| s.split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect::<Vec<_>>();
    let mut items = split(current);
    let given = split(given);
    if append {
        for g in given {
            if !items.contains(&g) {
                items.push(g);
            }
        }
    } else {
        items.retain(|i| !given.contains(i));
    }
    items.join(",")
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

#[cfg(test)]
mod tests {
    use super::list_op;

    #[test]
    fn lists_append_what_they_lack_and_subtract_what_they_hold() {
        assert_eq!(list_op("delete", "compact", true), "delete,compact");
        assert_eq!(list_op("delete", "delete", true), "delete");
        assert_eq!(list_op("0:1, 1:2", "1:2", false), "0:1");
        assert_eq!(list_op("", "0:1,1:1", true), "0:1,1:1");
    }
}
