//! One module per Kafka API. [`dispatch`] routes a decoded request to its handler; the
//! registry in `dlog_protocol::registry` decides which APIs and versions reach here.
//!
//! A handler runs its ordered part before returning (see `conn`); what it returns is a
//! [`Reply`]: a response now, a response later (a produce waiting for its fsync), or
//! nothing (acks=0).

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_topic_partitions;
pub mod elect_leaders;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_config_resources;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod raft_voters;
pub mod sync_group;
pub mod topic_admin;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use dlog_protocol::codec::{encode_response, EncodedResponse, Request};
use dlog_protocol::kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, TopicName};
use dlog_protocol::kafka_protocol::protocol::StrBytes;

use crate::shard::Shard;

/// What a connection does for one request once its answer resolves.
pub enum Answer {
    /// Write this response.
    Frame(EncodedResponse),
    /// Nothing to send (acks=0 produce).
    Silent,
    /// The response cannot be sent (it failed to encode): close the connection, so the
    /// client retries on a new one instead of waiting out its request timeout.
    Close,
}

/// The answer a connection writes once it resolves.
pub type Pending = Pin<Box<dyn Future<Output = Answer>>>;

/// What a handler produced.
pub enum Reply {
    Now(Box<ResponseKind>),
    Later(Pin<Box<dyn Future<Output = ResponseKind>>>),
    Nothing,
}

impl Reply {
    pub fn now(body: ResponseKind) -> Reply {
        Reply::Now(Box::new(body))
    }
}

/// Runs the handler of `request`, sent by `peer`, and returns its pending encoded response.
pub async fn dispatch(shard: &Rc<Shard>, request: Request, peer: std::net::SocketAddr) -> Pending {
    let Request { header, api_key, version, body } = request;
    let correlation_id = header.correlation_id;
    metrics::counter!("dlog_requests_total", "api" => api_name(api_key)).increment(1);
    let reply = match body {
        RequestKind::ApiVersions(r) => Reply::now(ResponseKind::ApiVersions(api_versions::handle(r, version))),
        RequestKind::Metadata(r) => Reply::now(ResponseKind::Metadata(metadata::handle(shard, r, version).await)),
        RequestKind::Produce(r) => produce::handle(shard, r, version).await,
        RequestKind::Fetch(r) => Reply::now(ResponseKind::Fetch(fetch::handle(shard, r, version).await)),
        RequestKind::ListOffsets(r) => {
            Reply::now(ResponseKind::ListOffsets(list_offsets::handle(shard, r, version).await))
        }
        RequestKind::CreateTopics(r) => {
            Reply::now(ResponseKind::CreateTopics(create_topics::handle(shard, r, version).await))
        }
        RequestKind::DeleteTopics(r) => {
            Reply::now(ResponseKind::DeleteTopics(delete_topics::handle(shard, r, version).await))
        }
        RequestKind::CreatePartitions(r) => {
            Reply::now(ResponseKind::CreatePartitions(create_partitions::handle(shard, r).await))
        }
        RequestKind::DescribeConfigs(r) => {
            Reply::now(ResponseKind::DescribeConfigs(describe_configs::handle(shard, r, version)))
        }
        RequestKind::AlterConfigs(r) => Reply::now(ResponseKind::AlterConfigs(alter_configs::legacy(shard, r).await)),
        RequestKind::IncrementalAlterConfigs(r) => {
            Reply::now(ResponseKind::IncrementalAlterConfigs(alter_configs::incremental(shard, r).await))
        }
        RequestKind::AddRaftVoter(r) => Reply::now(ResponseKind::AddRaftVoter(raft_voters::add(shard, r).await)),
        RequestKind::ElectLeaders(r) => Reply::now(ResponseKind::ElectLeaders(elect_leaders::handle(shard, r).await)),
        RequestKind::RemoveRaftVoter(r) => {
            Reply::now(ResponseKind::RemoveRaftVoter(raft_voters::remove(shard, r).await))
        }
        RequestKind::DescribeCluster(r) => {
            Reply::now(ResponseKind::DescribeCluster(describe_cluster::handle(shard, r)))
        }
        RequestKind::DeleteRecords(r) => {
            Reply::now(ResponseKind::DeleteRecords(delete_records::handle(shard, r).await))
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            Reply::now(ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(shard, r).await))
        }
        RequestKind::InitProducerId(r) => {
            Reply::now(ResponseKind::InitProducerId(init_producer_id::handle(shard, r, version).await))
        }
        RequestKind::FindCoordinator(r) => {
            Reply::now(ResponseKind::FindCoordinator(find_coordinator::handle(shard, r, version).await))
        }
        RequestKind::JoinGroup(r) => {
            let client_id = header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
            // Kafka reports a member's host as "/<ip>".
            join_group::handle(shard, r, version, client_id, format!("/{}", peer.ip())).await
        }
        RequestKind::SyncGroup(r) => sync_group::handle(shard, r, version).await,
        RequestKind::Heartbeat(r) => Reply::now(ResponseKind::Heartbeat(heartbeat::handle(shard, r).await)),
        RequestKind::LeaveGroup(r) => {
            Reply::now(ResponseKind::LeaveGroup(leave_group::handle(shard, r, version).await))
        }
        RequestKind::OffsetCommit(r) => Reply::now(ResponseKind::OffsetCommit(offset_commit::handle(shard, r).await)),
        RequestKind::OffsetFetch(r) => {
            Reply::now(ResponseKind::OffsetFetch(offset_fetch::handle(shard, r, version).await))
        }
        RequestKind::ListGroups(r) => {
            Reply::now(ResponseKind::ListGroups(list_groups::handle(shard, r, version).await))
        }
        RequestKind::DescribeGroups(r) => {
            Reply::now(ResponseKind::DescribeGroups(describe_groups::handle(shard, r, version).await))
        }
        RequestKind::DeleteGroups(r) => Reply::now(ResponseKind::DeleteGroups(delete_groups::handle(shard, r).await)),
        RequestKind::OffsetDelete(r) => Reply::now(ResponseKind::OffsetDelete(offset_delete::handle(shard, r).await)),
        RequestKind::DescribeTopicPartitions(r) => {
            Reply::now(ResponseKind::DescribeTopicPartitions(describe_topic_partitions::handle(shard, r).await))
        }
        RequestKind::ListConfigResources(r) => {
            Reply::now(ResponseKind::ListConfigResources(list_config_resources::handle(shard, r, version)))
        }
        other => {
            // The codec admits only registry APIs; reaching here is a registry/dispatch mismatch.
            tracing::error!(?api_key, "no handler for a registered API");
            debug_assert!(false, "no handler for {:?}", std::mem::discriminant(&other));
            Reply::Nothing
        }
    };
    let encode = move |body: ResponseKind| match encode_response(api_key, version, correlation_id, &body) {
        Ok(bytes) => Answer::Frame(bytes),
        Err(e) => {
            tracing::error!(?api_key, version, error = %e, "cannot encode response; closing the connection");
            Answer::Close
        }
    };
    match reply {
        Reply::Now(body) => {
            let bytes = encode(*body);
            Box::pin(async move { bytes })
        }
        Reply::Later(fut) => Box::pin(async move { encode(fut.await) }),
        Reply::Nothing => Box::pin(async { Answer::Silent }),
    }
}

fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "produce",
        ApiKey::Fetch => "fetch",
        ApiKey::ListOffsets => "list_offsets",
        ApiKey::Metadata => "metadata",
        ApiKey::ApiVersions => "api_versions",
        ApiKey::CreateTopics => "create_topics",
        ApiKey::DeleteTopics => "delete_topics",
        ApiKey::DeleteRecords => "delete_records",
        ApiKey::OffsetForLeaderEpoch => "offset_for_leader_epoch",
        ApiKey::DescribeConfigs => "describe_configs",
        ApiKey::AlterConfigs => "alter_configs",
        ApiKey::CreatePartitions => "create_partitions",
        ApiKey::IncrementalAlterConfigs => "incremental_alter_configs",
        ApiKey::DescribeCluster => "describe_cluster",
        ApiKey::AddRaftVoter => "add_raft_voter",
        ApiKey::ElectLeaders => "elect_leaders",
        ApiKey::RemoveRaftVoter => "remove_raft_voter",
        ApiKey::InitProducerId => "init_producer_id",
        ApiKey::FindCoordinator => "find_coordinator",
        ApiKey::JoinGroup => "join_group",
        ApiKey::SyncGroup => "sync_group",
        ApiKey::Heartbeat => "heartbeat",
        ApiKey::LeaveGroup => "leave_group",
        ApiKey::OffsetCommit => "offset_commit",
        ApiKey::OffsetFetch => "offset_fetch",
        ApiKey::ListGroups => "list_groups",
        ApiKey::DescribeGroups => "describe_groups",
        ApiKey::DeleteGroups => "delete_groups",
        ApiKey::OffsetDelete => "offset_delete",
        ApiKey::DescribeTopicPartitions => "describe_topic_partitions",
        ApiKey::ListConfigResources => "list_config_resources",
        _ => "other",
    }
}

/// A wire string.
pub fn wire(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A wire topic name.
pub fn wire_topic(s: &str) -> TopicName {
    TopicName(wire(s))
}

/// The error message field for a result.
pub fn error_message<T>(r: &dlog_core::Result<T>) -> Option<StrBytes> {
    r.as_ref().err().map(|e| wire(&e.to_string()))
}

/// Converts a topic id to the wire's UUID.
pub fn wire_uuid(id: dlog_core::TopicId) -> uuid::Uuid {
    uuid::Uuid::from_bytes(id.0)
}

/// The name of the topic a request names by id (Fetch v13+, Produce v13+, Metadata
/// v10+), or `None` when no topic has that id.
pub fn topic_name_of(shard: &Shard, id: uuid::Uuid) -> Option<std::sync::Arc<str>> {
    shard.shared.topics.read().expect("topic registry lock").name_of(dlog_core::TopicId(*id.as_bytes()))
}

/// The topic a Produce or Fetch entry names: by id from v13 (`by_id`), by name before.
pub fn requested_topic(shard: &Shard, by_id: bool, name: &TopicName, id: uuid::Uuid) -> Option<std::sync::Arc<str>> {
    if by_id {
        topic_name_of(shard, id)
    } else {
        Some(name.0.to_string().into())
    }
}

/// A request's own `timeout_ms` as the deadline of every wait it causes (at most five
/// minutes away); none when it names none (0 or less), so the broker's defaults apply.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Option<std::time::Instant>);

impl Deadline {
    pub fn from_timeout_ms(timeout_ms: i32) -> Deadline {
        let ms = u64::try_from(timeout_ms).ok().filter(|&ms| ms > 0).map(|ms| ms.min(300_000));
        Deadline(ms.map(|ms| std::time::Instant::now() + std::time::Duration::from_millis(ms)))
    }

    /// What is left of it, if the request named one.
    pub fn left(self) -> Option<std::time::Duration> {
        self.0.map(|d| d.saturating_duration_since(std::time::Instant::now()))
    }
}
