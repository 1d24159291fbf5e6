//! Request decoding and response encoding.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
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

/// Encodes a response with its size prefix and header, ready to write to the socket.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, String> {
    let header_version = api_key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // size, patched below
    header.encode(&mut buf, header_version).map_err(|e| e.to_string())?;
    body.encode(&mut buf, version).map_err(|e| e.to_string())?;
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}
