//! One client connection: read frames, answer requests in order.
//!
//! Requests are *processed* in the order they arrive (the ordered phase of each handler
//! runs to completion before the next request is read), which is what Kafka guarantees
//! and what idempotent producers rely on. A handler may leave a tail that waits (a
//! produce waiting for its fsync); those tails run concurrently, and their responses are
//! written in request order. At most `CONNECTION_INFLIGHT_MAX` responses are pending;
//! beyond that the connection stops reading.
//!
//! Garbage, an unknown API, a malformed request or an oversized frame closes this
//! connection only. A connection silent for `connections.max.idle.ms` with nothing in
//! flight closes; a large frame waits for the node's request byte budget
//! (`crate::gate`) before it is read further, and buffers grow only as bytes arrive.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use dlog_core::limits;
use dlog_protocol::codec::{self, CodecError};
use dlog_protocol::frame::{declared_size, split_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::gate::{Admission, FREE_BYTES_PER_CONNECTION};
use crate::handlers::{self, Answer, Pending};
use crate::shard::Shard;

const READ_CHUNK_BYTES: usize = 64 * 1024;

pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr, admission: Admission) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Pending>(limits::CONNECTION_INFLIGHT_MAX);
    // Requests accepted and not yet answered: a connection waiting on them is not idle.
    let in_flight = Rc::new(Cell::new(0usize));
    let writer = {
        let in_flight = in_flight.clone();
        tokio::task::spawn_local(async move {
            while let Some(pending) = rx.recv().await {
                let answer = pending.await;
                in_flight.set(in_flight.get() - 1);
                match answer {
                    Answer::Frame(chunks) => {
                        if write_chunks(&mut wr, &chunks).await.is_err() {
                            return;
                        }
                    }
                    Answer::Silent => {}
                    Answer::Close => return,
                }
            }
        })
    };
    let gate = shard.shared.gate.clone();
    let limits = *gate.limits();
    let max = limits.socket_request_max_bytes;
    let mut buf = BytesMut::new();
    // The node-wide budget a large frame being received holds (see `crate::gate`).
    let mut frame_budget: Option<OwnedSemaphorePermit> = None;
    metrics::gauge!("dlog_connections").increment(1.0);
    'conn: loop {
        loop {
            let frame = match split_frame(&mut buf, max) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(%peer, error = %e, "closing connection");
                    break 'conn;
                }
            };
            let handled = handle_frame(&shard, frame, peer).await;
            // The frame is handled (a produce copied what it keeps): its budget returns.
            frame_budget = None;
            match handled {
                Ok(pending) => {
                    in_flight.set(in_flight.get() + 1);
                    if tx.send(pending).await.is_err() {
                        break 'conn;
                    }
                }
                Err(e) => {
                    tracing::info!(%peer, error = %e, "closing connection");
                    break 'conn;
                }
            }
        }
        // A frame too large for the free allowance takes its whole size from the
        // node-wide budget before more of it is read (all or nothing: no deadlock).
        if frame_budget.is_none() {
            if let Some(size) = declared_size(&buf).filter(|&s| s + 4 > FREE_BYTES_PER_CONNECTION && s <= max) {
                frame_budget = Some(gate.request_bytes(size + 4).await);
            }
        }
        // Read in chunks as bytes arrive; the buffer never grows from a declared size.
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        let read = tokio::time::timeout(limits.idle, rd.read_buf(&mut buf));
        match read.await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) if in_flight.get() == 0 => {
                tracing::info!(%peer, idle_ms = limits.idle.as_millis() as u64, "closing idle connection");
                metrics::counter!("dlog_connections_idle_closed_total").increment(1);
                break;
            }
            Err(_) => {} // waiting on its own requests (a long fetch): not idle
        }
    }
    drop(tx);
    drop(frame_budget);
    // Let already-accepted requests answer before the socket closes.
    let _ = writer.await;
    metrics::gauge!("dlog_connections").decrement(1.0);
    drop(admission);
}

async fn handle_frame(shard: &Rc<Shard>, frame: Bytes, peer: SocketAddr) -> Result<Pending, CodecError> {
    match codec::decode_request(frame) {
        Ok(request) => Ok(handlers::dispatch(shard, request, peer).await),
        Err(CodecError::UnsupportedVersion {
            api_key: dlog_protocol::kafka_protocol::messages::ApiKey::ApiVersions,
            version,
            correlation_id,
        }) => {
            // KIP-511: answer with v0 and UNSUPPORTED_VERSION so the client can downgrade.
            tracing::debug!(version, "ApiVersions version unsupported; answering v0");
            Ok(handlers::api_versions::unsupported(correlation_id))
        }
        Err(e) => Err(e),
    }
}

/// Writes every chunk, in order, with as few system calls as the socket allows.
async fn write_chunks(wr: &mut tokio::net::tcp::OwnedWriteHalf, chunks: &[Bytes]) -> std::io::Result<()> {
    if let [one] = chunks {
        return wr.write_all(one).await;
    }
    let (mut chunk, mut offset) = (0usize, 0usize);
    while chunk < chunks.len() {
        let slices: Vec<std::io::IoSlice<'_>> = std::iter::once(&chunks[chunk][offset..])
            .chain(chunks[chunk + 1..].iter().map(|c| &c[..]))
            .take(64)
            .map(std::io::IoSlice::new)
            .collect();
        let mut written = wr.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while chunk < chunks.len() && written >= chunks[chunk].len() - offset {
            written -= chunks[chunk].len() - offset;
            chunk += 1;
            offset = 0;
        }
        offset += written;
    }
    Ok(())
}
