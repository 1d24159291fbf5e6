//! The registry of Kafka APIs DLog answers, with the version range of each. ApiVersions
//! reports this list; the codec refuses any API or version outside it.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiKey;

/// One supported API and the versions DLog implements.
#[derive(Debug, Clone, Copy)]
pub struct SupportedApi {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
}

const fn api(key: ApiKey, min_version: i16, max_version: i16) -> SupportedApi {
    SupportedApi { key, min_version, max_version }
}

/// Every API the broker answers. Ranges start where the `kafka-protocol` crate starts
/// and end at Kafka 4.1's newest, unless a comment says why not.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    // v13 names topics by id (KIP-516).
    api(ApiKey::Produce, 3, 13),
    // Fetch v13+ names topics by id only; supported, topic ids are stable per topic.
    api(ApiKey::Fetch, 4, 17),
    // v10 adds a timeout for offsets held in remote storage (KIP-1075); DLog answers
    // from local segments and has nothing to wait for.
    api(ApiKey::ListOffsets, 1, 10),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DescribeCluster, 0, 1),
    // KIP-853's membership changes, as `dlog cluster add-node/remove-node` send them.
    api(ApiKey::AddRaftVoter, 0, 0),
    api(ApiKey::RemoveRaftVoter, 0, 0),
    // Preferred leader election (`dlog cluster rebalance-leaders`).
    api(ApiKey::ElectLeaders, 0, 2),
    // Non-transactional producers only. The crate decodes requests up to v5 (v6 is
    // two-phase commit, KIP-939).
    api(ApiKey::InitProducerId, 0, 5),
    // The classic group protocol. Transaction coordinators (key type 1) are refused.
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    // v10 names topics by id; the crate ends at 9.
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DescribeGroups, 0, 6),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
    // Metadata paged by partitions (KIP-966), as Kafka 4 admin clients describe topics.
    api(ApiKey::DescribeTopicPartitions, 0, 0),
    // v0 was ListClientMetricsResources (KIP-714); v1 lists topics, brokers, groups too.
    api(ApiKey::ListConfigResources, 0, 1),
];

/// The supported version range of `key`, or `None` if DLog does not answer it.
pub fn supported(key: ApiKey) -> Option<SupportedApi> {
    SUPPORTED_APIS.iter().copied().find(|a| a.key == key)
}

/// True when DLog answers `key` at `version`.
pub fn is_supported(key: ApiKey, version: i16) -> bool {
    supported(key).is_some_and(|a| (a.min_version..=a.max_version).contains(&version))
}

/// The ApiVersions entries, as reported to clients.
pub fn api_versions() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min_version)
                .with_max_version(a.max_version)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_range_lies_within_the_codec() {
        for a in SUPPORTED_APIS {
            let codec = a.key.valid_versions();
            assert!(a.min_version >= codec.min && a.max_version <= codec.max, "{:?}", a.key);
            assert!(a.min_version <= a.max_version);
        }
    }

    #[test]
    fn unknown_versions_are_not_supported() {
        assert!(is_supported(ApiKey::Produce, 9));
        assert!(!is_supported(ApiKey::Produce, 2));
        assert!(!is_supported(ApiKey::JoinGroup, 10));
    }
}
