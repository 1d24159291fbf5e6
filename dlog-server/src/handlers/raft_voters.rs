//! AddRaftVoter and RemoveRaftVoter (KIP-853's APIs, which `dlog cluster add-node` and
//! `remove-node` send to any node): change the metadata group's membership. Forwarded
//! to the controller like every admin change. The new node's internal RPC address is
//! its listener named `RPC` (the first listener if none is). A single node refuses:
//! it has no group to change.

use std::rc::Rc;

use dlog_core::{Error, Result};
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::{
    AddRaftVoterRequest, AddRaftVoterResponse, RemoveRaftVoterRequest, RemoveRaftVoterResponse,
};

use super::wire;
use crate::controller::ControllerRequest;
use crate::shard::Shard;

/// The listener name carrying a node's internal RPC address.
pub const RPC_LISTENER: &str = "RPC";

fn change<'a>(shard: &'a Shard, cluster_id: Option<&str>) -> Result<&'a crate::cluster::Cluster> {
    let cluster = shard.shared.cluster.as_deref().ok_or_else(|| {
        Error::InvalidRequest("this broker runs alone (no --cluster-nodes): there is no group to change".into())
    })?;
    match cluster_id {
        Some(id) if !id.is_empty() && id != shard.shared.cluster_id => Err(Error::InvalidRequest(format!(
            "cluster id {id:?} is not this cluster's ({:?})",
            shard.shared.cluster_id
        ))),
        _ => Ok(cluster),
    }
}

pub async fn add(shard: &Rc<Shard>, request: AddRaftVoterRequest) -> AddRaftVoterResponse {
    let result = async {
        let cluster = change(shard, request.cluster_id.as_deref())?;
        let listener = request
            .listeners
            .iter()
            .find(|l| l.name.as_str() == RPC_LISTENER)
            .or(request.listeners.first())
            .ok_or_else(|| Error::InvalidRequest("no listener gives the new node's RPC address".into()))?;
        let rpc = format!("{}:{}", listener.host.as_str(), listener.port);
        cluster
            .forward(
                ControllerRequest::AddNode { id: request.voter_id, rpc },
                super::Deadline::from_timeout_ms(request.timeout_ms).left(),
            )
            .await
    }
    .await;
    let response = AddRaftVoterResponse::default();
    match result {
        Ok(()) => response,
        Err(e) => response.with_error_code(error_code(&e)).with_error_message(Some(wire(&e.to_string()))),
    }
}

pub async fn remove(shard: &Rc<Shard>, request: RemoveRaftVoterRequest) -> RemoveRaftVoterResponse {
    let result = async {
        let cluster = change(shard, request.cluster_id.as_deref())?;
        cluster.forward(ControllerRequest::RemoveNode { id: request.voter_id }, None).await
    }
    .await;
    let response = RemoveRaftVoterResponse::default();
    match result {
        Ok(()) => response,
        Err(e) => response.with_error_code(error_code(&e)).with_error_message(Some(wire(&e.to_string()))),
    }
}
