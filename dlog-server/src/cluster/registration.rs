//! A broker's registration: the ephemeral key `/brokers/ids/<id>` that is its
//! liveness, kept alive in a session and taken over from its own previous run in one
//! write; and the data directory the cluster knows each node by
//! (`/brokers/incarnations/<id>`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dlog_consensus::{Comparison, ExpectedVersion, MetadataError, MetadataStore, PutOptions, RaftStore, SessionId};
use dlog_core::NodeId;

use crate::config::ClusterTimings;

/// Where brokers register: `/brokers/ids/<id, 10 digits>` = `host:port rack`.
const BROKERS_PREFIX: &str = "/brokers/ids/";
const BROKERS_END: &str = "/brokers/ids0";
/// The data directory each node last started with: `/brokers/incarnations/<id, 10
/// digits>` = that directory's incarnation token, recorded at its first start. A node
/// starting with another token lost the data the cluster knew it by.
const INCARNATIONS_PREFIX: &str = "/brokers/incarnations/";

/// A live broker as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: NodeId,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// The data directory's incarnation (a random token made once per directory): a
    /// registration carrying this node's own is its previous run's, which is dead
    /// (this run holds the directory's lock), so it is replaced at once.
    pub incarnation: String,
}

pub fn broker_key(id: NodeId) -> String {
    format!("{BROKERS_PREFIX}{:010}", id.0)
}

/// The value of a broker's registration key: `host:port rack incarnation`.
pub fn encode_broker(b: &BrokerInfo) -> Bytes {
    Bytes::from(format!("{}:{} {} {}", b.host, b.port, b.rack.as_deref().unwrap_or(""), b.incarnation))
}

/// The broker registered under `key` with `value`; `None` for anything else.
pub fn decode_broker(key: &str, value: &[u8]) -> Option<BrokerInfo> {
    let id = key.strip_prefix(BROKERS_PREFIX)?.parse().ok()?;
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.splitn(3, ' ');
    let addr = parts.next()?;
    let rack = parts.next().unwrap_or("");
    let incarnation = parts.next().unwrap_or("");
    let (host, port) = addr.rsplit_once(':')?;
    Some(BrokerInfo {
        id: NodeId(id),
        host: host.to_string(),
        port: port.parse().ok()?,
        rack: (!rack.is_empty()).then(|| rack.to_string()),
        incarnation: incarnation.to_string(),
    })
}

/// The live brokers in `store` as this node last applied them.
pub fn read_brokers(store: &RaftStore) -> Vec<BrokerInfo> {
    store.read_local(|kv| {
        kv.range_scan(BROKERS_PREFIX, BROKERS_END).iter().filter_map(|e| decode_broker(&e.key, &e.value)).collect()
    })
}

pub(super) fn incarnation_key(id: NodeId) -> String {
    format!("{INCARNATIONS_PREFIX}{:010}", id.0)
}

/// The incarnation the cluster recorded for node `me` when it differs from `mine`
/// (with its version): this node lost its data. Records `mine` at a node's first start.
pub(super) async fn recorded_incarnation(
    store: &RaftStore,
    me: NodeId,
    mine: &str,
) -> Result<Option<(dlog_consensus::VersionId, String)>, MetadataError> {
    let key = incarnation_key(me);
    loop {
        match store.get(&key, Comparison::Equal).await? {
            Some(e) if *e.value == *mine.as_bytes() => return Ok(None),
            Some(e) => return Ok(Some((e.stat.version_id, String::from_utf8_lossy(&e.value).into_owned()))),
            None => {
                let options = PutOptions::expect(ExpectedVersion::NotExists);
                match store.put(&key, Bytes::from(mine.to_string()), options).await {
                    Ok(_) => return Ok(None),
                    // Written meanwhile (a retried put that took effect): read it again.
                    Err(MetadataError::UnexpectedVersion { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// The registration of broker `info.id` exists: if it is this node's previous run (its
/// incarnation; this run holds the data directory, so that run is dead), moves it to
/// `session` in one write, so that the broker is never seen unregistered (which would
/// move its partitions once more), then ends the old session. Whether it registered.
async fn take_over_previous_run(store: &RaftStore, info: &BrokerInfo, session: SessionId) -> bool {
    let key = broker_key(info.id);
    let entry = store.get(&key, Comparison::Equal).await.ok().flatten();
    let old = entry.as_ref().and_then(|h| h.stat.session.map(|s| (s, h.stat.version_id)));
    let holder = entry.and_then(|h| decode_broker(&h.key, &h.value));
    if let (Some(holder), Some((old_session, version))) = (&holder, old) {
        if !info.incarnation.is_empty() && holder.incarnation == info.incarnation && old_session != session {
            let options = PutOptions { expected: ExpectedVersion::Is(version), ..PutOptions::ephemeral(session) };
            return match store.put(&key, encode_broker(info), options).await {
                Ok(_) => {
                    tracing::info!(broker = %info.id, old_session = old_session.0,
                        "took over this node's registration from its previous run");
                    let _ = store.close_session(old_session).await;
                    true
                }
                Err(e) => {
                    tracing::warn!(broker = %info.id, error = %e, "cannot take over the previous run's registration");
                    false
                }
            };
        }
    }
    tracing::warn!(broker = %info.id, holder = ?holder,
        "node id already registered by a live broker (a duplicate --node-id, or this node's previous run \
         until its session expires); waiting");
    false
}

/// Keeps this broker registered: an ephemeral key in a session kept alive; a lost
/// session registers again.
pub(super) async fn register(
    store: Arc<RaftStore>,
    info: BrokerInfo,
    registered: Arc<std::sync::Mutex<Option<SessionId>>>,
    timings: ClusterTimings,
) {
    let store_dyn: Arc<dyn MetadataStore> = store.clone();
    loop {
        let session = match store.create_session(timings.broker_session, &format!("broker-{}", info.id.0)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "cannot open the broker session yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // Never over another live registration: a second broker started with this node
        // id waits (saying so) instead of taking the id over. After a crash the
        // previous run's registration holds the key until its session expires.
        let options = PutOptions { expected: ExpectedVersion::NotExists, ..PutOptions::ephemeral(session) };
        let registered_now = match store.put(&broker_key(info.id), encode_broker(&info), options).await {
            Ok(_) => true,
            Err(MetadataError::UnexpectedVersion { .. }) => take_over_previous_run(&store, &info, session).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot register the broker; retrying");
                false
            }
        };
        if !registered_now {
            let _ = store.close_session(session).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        tracing::info!(broker = %info.id, session = session.0, "broker registered");
        *registered.lock().expect("registration lock") = Some(session);
        let lost = dlog_consensus::spawn_keep_alive(store_dyn.clone(), session, timings.broker_heartbeat).await;
        registered.lock().expect("registration lock").take();
        match lost {
            Ok(e) => tracing::warn!(error = %e, "broker session lost; registering again"),
            Err(_) => return, // runtime shutting down
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_round_trip() {
        let b = BrokerInfo {
            id: NodeId(7),
            host: "10.0.0.1".into(),
            port: 9092,
            rack: Some("az-1".into()),
            incarnation: "5f1d".into(),
        };
        assert_eq!(decode_broker(&broker_key(b.id), &encode_broker(&b)), Some(b.clone()));
        let no_rack = BrokerInfo { rack: None, ..b };
        assert_eq!(decode_broker(&broker_key(no_rack.id), &encode_broker(&no_rack)), Some(no_rack));
        assert!(broker_key(NodeId(7)).as_str() < BROKERS_END);
        assert_eq!(decode_broker("/other/1", b"h:1 "), None);
    }
}
