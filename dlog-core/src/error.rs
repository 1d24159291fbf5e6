//! The data-plane error type. Each variant maps to exactly one Kafka error code in
//! `dlog_protocol::errors`; keep the two in step.

/// Errors of the data plane, in DLog's terms.
/// Serializable so that the controller's refusals reach the node that forwarded an
/// admin request unchanged.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Error {
    #[error("unknown topic or partition: {0}")]
    UnknownTopicOrPartition(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic { name: String, reason: String },
    #[error("topic {0:?} already exists")]
    TopicAlreadyExists(String),
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("corrupt record batch: {0}")]
    CorruptMessage(String),
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    RecordTooLarge { size: usize, max: usize },
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("not the leader of {0}")]
    NotLeader(String),
    /// The partition has no live leader (its only replica's broker is gone).
    #[error("no leader available for {0}")]
    LeaderNotAvailable(String),
    /// This broker does not coordinate the group (another broker leads its
    /// `__consumer_offsets` partition).
    #[error("not the coordinator of {0}")]
    NotCoordinator(String),
    /// The node handling an admin request is not (or no longer) the controller.
    #[error("not the controller: {0}")]
    NotController(String),
    /// Fewer replicas than the write or read quorum can be reached: the write is
    /// refused rather than risk losing it.
    #[error("not enough replicas: {0}")]
    NotEnoughReplicas(String),
    /// The preferred replica already leads the partition.
    #[error("election not needed for {0}")]
    ElectionNotNeeded(String),
    /// The preferred replica's broker is not live.
    #[error("preferred leader not available for {0}")]
    PreferredLeaderNotAvailable(String),
    #[error("request timed out: {0}")]
    Timeout(String),
    #[error("unsupported version: {0}")]
    UnsupportedVersion(String),
    #[error("leader epoch {client} is older than the partition's {current}")]
    FencedLeaderEpoch { client: i32, current: i32 },
    #[error("leader epoch {client} is newer than the partition's {current}")]
    UnknownLeaderEpoch { client: i32, current: i32 },
    #[error("unknown topic id {0}")]
    UnknownTopicId(String),
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    #[error("out of order sequence number: {0}")]
    OutOfOrderSequence(String),
    #[error("transactions are not supported: {0}")]
    TransactionsNotSupported(String),
    #[error("broker is shutting down")]
    ShuttingDown,
    #[error("coordinator not available: {0}")]
    CoordinatorNotAvailable(String),
    #[error("invalid group id: {0}")]
    InvalidGroupId(String),
    #[error("unknown member id: {0}")]
    UnknownMemberId(String),
    #[error("illegal generation {client}, the group is at {current}")]
    IllegalGeneration { client: i32, current: i32 },
    #[error("inconsistent group protocol: {0}")]
    InconsistentGroupProtocol(String),
    #[error("invalid session timeout: {0}")]
    InvalidSessionTimeout(String),
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    /// KIP-394: a first join must come back with the member id it was given.
    #[error("rejoin with the member id the coordinator gave")]
    MemberIdRequired,
    #[error("fenced static member: {0}")]
    FencedInstanceId(String),
    #[error("the group is not empty: {0}")]
    NonEmptyGroup(String),
    #[error("group {0:?} does not exist")]
    GroupIdNotFound(String),
    #[error("the group is subscribed to the topic: {0}")]
    GroupSubscribedToTopic(String),
    #[error("the group is full: {0}")]
    GroupMaxSizeReached(String),
    #[error("offset metadata too large: {0}")]
    OffsetMetadataTooLarge(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
