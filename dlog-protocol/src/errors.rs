//! The one place where DLog's errors become Kafka error codes.

pub use kafka_protocol::error::ResponseError;

use dlog_core::Error;

/// The Kafka error for a DLog error. Every variant of [`dlog_core::Error`] is mapped
/// here and nowhere else.
pub fn response_error(e: &Error) -> ResponseError {
    match e {
        Error::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        Error::InvalidTopic { .. } => ResponseError::InvalidTopicException,
        Error::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        Error::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        Error::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        Error::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        Error::InvalidConfig(_) => ResponseError::InvalidConfig,
        Error::CorruptMessage(_) => ResponseError::CorruptMessage,
        Error::InvalidRecord(_) => ResponseError::InvalidRecord,
        Error::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        Error::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        Error::InvalidRequest(_) => ResponseError::InvalidRequest,
        Error::InvalidTimestamp(_) => ResponseError::InvalidTimestamp,
        Error::Storage(_) => ResponseError::KafkaStorageError,
        Error::NotLeader(_) => ResponseError::NotLeaderOrFollower,
        Error::LeaderNotAvailable(_) => ResponseError::LeaderNotAvailable,
        Error::NotCoordinator(_) => ResponseError::NotCoordinator,
        Error::NotController(_) => ResponseError::NotController,
        Error::Timeout(_) => ResponseError::RequestTimedOut,
        Error::NotEnoughReplicas(_) => ResponseError::NotEnoughReplicas,
        Error::ElectionNotNeeded(_) => ResponseError::ElectionNotNeeded,
        Error::PreferredLeaderNotAvailable(_) => ResponseError::PreferredLeaderNotAvailable,
        Error::UnsupportedVersion(_) => ResponseError::UnsupportedVersion,
        Error::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
        Error::UnknownLeaderEpoch { .. } => ResponseError::UnknownLeaderEpoch,
        Error::UnknownTopicId(_) => ResponseError::UnknownTopicId,
        Error::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
        Error::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
        // Every client treats 53 as fatal for a transactional producer, with a clear
        // exception; UNSUPPORTED_VERSION (35) would read as a failed version negotiation.
        Error::TransactionsNotSupported(_) => ResponseError::TransactionalIdAuthorizationFailed,
        Error::ShuttingDown => ResponseError::NotLeaderOrFollower,
        Error::CoordinatorNotAvailable(_) => ResponseError::CoordinatorNotAvailable,
        Error::InvalidGroupId(_) => ResponseError::InvalidGroupId,
        Error::UnknownMemberId(_) => ResponseError::UnknownMemberId,
        Error::IllegalGeneration { .. } => ResponseError::IllegalGeneration,
        Error::InconsistentGroupProtocol(_) => ResponseError::InconsistentGroupProtocol,
        Error::InvalidSessionTimeout(_) => ResponseError::InvalidSessionTimeout,
        Error::RebalanceInProgress => ResponseError::RebalanceInProgress,
        Error::MemberIdRequired => ResponseError::MemberIdRequired,
        Error::FencedInstanceId(_) => ResponseError::FencedInstanceId,
        Error::NonEmptyGroup(_) => ResponseError::NonEmptyGroup,
        Error::GroupIdNotFound(_) => ResponseError::GroupIdNotFound,
        Error::GroupSubscribedToTopic(_) => ResponseError::GroupSubscribedToTopic,
        Error::GroupMaxSizeReached(_) => ResponseError::GroupMaxSizeReached,
        Error::OffsetMetadataTooLarge(_) => ResponseError::OffsetMetadataTooLarge,
    }
}

/// The Kafka error code for a DLog error.
pub fn error_code(e: &Error) -> i16 {
    response_error(e).code()
}

/// The code for a result: 0 on success.
pub fn result_code<T>(r: &Result<T, Error>) -> i16 {
    match r {
        Ok(_) => 0,
        Err(e) => error_code(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_kafka_protocol_guide() {
        assert_eq!(error_code(&Error::UnknownTopicOrPartition("t".into())), 3);
        assert_eq!(error_code(&Error::CorruptMessage("crc".into())), 2);
        assert_eq!(error_code(&Error::RecordTooLarge { size: 2, max: 1 }), 10);
        assert_eq!(error_code(&Error::OffsetOutOfRange { offset: 9, start: 0, end: 1 }), 1);
        assert_eq!(error_code(&Error::TopicAlreadyExists("t".into())), 36);
        assert_eq!(error_code(&Error::InvalidTopic { name: "a/b".into(), reason: "x".into() }), 17);
        assert_eq!(error_code(&Error::InvalidPartitions("0".into())), 37);
        assert_eq!(error_code(&Error::UnsupportedVersion("v".into())), 35);
        assert_eq!(error_code(&Error::InvalidConfig("k".into())), 40);
        assert_eq!(error_code(&Error::FencedLeaderEpoch { client: 0, current: 1 }), 74);
        assert_eq!(error_code(&Error::UnknownLeaderEpoch { client: 2, current: 1 }), 75);
        assert_eq!(error_code(&Error::UnknownTopicId("x".into())), 100);
        assert_eq!(error_code(&Error::InvalidRecord("two batches".into())), 87);
        assert_eq!(error_code(&Error::OutOfOrderSequence("gap".into())), 45);
        assert_eq!(error_code(&Error::InvalidProducerEpoch("old".into())), 47);
        assert_eq!(error_code(&Error::TransactionsNotSupported("txn".into())), 53);
        assert_eq!(error_code(&Error::CoordinatorNotAvailable("txn".into())), 15);
        assert_eq!(error_code(&Error::IllegalGeneration { client: 1, current: 2 }), 22);
        assert_eq!(error_code(&Error::InconsistentGroupProtocol("p".into())), 23);
        assert_eq!(error_code(&Error::InvalidGroupId("".into())), 24);
        assert_eq!(error_code(&Error::UnknownMemberId("m".into())), 25);
        assert_eq!(error_code(&Error::InvalidSessionTimeout("1".into())), 26);
        assert_eq!(error_code(&Error::RebalanceInProgress), 27);
        assert_eq!(error_code(&Error::MemberIdRequired), 79);
        assert_eq!(error_code(&Error::FencedInstanceId("i".into())), 82);
        assert_eq!(error_code(&Error::NonEmptyGroup("g".into())), 68);
        assert_eq!(error_code(&Error::GroupIdNotFound("g".into())), 69);
        assert_eq!(error_code(&Error::GroupMaxSizeReached("g".into())), 81);
        assert_eq!(error_code(&Error::OffsetMetadataTooLarge("m".into())), 12);
        assert_eq!(error_code(&Error::GroupSubscribedToTopic("t".into())), 86);
    }
}
