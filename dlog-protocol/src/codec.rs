//! Request decoding and response encoding.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::registry;

/// A decoded request: its header and typed body.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub version: i16,
    pub body: RequestKind,
}

/// Why a frame is not a request DLog can answer.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame too short for a request header ({0} bytes)")]
    TooShort(usize),
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// The API is known but not this version. For ApiVersions the broker still answers
    /// (with version 0 and UNSUPPORTED_VERSION, as Kafka does) so the client can retry.
    #[error("unsupported version {version} of {api_key:?}")]
    UnsupportedVersion { api_key: ApiKey, version: i16, correlation_id: i32 },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed { api_key: ApiKey, version: i16, reason: String },
}

/// Decodes one frame (size prefix already removed).
pub fn decode_request(mut frame: Bytes) -> Result<Request, CodecError> {
    if frame.len() < 8 {
        return Err(CodecError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|()| CodecError::UnknownApiKey(raw_key))?;
    if !registry::is_supported(api_key, version) {
        return Err(CodecError::UnsupportedVersion { api_key, version, correlation_id });
    }
    let malformed = |e: anyhow::Error| CodecError::Malformed { api_key, version, reason: e.to_string() };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version)).map_err(malformed)?;
    let body = RequestKind::decode(api_key, &mut frame, version).map_err(malformed)?;
    Ok(Request { header, api_key, version, body })
}

/// Record payloads at least this large are sent by reference, not copied.
const ZERO_COPY_MIN_BYTES: usize = 4096;

/// An encoded response: chunks to write in order, the first holding the size prefix.
/// Record payloads of Fetch responses are their own chunks, shared with the log read
/// that produced them rather than copied into the response.
pub type EncodedResponse = Vec<Bytes>;

/// Encodes a response with its size prefix and header, ready to write to the socket.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<EncodedResponse, String> {
    let header_version = api_key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let ResponseKind::Fetch(fetch) = body else {
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0); // size, patched below
        header.encode(&mut buf, header_version).map_err(|e| e.to_string())?;
        body.encode(&mut buf, version).map_err(|e| e.to_string())?;
        let size = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&size.to_be_bytes());
        return Ok(vec![buf.freeze()]);
    };
    let mut by_reference = Vec::new();
    for t in &fetch.responses {
        for p in &t.partitions {
            if let Some(r) = p.records.as_ref().filter(|r| r.len() >= ZERO_COPY_MIN_BYTES) {
                by_reference.push(r.clone());
            }
        }
    }
    let mut buf = RopeBuf::new(by_reference);
    buf.put_i32(0); // size, patched in finish()
    header.encode(&mut buf, header_version).map_err(|e| e.to_string())?;
    fetch.encode(&mut buf, version).map_err(|e| e.to_string())?;
    Ok(buf.finish())
}

/// A `ByteBufMut` that copies everything except registered payloads, which it keeps as
/// separate chunks. It recognises a payload by the identity of the slice the codec
/// writes (`put_slice` of the payload's own bytes).
struct RopeBuf {
    done: Vec<Bytes>,
    done_bytes: usize,
    current: BytesMut,
    by_reference: Vec<Bytes>,
}

impl RopeBuf {
    fn new(by_reference: Vec<Bytes>) -> RopeBuf {
        RopeBuf { done: Vec::new(), done_bytes: 0, current: BytesMut::with_capacity(256), by_reference }
    }

    /// The chunks, with the size prefix (the first four bytes) filled in.
    fn finish(mut self) -> Vec<Bytes> {
        let total = self.done_bytes + self.current.len();
        let size = (total - 4) as i32;
        if self.done.is_empty() {
            self.current[0..4].copy_from_slice(&size.to_be_bytes());
            return vec![self.current.freeze()];
        }
        // The prefix sits in the first chunk, already frozen: rebuild that one chunk.
        let mut first = BytesMut::from(&self.done[0][..]);
        first[0..4].copy_from_slice(&size.to_be_bytes());
        self.done[0] = first.freeze();
        if !self.current.is_empty() {
            self.done.push(self.current.freeze());
        }
        self.done
    }
}

// SAFETY: every method delegates to the inner `BytesMut`, whose contract it keeps.
unsafe impl BufMut for RopeBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which is the inner buffer's.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        let shared = self.by_reference.iter().position(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len());
        match shared {
            Some(i) => {
                let payload = self.by_reference.swap_remove(i);
                let head = self.current.split().freeze();
                self.done_bytes += head.len() + payload.len();
                self.done.push(head);
                self.done.push(payload);
            }
            None => self.current.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for RopeBuf {
    fn offset(&self) -> usize {
        self.done_bytes + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        assert!(offset >= self.done_bytes, "seek into a chunk already sent by reference");
        self.current.resize(offset - self.done_bytes, 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        assert!(r.start >= self.done_bytes, "range over a chunk already sent by reference");
        &mut self.current[r.start - self.done_bytes..r.end - self.done_bytes]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn plain(api_key: ApiKey, version: i16, correlation_id: i32, body: &ResponseKind) -> Vec<u8> {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut buf, api_key.response_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let size = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&size.to_be_bytes());
        buf.to_vec()
    }

    #[test]
    fn fetch_payloads_are_shared_and_the_bytes_match_the_codec_at_every_version() {
        let big = Bytes::from(vec![7u8; 10_000]);
        let small = Bytes::from(vec![9u8; 100]);
        let partition = |i, records: &Bytes| {
            PartitionData::default()
                .with_partition_index(i)
                .with_high_watermark(42)
                .with_last_stable_offset(42)
                .with_records(Some(records.clone()))
        };
        let body = ResponseKind::Fetch(FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![partition(0, &big), partition(1, &small), partition(2, &big)]),
        ]));
        for version in 4..=17 {
            let chunks = encode_response(ApiKey::Fetch, version, 77, &body).unwrap();
            let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(joined, plain(ApiKey::Fetch, version, 77, &body), "v{version}");
            let shared = chunks.iter().filter(|c| c.as_ptr() == big.as_ptr()).count();
            assert_eq!(shared, 2, "both large payloads by reference at v{version}");
        }
    }

    #[test]
    fn small_responses_are_one_chunk() {
        let body = ResponseKind::Fetch(FetchResponse::default());
        let chunks = encode_response(ApiKey::Fetch, 12, 1, &body).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].to_vec(), plain(ApiKey::Fetch, 12, 1, &body));
    }
}
