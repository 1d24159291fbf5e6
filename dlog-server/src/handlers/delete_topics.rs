//! DeleteTopics: by name (all versions) or by topic id (v6).

use std::rc::Rc;

use dlog_core::{Error, TopicId};
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use dlog_protocol::kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use super::{topic_admin, wire, wire_topic, wire_uuid};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let deadline = super::Deadline::from_timeout_ms(request.timeout_ms);
    // (name if known, id as sent)
    let wanted: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        request.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)).collect()
    } else {
        request.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let name = name.or_else(|| {
            shard
                .shared
                .topics
                .read()
                .expect("topic registry lock")
                .name_of(TopicId(*id.as_bytes()))
                .map(|n| n.to_string())
        });
        let result = match &name {
            Some(n) => topic_admin::delete(shard, n, deadline.left()).await,
            None => Err(Error::UnknownTopicId(id.to_string())),
        };
        let mut r = DeletableTopicResult::default().with_name(name.as_deref().map(wire_topic));
        match result {
            Ok(meta) => r = r.with_topic_id(wire_uuid(meta.id)),
            Err(e) => {
                r = r.with_topic_id(id).with_error_code(error_code(&e)).with_error_message(Some(wire(&e.to_string())))
            }
        }
        responses.push(r);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
