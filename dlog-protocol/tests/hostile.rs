//! Hostile request bodies for every API and version the broker answers: counts and
//! lengths read from the wire must never reserve more than the bytes that came with
//! them. Before kafka-protocol was patched (`vendor/kafka-protocol/DLOG-PATCH.md`), an
//! 18-byte Metadata v1 request claiming 2^31 topics aborted the process reserving 154
//! GB; here such a request must decode to an error, and so must random bodies.

use bytes::{BufMut, Bytes, BytesMut};
use dlog_protocol::codec::{decode_request, CodecError};
use dlog_protocol::registry::SUPPORTED_APIS;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;

/// A frame (size prefix removed) for `key` v`version` with a valid header and `body`.
fn frame(key: ApiKey, version: i16, body: &[u8]) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("hostile")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, key.request_header_version(version)).expect("a header encodes");
    buf.put_slice(body);
    buf.freeze()
}

/// Bodies whose every plausible count or length field is huge: int32 counts of 2^31 - 1,
/// int16 lengths of 32767, unsigned varints of 2^32 - 1 (compact counts), behind 0 to 7
/// bytes of zeros so that the huge value lands on whichever field comes first.
fn hostile_bodies() -> Vec<Vec<u8>> {
    let patterns: [&[u8]; 3] = [&[0x7f, 0xff, 0xff, 0xff], &[0xff, 0xff, 0xff, 0xff, 0x0f], &[0x7f, 0xff]];
    let mut bodies = Vec::new();
    for pattern in patterns {
        for zeros in 0..8 {
            let mut body = vec![0u8; zeros];
            for _ in 0..6 {
                body.extend_from_slice(pattern);
            }
            bodies.push(body);
        }
    }
    bodies
}

#[test]
fn huge_counts_in_any_api_and_version_are_refused_not_reserved() {
    let mut decoded = 0;
    let mut refused = 0;
    for api in SUPPORTED_APIS {
        for version in api.min_version..=api.max_version {
            for body in hostile_bodies() {
                match decode_request(frame(api.key, version, &body)) {
                    Ok(_) => decoded += 1,
                    Err(CodecError::Malformed { .. }) => refused += 1,
                    Err(e) => panic!("{:?} v{version}: unexpected {e}", api.key),
                }
            }
        }
    }
    assert!(refused > decoded, "most hostile bodies are malformed: {refused} refused, {decoded} decoded");
}

/// The request from the report, byte for byte: Metadata v1 with a topic count near 2^31.
#[test]
fn the_18_byte_metadata_request_is_malformed() {
    let mut f = BytesMut::new();
    f.put_i16(ApiKey::Metadata as i16);
    f.put_i16(1);
    f.put_i32(1);
    f.put_i16(-1); // no client id
    f.put_i32(i32::MAX - 1); // topics
    f.put_i32(0);
    assert_eq!(f.len(), 18);
    assert!(matches!(decode_request(f.freeze()), Err(CodecError::Malformed { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random bodies of every API and version decode or are refused, never abort.
    #[test]
    fn random_bodies_never_abort(api in 0..SUPPORTED_APIS.len(), v in 0i16..32, body in proptest::collection::vec(any::<u8>(), 0..96)) {
        let api = &SUPPORTED_APIS[api];
        let version = api.min_version + v % (api.max_version - api.min_version + 1);
        let _ = decode_request(frame(api.key, version, &body));
    }
}
