//! Topic configuration: the Kafka topic config names DLog understands, their defaults,
//! parsing and validation.
//!
//! A topic stores only its overrides (name -> string value, as Kafka does); the
//! effective [`TopicConfig`] is the broker's defaults with those overrides applied by
//! [`TopicConfig::with_overrides`]. Unknown names and bad values are refused with a
//! [`ConfigError`] that names the key and the reason.

use std::collections::BTreeMap;

/// What a bad config names: the key and why it is refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown topic config {0:?}")]
    UnknownKey(String),
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidValue { key: String, value: String, reason: String },
}

impl From<ConfigError> for crate::Error {
    fn from(e: ConfigError) -> Self {
        crate::Error::InvalidConfig(e.to_string())
    }
}

/// Whether record timestamps are the producer's (`CreateTime`) or the broker's
/// (`LogAppendTime`, rewritten in the batch header on append).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// `cleanup.policy`. Only `delete` is implemented; `compact` is refused until key
/// compaction lands rather than silently ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
}

/// The effective configuration of one topic (all partitions share it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// `segment.bytes`: roll the active segment when it would exceed this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once its first record is this old.
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes of log between two sparse index entries.
    pub index_interval_bytes: u64,
    /// `flush.messages`: fsync after this many records (1 = every write).
    pub flush_messages: i64,
    /// `flush.ms`: fsync at least this often.
    pub flush_ms: i64,
    /// `retention.ms`: delete closed segments whose newest record is older; -1 = forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest closed segments while the log is larger; -1 = no limit.
    pub retention_bytes: i64,
    /// `max.message.bytes`: largest record batch accepted.
    pub max_message_bytes: u64,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime record's
    /// timestamp may lie (Kafka's default: no limit).
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime record's
    /// timestamp may lie (Kafka 4's default: one hour).
    pub timestamp_after_max_ms: i64,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `write.quorum` (also accepted as `min.insync.replicas`): replicas that must hold
    /// a batch before acks=all completes. `None`: 2, or the replica count when smaller.
    pub write_quorum: Option<u16>,
    /// `read.quorum`: replicas a new leader hears from before it leads. `None`: 2, or
    /// the replica count when smaller. CP when W + R > RF, AP otherwise.
    pub read_quorum: Option<u16>,
    /// `write.caching`: acknowledge acks=all once the write quorum holds a batch in
    /// memory and fsync per `flush.ms`/`flush.messages`; off, every replica fsyncs
    /// before it acknowledges (group commit).
    pub write_caching: bool,
    /// `file.delete.delay.ms`: accepted for compatibility; DLog deletes segment files at once.
    pub file_delete_delay_ms: i64,
}

/// Broker-wide defaults for topic configs (`log.segment.bytes`, ...): a [`TopicConfig`].
pub type BrokerDefaults = TopicConfig;

impl Default for TopicConfig {
    /// Apache Kafka's defaults.
    fn default() -> Self {
        TopicConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1024 * 1024 + 12,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            cleanup_policy: CleanupPolicy::Delete,
            write_quorum: None,
            read_quorum: None,
            write_caching: true,
            file_delete_delay_ms: 60_000,
        }
    }
}

/// One topic config key DLog understands.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    pub name: &'static str,
    /// The broker-level name of its default (`log.segment.bytes` for `segment.bytes`).
    pub broker_name: &'static str,
    pub doc: &'static str,
}

/// Every topic config DLog accepts, in the order DescribeConfigs lists them.
pub const CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        doc: "delete (compact is not implemented yet)",
    },
    ConfigKey {
        name: "file.delete.delay.ms",
        broker_name: "log.segment.delete.delay.ms",
        doc: "accepted; segments are deleted at once",
    },
    ConfigKey {
        name: "flush.messages",
        broker_name: "log.flush.interval.messages",
        doc: "fsync after this many records",
    },
    ConfigKey { name: "flush.ms", broker_name: "log.flush.interval.ms", doc: "fsync at least this often" },
    ConfigKey {
        name: "index.interval.bytes",
        broker_name: "log.index.interval.bytes",
        doc: "bytes between sparse index entries",
    },
    ConfigKey { name: "max.message.bytes", broker_name: "message.max.bytes", doc: "largest record batch accepted" },
    ConfigKey {
        name: "message.timestamp.after.max.ms",
        broker_name: "log.message.timestamp.after.max.ms",
        doc: "largest allowed distance into the future of a CreateTime record timestamp",
    },
    ConfigKey {
        name: "message.timestamp.before.max.ms",
        broker_name: "log.message.timestamp.before.max.ms",
        doc: "largest allowed distance into the past of a CreateTime record timestamp",
    },
    ConfigKey {
        name: "message.timestamp.type",
        broker_name: "log.message.timestamp.type",
        doc: "CreateTime or LogAppendTime",
    },
    ConfigKey {
        name: "min.insync.replicas",
        broker_name: "min.insync.replicas",
        doc: "write quorum (the same as write.quorum)",
    },
    ConfigKey {
        name: "read.quorum",
        broker_name: "default.read.quorum",
        doc: "replicas a new leader hears from before it leads; CP when write.quorum + read.quorum > replicas",
    },
    ConfigKey {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        doc: "largest log size kept; -1 = unlimited",
    },
    ConfigKey { name: "retention.ms", broker_name: "log.retention.ms", doc: "longest time kept; -1 = forever" },
    ConfigKey { name: "segment.bytes", broker_name: "log.segment.bytes", doc: "segment size that triggers a roll" },
    ConfigKey { name: "segment.ms", broker_name: "log.roll.ms", doc: "segment age that triggers a roll" },
    ConfigKey {
        name: "write.caching",
        broker_name: "write.caching",
        doc: "acknowledge once the write quorum holds a batch in memory; false: fsync before acknowledging",
    },
    ConfigKey {
        name: "write.quorum",
        broker_name: "default.write.quorum",
        doc: "replicas holding a batch before acks=all completes",
    },
];

/// The write and read quorum when a topic sets none (capped at its replica count).
pub const DEFAULT_QUORUM: u16 = 2;

fn parse_quorum(key: &str, value: &str) -> Result<u16, ConfigError> {
    let v = parse_i64(key, value, 1)?;
    u16::try_from(v).map_err(|_| ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: "too large".to_string(),
    })
}

fn parse_i64(key: &str, value: &str, min: i64) -> Result<i64, ConfigError> {
    let v: i64 = value.trim().parse().map_err(|_| ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: "not an integer".to_string(),
    })?;
    if v < min {
        return Err(ConfigError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            reason: format!("must be at least {min}"),
        });
    }
    Ok(v)
}

impl TopicConfig {
    /// Sets one config by its Kafka name, validating the value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "segment.bytes" => self.segment_bytes = parse_i64(key, value, 14)? as u64,
            "segment.ms" => self.segment_ms = parse_i64(key, value, 1)?,
            "index.interval.bytes" => self.index_interval_bytes = parse_i64(key, value, 0)? as u64,
            "flush.messages" => self.flush_messages = parse_i64(key, value, 1)?,
            "flush.ms" => self.flush_ms = parse_i64(key, value, 0)?,
            "retention.ms" => self.retention_ms = parse_i64(key, value, -1)?,
            "retention.bytes" => self.retention_bytes = parse_i64(key, value, -1)?,
            "max.message.bytes" => self.max_message_bytes = parse_i64(key, value, 0)? as u64,
            "message.timestamp.before.max.ms" => self.timestamp_before_max_ms = parse_i64(key, value, 0)?,
            "message.timestamp.after.max.ms" => self.timestamp_after_max_ms = parse_i64(key, value, 0)?,
            "min.insync.replicas" | "write.quorum" => self.write_quorum = Some(parse_quorum(key, value)?),
            "read.quorum" => self.read_quorum = Some(parse_quorum(key, value)?),
            "write.caching" => {
                self.write_caching = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ConfigError::InvalidValue {
                            key: key.to_string(),
                            value: value.to_string(),
                            reason: "must be true or false".to_string(),
                        })
                    }
                }
            }
            "file.delete.delay.ms" => self.file_delete_delay_ms = parse_i64(key, value, 0)?,
            "message.timestamp.type" => {
                self.timestamp_type = match value {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => {
                        return Err(ConfigError::InvalidValue {
                            key: key.to_string(),
                            value: value.to_string(),
                            reason: "must be CreateTime or LogAppendTime".to_string(),
                        })
                    }
                }
            }
            "cleanup.policy" => {
                self.cleanup_policy = match value {
                    "delete" => CleanupPolicy::Delete,
                    _ => {
                        return Err(ConfigError::InvalidValue {
                            key: key.to_string(),
                            value: value.to_string(),
                            reason: "only delete is supported (compaction is not implemented yet)".to_string(),
                        })
                    }
                }
            }
            _ => return Err(ConfigError::UnknownKey(key.to_string())),
        }
        Ok(())
    }

    /// The value of one config by its Kafka name, rendered as Kafka renders it.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "flush.messages" => self.flush_messages.to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.before.max.ms" => self.timestamp_before_max_ms.to_string(),
            "message.timestamp.after.max.ms" => self.timestamp_after_max_ms.to_string(),
            "min.insync.replicas" | "write.quorum" => self.write_quorum.unwrap_or(DEFAULT_QUORUM).to_string(),
            "read.quorum" => self.read_quorum.unwrap_or(DEFAULT_QUORUM).to_string(),
            "write.caching" => self.write_caching.to_string(),
            "file.delete.delay.ms" => self.file_delete_delay_ms.to_string(),
            "message.timestamp.type" => match self.timestamp_type {
                TimestampType::CreateTime => "CreateTime".to_string(),
                TimestampType::LogAppendTime => "LogAppendTime".to_string(),
            },
            "cleanup.policy" => match self.cleanup_policy {
                CleanupPolicy::Delete => "delete".to_string(),
            },
            _ => return None,
        })
    }

    /// These defaults with a topic's overrides applied; the first bad override is the error.
    pub fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> Result<TopicConfig, ConfigError> {
        let mut config = self.clone();
        for (k, v) in overrides {
            config.set(k, v)?;
        }
        Ok(config)
    }

    /// True when every append must be fsynced before it is acknowledged.
    pub fn flush_every_write(&self) -> bool {
        self.flush_messages <= 1 || !self.write_caching
    }

    /// The write and read quorums of a topic with `replicas` replicas: the configured
    /// ones, or the default (2) capped at the replica count. Errors when a configured
    /// quorum exceeds the replicas.
    pub fn quorums(&self, replicas: usize) -> Result<(u16, u16), ConfigError> {
        let rf = u16::try_from(replicas).unwrap_or(u16::MAX).max(1);
        let pick = |key: &str, set: Option<u16>| match set {
            None => Ok(DEFAULT_QUORUM.min(rf)),
            Some(q) if q <= rf => Ok(q),
            Some(q) => Err(ConfigError::InvalidValue {
                key: key.to_string(),
                value: q.to_string(),
                reason: format!("larger than the replication factor {rf}: no write could ever gather {q} replicas"),
            }),
        };
        Ok((pick("write.quorum", self.write_quorum)?, pick("read.quorum", self.read_quorum)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_round_trips_through_get_and_set() {
        let defaults = TopicConfig::default();
        for key in CONFIG_KEYS {
            let value = defaults.get(key.name).expect(key.name);
            let mut c = TopicConfig::default();
            c.set(key.name, &value).unwrap();
            assert_eq!(c.get(key.name), Some(value), "{}", key.name);
        }
    }

    #[test]
    fn quorums_default_to_two_capped_by_the_replicas_and_refuse_more_than_them() {
        let mut c = TopicConfig::default();
        assert_eq!(c.quorums(3), Ok((2, 2)));
        assert_eq!(c.quorums(1), Ok((1, 1)));
        c.set("min.insync.replicas", "3").unwrap();
        assert_eq!(c.get("write.quorum").as_deref(), Some("3"), "min.insync.replicas is the write quorum");
        assert_eq!(c.quorums(5), Ok((3, 2)));
        let e = c.quorums(2).unwrap_err().to_string();
        assert!(e.contains("write.quorum") && e.contains("replication factor 2"), "{e}");
        c.set("read.quorum", "1").unwrap();
        assert_eq!(c.quorums(3), Ok((3, 1)));
        assert!(c.set("write.quorum", "0").is_err());
        assert!(c.set("write.caching", "maybe").is_err());
        assert!(!c.flush_every_write());
        c.set("write.caching", "false").unwrap();
        assert!(c.flush_every_write(), "without write caching every write is fsynced");
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut c = TopicConfig::default();
        let e = c.set("retention.ms", "soon").unwrap_err();
        assert!(e.to_string().contains("retention.ms"), "{e}");
        assert!(matches!(c.set("no.such.key", "1"), Err(ConfigError::UnknownKey(_))));
        assert!(c.set("cleanup.policy", "compact").is_err());
        assert!(c.set("segment.bytes", "1").is_err());
    }

    #[test]
    fn overrides_apply_over_defaults() {
        let mut o = BTreeMap::new();
        o.insert("flush.messages".to_string(), "1".to_string());
        let c = TopicConfig::default().with_overrides(&o).unwrap();
        assert!(c.flush_every_write());
        assert_eq!(c.segment_bytes, TopicConfig::default().segment_bytes);
    }
}
