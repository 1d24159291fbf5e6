//! Limits that bound every queue, request and loop. Units last in names.

/// Largest Kafka request frame accepted (`socket.request.max.bytes`, Kafka's default).
pub const SOCKET_REQUEST_MAX_BYTES: usize = 100 * 1024 * 1024;

/// Requests a single connection may have in flight before the reader stops reading.
pub const CONNECTION_INFLIGHT_MAX: usize = 64;

/// Depth of each cross-shard command channel.
pub const SHARD_CHANNEL_DEPTH: usize = 1024;

/// Longest a Fetch may wait for data (`fetch.max.wait.ms` is capped to this).
pub const FETCH_MAX_WAIT_MS: u64 = 30_000;

/// Most partitions a topic may have.
pub const PARTITIONS_MAX: i32 = 100_000;

/// Longest legal topic name, as in Kafka.
pub const TOPIC_NAME_MAX_LEN: usize = 249;

/// Size of a RecordBatch v2 header, up to and including the record count.
pub const RECORD_BATCH_HEADER_BYTES: usize = 61;
