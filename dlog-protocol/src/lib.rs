//! Kafka wire protocol for DLog: framing, request decoding and response encoding on top
//! of the `kafka-protocol` crate, the registry of supported APIs and versions, and the
//! one place where DLog's errors become Kafka error codes.
//!
//! The crate does no I/O. A connection feeds received bytes to [`frame::split_frame`],
//! turns each frame into a [`codec::Request`] with [`codec::decode_request`], and writes
//! what [`codec::encode_response`] returns. [`registry::SUPPORTED_APIS`] is the single
//! list of APIs the broker answers; ApiVersions reports exactly it, and a request for
//! anything else is refused before any handler runs.
//!
//! [`control::leader_change_batch`] builds the control batch a new leader appends to
//! open its epoch.
//!
//! [`acl`] holds Kafka's resource types and operations and the "authorized operations"
//! bit field responses carry.
//!
//! Storage and consensus never see these types: the server's handlers translate.

pub mod acl;
pub mod codec;
pub mod control;
pub mod errors;
pub mod frame;
pub mod records;
pub mod registry;

pub use kafka_protocol;
