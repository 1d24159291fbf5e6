//! Kafka's ACL vocabulary as the wire encodes it: resource types, operations, and the
//! "authorized operations" bit field that Metadata, DescribeCluster and DescribeGroups
//! answer when a client asks for it (KIP-430).
//!
//! DLog has no authorizer yet, so every supported operation is allowed, which is what
//! Kafka answers without `authorizer.class.name`. An authorizer, when it comes, narrows
//! the set before [`bit_field`] encodes it.

/// A resource type, by Kafka's code (`org.apache.kafka.common.resource.ResourceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ResourceType {
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
}

/// An operation, by Kafka's code (`org.apache.kafka.common.acl.AclOperation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum AclOperation {
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    TwoPhaseCommit = 15,
}

/// "Authorized operations were not requested", as Kafka encodes it.
pub const OPERATIONS_OMITTED: i32 = i32::MIN;

/// The operations a resource type supports, as Kafka 4.1's `AclEntry.supportedOperations`
/// lists them.
pub fn supported_operations(resource: ResourceType) -> &'static [AclOperation] {
    use AclOperation::*;
    match resource {
        ResourceType::Topic => &[Read, Write, Create, Describe, Delete, Alter, DescribeConfigs, AlterConfigs],
        ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
        ResourceType::Cluster => {
            &[Create, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, Alter, Describe]
        }
        ResourceType::TransactionalId => &[Describe, Write, TwoPhaseCommit],
    }
}

/// Kafka's encoding of a set of operations: bit `code` set for each one.
pub fn bit_field(operations: &[AclOperation]) -> i32 {
    operations.iter().fold(0, |bits, op| bits | 1 << (*op as i8))
}

/// What a response carries for `resource` when the client did (`requested`) or did not
/// ask: with no authorizer, every operation the resource type supports.
pub fn authorized_operations(resource: ResourceType, requested: bool) -> i32 {
    if requested {
        bit_field(supported_operations(resource))
    } else {
        OPERATIONS_OMITTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values Apache Kafka 4.1 without an authorizer answers (checked against it by
    /// `tests/compat/test_admin.py`).
    #[test]
    fn bit_fields_match_kafka() {
        assert_eq!(authorized_operations(ResourceType::Cluster, true), 0x1fa0);
        assert_eq!(authorized_operations(ResourceType::Topic, true), 0x0df8);
        assert_eq!(authorized_operations(ResourceType::Group, true), 0x0d48);
        assert_eq!(authorized_operations(ResourceType::Topic, false), i32::MIN);
    }
}
