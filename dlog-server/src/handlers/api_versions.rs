//! ApiVersions: the versions of every API this broker answers, from the registry.

use dlog_protocol::codec::encode_response;
use dlog_protocol::errors::ResponseError;
use dlog_protocol::kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, ResponseKind};
use dlog_protocol::registry;

use super::{Answer, Pending};

pub fn handle(_request: ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(registry::api_versions())
        .with_finalized_features_epoch(-1)
}

/// The answer to an ApiVersions request of a version newer than ours: version 0 with
/// UNSUPPORTED_VERSION and our ranges, so the client retries with one we support.
pub fn unsupported(correlation_id: i32) -> Pending {
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(registry::api_versions());
    let answer = match encode_response(ApiKey::ApiVersions, 0, correlation_id, &ResponseKind::ApiVersions(body)) {
        Ok(bytes) => Answer::Frame(bytes),
        Err(_) => Answer::Close,
    };
    Box::pin(async move { answer })
}
