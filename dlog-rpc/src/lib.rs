//! DLog's internal RPC: how nodes talk to each other.
//!
//! Every node runs one gRPC listener (`--rpc-listen`, [`serve`]) with one unary method
//! that carries an opaque payload on a named channel: Raft messages of the metadata
//! group, requests forwarded to the metadata leader, and later partition replication.
//! This crate moves bytes and names failures; each channel's owner encodes its own
//! messages and decides what a failure means. [`Peers`] keeps one lazily connected,
//! self-reconnecting HTTP/2 channel per peer.
//!
//! Boundary: no Kafka types, no metadata or storage types: `dlog-server` glues the
//! consensus transport to this crate.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dlog_core::NodeId;
use tonic::transport::{Channel, Endpoint};

#[allow(clippy::all, missing_docs)]
mod proto {
    tonic::include_proto!("dlog.internal.v1");
}

use proto::internal_client::InternalClient;
use proto::internal_server::{Internal, InternalServer};
use proto::{CallRequest, CallResponse};

/// The largest message either side accepts (metadata snapshots travel here).
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// A call's body as tonic hands it to the server (the generated prost decoder): the
/// caller, the channel and the payload. For the fuzz targets (`dlog-fuzz`).
#[doc(hidden)]
pub fn decode_call_request(bytes: &[u8]) -> Result<(NodeId, String, Bytes), prost::DecodeError> {
    let r = <CallRequest as prost::Message>::decode(bytes)?;
    Ok((NodeId(r.from), r.channel, r.payload))
}

/// The bytes of a call's body (see [`decode_call_request`]).
#[doc(hidden)]
pub fn encode_call_request(from: NodeId, channel: &str, payload: Bytes) -> Vec<u8> {
    prost::Message::encode_to_vec(&CallRequest { from: from.0, channel: channel.to_string(), payload })
}

/// An answer's body as the client decodes it: the payload. For the fuzz targets.
#[doc(hidden)]
pub fn decode_call_response(bytes: &[u8]) -> Result<Bytes, prost::DecodeError> {
    Ok(<CallResponse as prost::Message>::decode(bytes)?.payload)
}

/// Why a call failed. `Unreachable` and `Timeout` leave it unknown whether the peer
/// acted on the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("node {0} is not a known peer")]
    UnknownPeer(NodeId),
    #[error("node {node} unreachable: {reason}")]
    Unreachable { node: NodeId, reason: String },
    #[error("node {node} did not answer within {timeout:?}")]
    Timeout { node: NodeId, timeout: Duration },
    /// The peer's handler refused the request (unknown channel, bad payload).
    #[error("node {node} refused the call: {reason}")]
    Refused { node: NodeId, reason: String },
}

/// Serves the calls arriving at this node.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Answers `payload` sent by `from` on `channel`; `Err` is a refusal the caller sees
    /// as [`RpcError::Refused`].
    async fn handle(&self, from: NodeId, channel: &str, payload: Bytes) -> Result<Bytes, String>;
}

struct Service(Arc<dyn Handler>);

#[tonic::async_trait]
impl Internal for Service {
    async fn call(&self, request: tonic::Request<CallRequest>) -> Result<tonic::Response<CallResponse>, tonic::Status> {
        let r = request.into_inner();
        match self.0.handle(NodeId(r.from), &r.channel, r.payload).await {
            Ok(payload) => Ok(tonic::Response::new(CallResponse { payload })),
            Err(reason) => Err(tonic::Status::invalid_argument(reason)),
        }
    }
}

/// Serves `handler` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handler: Arc<dyn Handler>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let service = InternalServer::new(Service(handler))
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(service)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await
}

/// Binds `addr` and serves `handler` on it in a task of the current runtime; returns
/// the bound address (useful with port 0) and a handle that stops the server when
/// dropped or [`Server::stop`]ped.
pub async fn spawn(addr: SocketAddr, handler: Arc<dyn Handler>) -> std::io::Result<Server> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        if let Err(e) = serve(listener, handler, async move {
            let _ = rx.await;
        })
        .await
        {
            tracing::error!(error = %e, "internal RPC server failed");
        }
    });
    Ok(Server { addr: local, stop: Some(tx), task })
}

/// A running internal RPC server.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Stops accepting calls and waits for the server task to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The other nodes, by id, with one channel each (connected on first use, reconnected
/// by tonic after failures).
pub struct Peers {
    me: NodeId,
    addrs: Mutex<BTreeMap<NodeId, String>>,
    connect_timeout: Duration,
    channels: Mutex<HashMap<NodeId, Channel>>,
}

impl Peers {
    /// `addrs`: every member's RPC address (HOST:PORT); this node's own entry is unused.
    pub fn new(me: NodeId, addrs: BTreeMap<NodeId, String>) -> Peers {
        Peers {
            me,
            addrs: Mutex::new(addrs),
            connect_timeout: Duration::from_millis(500),
            channels: Mutex::new(HashMap::new()),
        }
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.addrs.lock().expect("peer address lock").keys().copied().collect()
    }

    /// Replaces the members' addresses (members added or removed while running); the
    /// channel of a node whose address changed is dropped and made anew on next use.
    pub fn set_addrs(&self, addrs: BTreeMap<NodeId, String>) {
        let mut current = self.addrs.lock().expect("peer address lock");
        let mut channels = self.channels.lock().expect("peer channel lock");
        channels.retain(|node, _| current.get(node) == addrs.get(node));
        *current = addrs;
    }

    fn channel(&self, node: NodeId) -> Result<Channel, RpcError> {
        let mut channels = self.channels.lock().expect("peer channel lock");
        if let Some(c) = channels.get(&node) {
            return Ok(c.clone());
        }
        let addr =
            self.addrs.lock().expect("peer address lock").get(&node).cloned().ok_or(RpcError::UnknownPeer(node))?;
        let channel = self.connect(node, &addr)?;
        channels.insert(node, channel.clone());
        Ok(channel)
    }

    fn connect(&self, node: NodeId, addr: &str) -> Result<Channel, RpcError> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| RpcError::Unreachable { node, reason: format!("bad address {addr:?}: {e}") })?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        Ok(endpoint.connect_lazy())
    }

    /// As [`Peers::call`], to an address that is not (yet) a member's: a node about
    /// to be added, checked before anything records it. The connection is not kept.
    pub async fn call_addr(
        &self,
        node: NodeId,
        addr: &str,
        channel: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let connection = self.connect(node, addr)?;
        self.call_on(connection, node, channel, payload, timeout).await
    }

    /// Sends `payload` on `channel` to `node` and waits at most `timeout` for the answer.
    pub async fn call(
        &self,
        node: NodeId,
        channel: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let connection = self.channel(node)?;
        self.call_on(connection, node, channel, payload, timeout).await
    }

    async fn call_on(
        &self,
        connection: Channel,
        node: NodeId,
        channel: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let mut client = InternalClient::new(connection)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        let request = CallRequest { from: self.me.0, channel: channel.to_string(), payload };
        match tokio::time::timeout(timeout, client.call(request)).await {
            Err(_) => Err(RpcError::Timeout { node, timeout }),
            Ok(Ok(response)) => Ok(response.into_inner().payload),
            Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => {
                Err(RpcError::Refused { node, reason: status.message().to_string() })
            }
            Ok(Err(status)) => Err(RpcError::Unreachable { node, reason: status.to_string() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(NodeId);

    #[async_trait::async_trait]
    impl Handler for Echo {
        async fn handle(&self, from: NodeId, channel: &str, payload: Bytes) -> Result<Bytes, String> {
            match channel {
                "echo" => Ok(Bytes::from(format!("{}<-{}:{}", self.0, from, String::from_utf8_lossy(&payload)))),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(payload)
                }
                other => Err(format!("no channel {other:?}")),
            }
        }
    }

    #[tokio::test]
    async fn nodes_call_each_other_and_name_every_failure() {
        let a = spawn("127.0.0.1:0".parse().unwrap(), Arc::new(Echo(NodeId(1)))).await.unwrap();
        let b = spawn("127.0.0.1:0".parse().unwrap(), Arc::new(Echo(NodeId(2)))).await.unwrap();
        // a free port with nothing listening
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let addrs: BTreeMap<NodeId, String> =
            [(NodeId(1), a.addr.to_string()), (NodeId(2), b.addr.to_string()), (NodeId(3), dead.to_string())].into();
        let from_a = Peers::new(NodeId(1), addrs.clone());
        let t = Duration::from_secs(2);
        let answer = from_a.call(NodeId(2), "echo", Bytes::from_static(b"hi"), t).await.unwrap();
        assert_eq!(answer, Bytes::from("2<-1:hi"));
        let from_b = Peers::new(NodeId(2), addrs);
        assert_eq!(from_b.call(NodeId(1), "echo", Bytes::from_static(b"yo"), t).await.unwrap(), Bytes::from("1<-2:yo"));

        let big = Bytes::from(vec![7u8; 8 << 20]);
        let answer = from_a.call(NodeId(2), "echo", big.clone(), Duration::from_secs(10)).await.unwrap();
        assert_eq!(answer.len(), big.len() + "2<-1:".len(), "8 MiB travel both ways");

        assert!(matches!(from_a.call(NodeId(9), "echo", Bytes::new(), t).await, Err(RpcError::UnknownPeer(_))));
        assert!(matches!(from_a.call(NodeId(2), "nope", Bytes::new(), t).await, Err(RpcError::Refused { .. })));
        assert!(matches!(from_a.call(NodeId(3), "echo", Bytes::new(), t).await, Err(RpcError::Unreachable { .. })));
        let slow = from_a.call(NodeId(2), "slow", Bytes::new(), Duration::from_millis(200)).await;
        assert!(matches!(slow, Err(RpcError::Timeout { .. })), "{slow:?}");

        // a restarted peer is reached again through the same Peers
        let b_addr = b.addr;
        b.stop().await;
        assert!(from_a.call(NodeId(2), "echo", Bytes::new(), t).await.is_err());
        let b2 = spawn(b_addr, Arc::new(Echo(NodeId(2)))).await.unwrap();
        let mut answer = None;
        for _ in 0..50 {
            if let Ok(a) = from_a.call(NodeId(2), "echo", Bytes::from_static(b"again"), t).await {
                answer = Some(a);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(answer, Some(Bytes::from("2<-1:again")));

        // members change while running: a new node is reached once its address is set,
        // and a node moved to another address is reached there
        let c = spawn("127.0.0.1:0".parse().unwrap(), Arc::new(Echo(NodeId(4)))).await.unwrap();
        assert!(matches!(from_a.call(NodeId(4), "echo", Bytes::new(), t).await, Err(RpcError::UnknownPeer(_))));
        let moved: BTreeMap<NodeId, String> =
            [(NodeId(1), a.addr.to_string()), (NodeId(2), c.addr.to_string()), (NodeId(4), c.addr.to_string())].into();
        from_a.set_addrs(moved);
        assert_eq!(from_a.ids(), vec![NodeId(1), NodeId(2), NodeId(4)]);
        assert_eq!(
            from_a.call(NodeId(4), "echo", Bytes::from_static(b"new"), t).await.unwrap(),
            Bytes::from("4<-1:new")
        );
        assert_eq!(from_a.call(NodeId(2), "echo", Bytes::new(), t).await.unwrap(), Bytes::from("4<-1:"));
        c.stop().await;
        b2.stop().await;
        a.stop().await;
    }
}
