//! InitProducerId: a producer id and epoch for an idempotent producer.
//!
//! Ids come from the node's durable allocator ([`crate::producer_ids`]), epoch 0. A
//! v3+ request naming the id and epoch it already has (KIP-360, after a sequence
//! error) gets the same id with the next epoch, whose batches start again at sequence
//! 0; when the epoch would be exhausted, or the id was never ours, it gets a new id.
//! (Kafka itself answers every non-transactional request with a new id; both answers
//! are valid to clients.)
//!
//! Transactions are not supported: a transactional id is refused with
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53), which every client reports at once as a
//! fatal error naming the transactional id. UNSUPPORTED_VERSION (35) would suggest a
//! failed version negotiation, and some clients retry or downgrade on it.

use std::rc::Rc;

use dlog_core::{Error, Result};
use dlog_protocol::errors::error_code;
use dlog_protocol::kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: InitProducerIdRequest, version: i16) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    match init(shard, &request, version).await {
        Ok((id, epoch)) => {
            tracing::debug!(producer_id = id, epoch, "granted producer id");
            response.with_producer_id(ProducerId(id)).with_producer_epoch(epoch)
        }
        Err(e) => {
            tracing::info!(error = %e, "InitProducerId refused");
            response.with_error_code(error_code(&e)).with_producer_id(ProducerId(-1)).with_producer_epoch(-1)
        }
    }
}

async fn init(shard: &Rc<Shard>, request: &InitProducerIdRequest, version: i16) -> Result<(i64, i16)> {
    if let Some(id) = &request.transactional_id {
        return Err(Error::TransactionsNotSupported(format!("transactional id {:?}", id.0.as_str())));
    }
    let shared = shard.shared.clone();
    let (id, epoch) = (request.producer_id.0, request.producer_epoch);
    let bump = version >= 3 && id >= 0 && epoch >= 0;
    // A new block's fsync must not stall the shard's other connections.
    tokio::task::spawn_blocking(move || {
        let mut ids =
            shared.producer_ids.lock().map_err(|_| Error::Storage("producer id allocator poisoned".into()))?;
        // Kafka counts an epoch of i16::MAX - 1 or more as exhausted.
        if bump && epoch < i16::MAX - 1 && ids.was_issued(id) {
            return Ok((id, epoch + 1));
        }
        Ok((ids.allocate()?, 0))
    })
    .await
    .map_err(|e| Error::Storage(format!("producer id allocation: {e}")))?
}
