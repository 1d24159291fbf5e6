//! Every topic config: one declarative row per name, with Kafka 4.1's type, default,
//! bounds and broker synonyms, and what DLog does with it ([`Support`]).
//!
//! Kafka's names, types, defaults and bounds are those of its `LogConfig` (4.1); its
//! broker synonyms are those of `ServerTopicConfigSynonyms`, highest priority first.
//! DLog adds three configs of its own (`write.quorum`, `read.quorum`, `write.caching`).

/// Kafka's `ConfigDef.Type`, with the id DescribeConfigs reports (`config_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
}

impl ConfigType {
    /// Its id in DescribeConfigs v3+.
    pub fn id(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }
}

/// Which values a config takes, beyond its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Any value of the type.
    Any,
    /// A number at least this.
    AtLeast(i64),
    /// A number within these bounds (inclusive).
    Between(i64, i64),
    /// A fraction in [0, 1].
    Fraction,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A comma-separated list, each element one of these.
    ListOf(&'static [&'static str]),
    /// gzip's levels: 1 to 9, or -1 for the codec's default.
    GzipLevel,
    /// `*` or `partition:broker,...` (the replication throttle lists).
    ThrottledReplicas,
}

/// What DLog does with a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// DLog does what Kafka does.
    Honoured,
    /// Accepted with every value Kafka accepts, with no effect in DLog, for the reason
    /// given (the effect it has in Kafka cannot arise, or DLog gets it otherwise).
    Inert(&'static str),
    /// Only these values (the defaults) are accepted until DLog has the capability named;
    /// any other is refused as not yet supported.
    NotYet { capability: &'static str, accepts: &'static [&'static str] },
}

/// A broker config that sets a topic config's default, and how its value converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synonym {
    pub name: &'static str,
    /// Multiply the broker value by this to get the topic value (hours -> ms: 3600000).
    pub scale: i64,
}

const fn same(name: &'static str) -> Synonym {
    Synonym { name, scale: 1 }
}

/// One topic config.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    pub name: &'static str,
    pub kind: ConfigType,
    /// Kafka's default, rendered as DescribeConfigs renders it. DLog's own default may
    /// differ (see `dlog_topic_defaults` in the server); the effective one is in
    /// [`crate::TopicConfig`].
    pub kafka_default: &'static str,
    pub check: Check,
    /// Broker configs that set its default, highest priority first.
    pub synonyms: &'static [Synonym],
    pub support: Support,
    /// Listed by DescribeConfigs only when set on the topic (Kafka's internal configs).
    pub internal: bool,
    /// What it does in DLog, for DescribeConfigs' documentation.
    pub doc: &'static str,
}

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_MINUTE: i64 = 60_000;
const I64_MAX: &str = "9223372036854775807";

const COMPACTION: &str = "it applies to compacted topics, and cleanup.policy=compact is not supported yet";
const TIERED: &str = "tiered storage";

/// A replication throttle list (`leader.` or `follower.replication.throttled.replicas`).
const fn throttled(name: &'static str) -> ConfigKey {
    ConfigKey {
        name,
        kind: ConfigType::List,
        kafka_default: "",
        check: Check::ThrottledReplicas,
        synonyms: &[],
        support: Support::NotYet { capability: "replication throttling", accepts: &[""] },
        internal: false,
        doc: "Replicas whose catch-up is throttled. Replication throttling is not supported yet.",
    }
}

/// Every topic config DLog accepts, sorted by name (the order DescribeConfigs lists them).
pub const TOPIC_CONFIGS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        kind: ConfigType::List,
        kafka_default: "delete",
        check: Check::ListOf(&["compact", "delete"]),
        synonyms: &[same("log.cleanup.policy")],
        support: Support::NotYet { capability: "log compaction", accepts: &["delete"] },
        internal: false,
        doc: "delete: closed segments are deleted per retention.ms and retention.bytes. compact is not supported yet.",
    },
    ConfigKey {
        name: "compression.gzip.level",
        kind: ConfigType::Int,
        kafka_default: "-1",
        check: Check::GzipLevel,
        synonyms: &[same("compression.gzip.level")],
        support: Support::Honoured,
        internal: false,
        doc: "The gzip level batches are recompressed with when compression.type is gzip: 1-9, or -1 for 6.",
    },
    ConfigKey {
        name: "compression.lz4.level",
        kind: ConfigType::Int,
        kafka_default: "9",
        check: Check::Between(1, 17),
        synonyms: &[same("compression.lz4.level")],
        support: Support::Honoured,
        internal: false,
        doc: "The lz4 level batches are recompressed with when compression.type is lz4.",
    },
    ConfigKey {
        name: "compression.type",
        kind: ConfigType::String,
        kafka_default: "producer",
        check: Check::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        synonyms: &[same("compression.type")],
        support: Support::Honoured,
        internal: false,
        doc: "producer keeps each batch as the producer compressed it; a codec (or uncompressed) makes the broker \
              recompress batches in any other codec on produce.",
    },
    ConfigKey {
        name: "compression.zstd.level",
        kind: ConfigType::Int,
        kafka_default: "3",
        check: Check::Between(-131072, 22),
        synonyms: &[same("compression.zstd.level")],
        support: Support::Honoured,
        internal: false,
        doc: "The zstd level batches are recompressed with when compression.type is zstd.",
    },
    ConfigKey {
        name: "delete.retention.ms",
        kind: ConfigType::Long,
        kafka_default: "86400000",
        check: Check::AtLeast(0),
        synonyms: &[same("log.cleaner.delete.retention.ms")],
        support: Support::Inert(COMPACTION),
        internal: false,
        doc: "How long tombstones are kept in compacted topics. No effect until compaction is supported.",
    },
    ConfigKey {
        name: "file.delete.delay.ms",
        kind: ConfigType::Long,
        kafka_default: "60000",
        check: Check::AtLeast(0),
        synonyms: &[same("log.segment.delete.delay.ms")],
        support: Support::Inert(
            "a deleted segment's file is unlinked at once; readers that hold it open keep reading it, which is \
             what Kafka's delay is for",
        ),
        internal: false,
        doc: "Accepted; DLog unlinks deleted segments at once and open readers finish reading them.",
    },
    ConfigKey {
        name: "flush.messages",
        kind: ConfigType::Long,
        kafka_default: I64_MAX,
        check: Check::AtLeast(1),
        synonyms: &[same("log.flush.interval.messages")],
        support: Support::Honoured,
        internal: false,
        doc: "fsync the log after this many records (1: every write).",
    },
    ConfigKey {
        name: "flush.ms",
        kind: ConfigType::Long,
        kafka_default: I64_MAX,
        check: Check::AtLeast(0),
        synonyms: &[same("log.flush.interval.ms"), same("log.flush.scheduler.interval.ms")],
        support: Support::Honoured,
        internal: false,
        doc: "fsync the log at least this often. DLog's default is 1000 (Kafka's: never).",
    },
    throttled("follower.replication.throttled.replicas"),
    ConfigKey {
        name: "index.interval.bytes",
        kind: ConfigType::Int,
        kafka_default: "4096",
        check: Check::AtLeast(0),
        synonyms: &[same("log.index.interval.bytes")],
        support: Support::Honoured,
        internal: false,
        doc: "Bytes of log between two entries of the sparse offset and time indexes.",
    },
    ConfigKey {
        name: "internal.segment.bytes",
        kind: ConfigType::Int,
        kafka_default: "",
        check: Check::AtLeast(14),
        synonyms: &[],
        support: Support::Honoured,
        internal: true,
        doc: "For tests: a segment size below segment.bytes' 1 MiB floor; replaces segment.bytes when set.",
    },
    throttled("leader.replication.throttled.replicas"),
    ConfigKey {
        name: "local.retention.bytes",
        kind: ConfigType::Long,
        kafka_default: "-2",
        check: Check::AtLeast(-2),
        synonyms: &[same("log.local.retention.bytes")],
        support: Support::NotYet { capability: TIERED, accepts: &["-2"] },
        internal: false,
        doc: "Local retention of a tiered topic (-2: retention.bytes). Tiered storage is not supported yet.",
    },
    ConfigKey {
        name: "local.retention.ms",
        kind: ConfigType::Long,
        kafka_default: "-2",
        check: Check::AtLeast(-2),
        synonyms: &[same("log.local.retention.ms")],
        support: Support::NotYet { capability: TIERED, accepts: &["-2"] },
        internal: false,
        doc: "Local retention of a tiered topic (-2: retention.ms). Tiered storage is not supported yet.",
    },
    ConfigKey {
        name: "max.compaction.lag.ms",
        kind: ConfigType::Long,
        kafka_default: I64_MAX,
        check: Check::AtLeast(1),
        synonyms: &[same("log.cleaner.max.compaction.lag.ms")],
        support: Support::Inert(COMPACTION),
        internal: false,
        doc: "Longest a record stays uncompacted. No effect until compaction is supported.",
    },
    ConfigKey {
        name: "max.message.bytes",
        kind: ConfigType::Int,
        kafka_default: "1048588",
        check: Check::AtLeast(0),
        synonyms: &[same("message.max.bytes")],
        support: Support::Honoured,
        internal: false,
        doc: "Largest record batch accepted (after recompression, when compression.type asks for it).",
    },
    ConfigKey {
        name: "message.timestamp.after.max.ms",
        kind: ConfigType::Long,
        kafka_default: "3600000",
        check: Check::AtLeast(0),
        synonyms: &[same("log.message.timestamp.after.max.ms")],
        support: Support::Honoured,
        internal: false,
        doc: "How far into the future a CreateTime record timestamp may lie.",
    },
    ConfigKey {
        name: "message.timestamp.before.max.ms",
        kind: ConfigType::Long,
        kafka_default: I64_MAX,
        check: Check::AtLeast(0),
        synonyms: &[same("log.message.timestamp.before.max.ms")],
        support: Support::Honoured,
        internal: false,
        doc: "How far into the past a CreateTime record timestamp may lie.",
    },
    ConfigKey {
        name: "message.timestamp.type",
        kind: ConfigType::String,
        kafka_default: "CreateTime",
        check: Check::OneOf(&["CreateTime", "LogAppendTime"]),
        synonyms: &[same("log.message.timestamp.type")],
        support: Support::Honoured,
        internal: false,
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock.",
    },
    ConfigKey {
        name: "min.cleanable.dirty.ratio",
        kind: ConfigType::Double,
        kafka_default: "0.5",
        check: Check::Fraction,
        synonyms: &[same("log.cleaner.min.cleanable.ratio")],
        support: Support::Inert(COMPACTION),
        internal: false,
        doc: "How dirty a compacted log gets before it is cleaned. No effect until compaction is supported.",
    },
    ConfigKey {
        name: "min.compaction.lag.ms",
        kind: ConfigType::Long,
        kafka_default: "0",
        check: Check::AtLeast(0),
        synonyms: &[same("log.cleaner.min.compaction.lag.ms")],
        support: Support::Inert(COMPACTION),
        internal: false,
        doc: "Shortest time a record stays uncompacted. No effect until compaction is supported.",
    },
    ConfigKey {
        name: "min.insync.replicas",
        kind: ConfigType::Int,
        kafka_default: "1",
        check: Check::AtLeast(1),
        synonyms: &[same("min.insync.replicas")],
        support: Support::Honoured,
        internal: false,
        doc: "The write quorum W (the same as write.quorum): replicas holding a batch before acks=all completes.",
    },
    ConfigKey {
        name: "preallocate",
        kind: ConfigType::Boolean,
        kafka_default: "false",
        check: Check::Any,
        synonyms: &[same("log.preallocate")],
        support: Support::Inert("segment files grow as they are written; preallocation is a hint of Kafka's for slow filesystems"),
        internal: false,
        doc: "Accepted; DLog's segment files grow as written.",
    },
    ConfigKey {
        name: "read.quorum",
        kind: ConfigType::Int,
        kafka_default: "2",
        check: Check::AtLeast(1),
        synonyms: &[same("default.read.quorum")],
        support: Support::Honoured,
        internal: false,
        doc: "DLog: replicas a new leader hears from before it leads (default 2, at most the replicas). CP when \
              write.quorum + read.quorum > replicas, AP otherwise.",
    },
    ConfigKey {
        name: "remote.log.copy.disable",
        kind: ConfigType::Boolean,
        kafka_default: "false",
        check: Check::Any,
        synonyms: &[],
        support: Support::NotYet { capability: TIERED, accepts: &["false"] },
        internal: false,
        doc: "Stops copying segments to tiered storage. Tiered storage is not supported yet.",
    },
    ConfigKey {
        name: "remote.log.delete.on.disable",
        kind: ConfigType::Boolean,
        kafka_default: "false",
        check: Check::Any,
        synonyms: &[],
        support: Support::NotYet { capability: TIERED, accepts: &["false"] },
        internal: false,
        doc: "Deletes tiered data when tiering is turned off. Tiered storage is not supported yet.",
    },
    ConfigKey {
        name: "remote.storage.enable",
        kind: ConfigType::Boolean,
        kafka_default: "false",
        check: Check::Any,
        synonyms: &[],
        support: Support::NotYet { capability: TIERED, accepts: &["false"] },
        internal: false,
        doc: "Tiers closed segments to object storage. Tiered storage is not supported yet.",
    },
    ConfigKey {
        name: "retention.bytes",
        kind: ConfigType::Long,
        kafka_default: "-1",
        check: Check::Any,
        synonyms: &[same("log.retention.bytes")],
        support: Support::Honoured,
        internal: false,
        doc: "Largest size a partition's log is kept at, by deleting its oldest closed segments; -1: no limit.",
    },
    ConfigKey {
        name: "retention.ms",
        kind: ConfigType::Long,
        kafka_default: "604800000",
        check: Check::AtLeast(-1),
        synonyms: &[
            same("log.retention.ms"),
            Synonym { name: "log.retention.minutes", scale: MS_PER_MINUTE },
            Synonym { name: "log.retention.hours", scale: MS_PER_HOUR },
        ],
        support: Support::Honoured,
        internal: false,
        doc: "How long a closed segment is kept after its newest record; -1: for ever.",
    },
    ConfigKey {
        name: "segment.bytes",
        kind: ConfigType::Int,
        kafka_default: "1073741824",
        check: Check::AtLeast(1024 * 1024),
        synonyms: &[same("log.segment.bytes")],
        support: Support::Honoured,
        internal: false,
        doc: "The active segment rolls before it would grow past this size.",
    },
    ConfigKey {
        name: "segment.index.bytes",
        kind: ConfigType::Int,
        kafka_default: "10485760",
        check: Check::AtLeast(4),
        synonyms: &[same("log.index.size.max.bytes")],
        support: Support::Inert(
            "DLog's indexes are sparse lists that grow with their segment, so no segment rolls for a full index",
        ),
        internal: false,
        doc: "Accepted; DLog's indexes have no fixed size.",
    },
    ConfigKey {
        name: "segment.jitter.ms",
        kind: ConfigType::Long,
        kafka_default: "0",
        check: Check::AtLeast(0),
        synonyms: &[same("log.roll.jitter.ms"), Synonym { name: "log.roll.jitter.hours", scale: MS_PER_HOUR }],
        support: Support::Honoured,
        internal: false,
        doc: "Up to this much is taken off segment.ms, differently per partition, so that partitions do not roll together.",
    },
    ConfigKey {
        name: "segment.ms",
        kind: ConfigType::Long,
        kafka_default: "604800000",
        check: Check::AtLeast(1),
        synonyms: &[same("log.roll.ms"), Synonym { name: "log.roll.hours", scale: MS_PER_HOUR }],
        support: Support::Honoured,
        internal: false,
        doc: "The active segment rolls once this old.",
    },
    ConfigKey {
        name: "unclean.leader.election.enable",
        kind: ConfigType::Boolean,
        kafka_default: "false",
        check: Check::Any,
        synonyms: &[same("unclean.leader.election.enable")],
        support: Support::Honoured,
        internal: false,
        doc: "false: a CP topic elects only a leader that heard from read.quorum replicas, so it holds every \
              acknowledged record. true is refused on CP topics until DLog can elect from fewer; AP topics \
              (write.quorum + read.quorum <= replicas) choose availability through their quorums and accept both.",
    },
    ConfigKey {
        name: "write.caching",
        kind: ConfigType::Boolean,
        kafka_default: "true",
        check: Check::Any,
        synonyms: &[same("write.caching")],
        support: Support::Honoured,
        internal: false,
        doc: "DLog: true acknowledges acks=all once the write quorum holds a batch in memory (fsync per flush.ms, \
              flush.messages); false makes every replica fsync before it acknowledges.",
    },
    ConfigKey {
        name: "write.quorum",
        kind: ConfigType::Int,
        kafka_default: "2",
        check: Check::AtLeast(1),
        synonyms: &[same("default.write.quorum")],
        support: Support::Honoured,
        internal: false,
        doc: "DLog: replicas holding a batch before acks=all completes (default 2, at most the replicas); also \
              set by min.insync.replicas.",
    },
];

/// The row of topic config `name`.
pub fn key(name: &str) -> Option<&'static ConfigKey> {
    TOPIC_CONFIGS.iter().find(|k| k.name == name)
}

/// The row whose broker synonym is `name`, with that synonym.
pub fn by_synonym(name: &str) -> Option<(&'static ConfigKey, Synonym)> {
    TOPIC_CONFIGS.iter().find_map(|k| k.synonyms.iter().find(|s| s.name == name).map(|s| (k, *s)))
}
