//! Topic configuration: every topic config Kafka 4.1 documents (and DLog's three), their
//! defaults, parsing and validation. The declarative table is [`keys::TOPIC_CONFIGS`].
//!
//! A topic stores only its overrides (name -> string value, as Kafka does); the
//! effective [`TopicConfig`] is the broker's defaults with those overrides applied by
//! [`TopicConfig::with_overrides`]. Unknown names, bad values and values of
//! capabilities DLog does not have yet are refused with a [`ConfigError`] that names
//! the key and the reason, in Kafka's words where Kafka has them.

use std::collections::BTreeMap;

use crate::codec::{Codec, Compression, CompressionType};

pub mod keys;
pub use keys::{key, Check, ConfigKey, ConfigType, Support, Synonym, TOPIC_CONFIGS};

/// What a bad config names: the key and why it is refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("Unknown topic config name: {0}")]
    UnknownKey(String),
    #[error("Invalid value {value} for configuration {key}: {reason}")]
    InvalidValue { key: String, value: String, reason: String },
    #[error("Invalid value {value} for configuration {key}: not yet supported: DLog has no {capability} yet (accepted: {accepted})")]
    NotYetSupported { key: String, value: String, capability: String, accepted: String },
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
    /// `internal.segment.bytes`: for tests, a size below segment.bytes' floor that
    /// replaces it ([`TopicConfig::roll_bytes`]).
    pub internal_segment_bytes: Option<u64>,
    /// `segment.ms`: roll the active segment once its first record is this old.
    pub segment_ms: i64,
    /// `segment.jitter.ms`: up to this much is taken off `segment.ms`, per partition.
    pub segment_jitter_ms: i64,
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
    /// `compression.type`: keep the producer's codec or recompress into one.
    pub compression_type: CompressionType,
    /// `compression.gzip.level`, `compression.lz4.level`, `compression.zstd.level`.
    pub gzip_level: i32,
    pub lz4_level: i32,
    pub zstd_level: i32,
    /// `unclean.leader.election.enable` (refused as true on CP topics, see [`TopicConfig::quorums`]).
    pub unclean_leader_election: bool,
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
    /// The configs DLog accepts but has no field for ([`Support::Inert`], and the
    /// accepted values of [`Support::NotYet`]), normalised, when they differ from
    /// Kafka's default.
    pub others: BTreeMap<&'static str, String>,
}

/// Broker-wide defaults for topic configs (`log.segment.bytes`, ...): a [`TopicConfig`].
pub type BrokerDefaults = TopicConfig;

impl Default for TopicConfig {
    /// Apache Kafka's defaults (but for DLog's own quorums and write caching).
    fn default() -> Self {
        TopicConfig {
            segment_bytes: 1024 * 1024 * 1024,
            internal_segment_bytes: None,
            segment_ms: 7 * 24 * 3600 * 1000,
            segment_jitter_ms: 0,
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
            compression_type: CompressionType::Producer,
            gzip_level: -1,
            lz4_level: crate::codec::LZ4_DEFAULT_LEVEL,
            zstd_level: 3,
            unclean_leader_election: false,
            write_quorum: None,
            read_quorum: None,
            write_caching: true,
            others: BTreeMap::new(),
        }
    }
}

/// The write and read quorum when a topic sets none (capped at its replica count).
pub const DEFAULT_QUORUM: u16 = 2;

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue { key: key.to_string(), value: value.to_string(), reason: reason.into() }
}

fn number(k: &ConfigKey, value: &str) -> Result<i64, ConfigError> {
    let kind = match k.kind {
        ConfigType::Int => "INT",
        _ => "LONG",
    };
    let v: i64 = value.parse().map_err(|_| invalid(k.name, value, format!("Not a number of type {kind}")))?;
    if k.kind == ConfigType::Int && i32::try_from(v).is_err() {
        return Err(invalid(k.name, value, "Not a number of type INT"));
    }
    Ok(v)
}

fn throttled_replicas_ok(value: &str) -> bool {
    value == "*"
        || value.split(',').map(str::trim).all(|r| {
            r.split_once(':').is_some_and(|(p, b)| p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok())
        })
}

/// Checks `value` for config `k` as Kafka's ConfigDef would (type, then bounds), and
/// against what DLog supports; returns it normalised as DescribeConfigs renders it.
pub fn validate(k: &ConfigKey, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    let normal = match k.kind {
        ConfigType::Boolean => match value.to_ascii_lowercase().as_str() {
            v @ ("true" | "false") => v.to_string(),
            _ => return Err(invalid(k.name, value, "Expected value to be either true or false")),
        },
        ConfigType::Int | ConfigType::Long => {
            let v = number(k, value)?;
            match k.check {
                Check::AtLeast(min) if v < min => {
                    return Err(invalid(k.name, value, format!("Value must be at least {min}")))
                }
                Check::Between(min, _) if v < min => {
                    return Err(invalid(k.name, value, format!("Value must be at least {min}")))
                }
                Check::Between(_, max) if v > max => {
                    return Err(invalid(k.name, value, format!("Value must be no more than {max}")))
                }
                Check::GzipLevel if !(v == -1 || (1..=9).contains(&v)) => {
                    return Err(invalid(k.name, value, "Value must be between 1 and 9 or equal to -1"))
                }
                _ => {}
            }
            v.to_string()
        }
        ConfigType::Double => {
            let v: f64 = value.parse().map_err(|_| invalid(k.name, value, "Not a number of type DOUBLE"))?;
            if !v.is_finite() || v < 0.0 {
                return Err(invalid(k.name, value, "Value must be at least 0"));
            }
            if v > 1.0 {
                return Err(invalid(k.name, value, "Value must be no more than 1"));
            }
            format!("{v:?}")
        }
        ConfigType::String => match k.check {
            Check::OneOf(allowed) if !allowed.contains(&value) => {
                return Err(invalid(k.name, value, format!("String must be one of: {}", allowed.join(", "))))
            }
            _ => value.to_string(),
        },
        ConfigType::List => {
            let items: Vec<&str> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            match k.check {
                Check::ListOf(allowed) => {
                    if let Some(bad) = items.iter().find(|i| !allowed.contains(i)) {
                        return Err(invalid(k.name, bad, format!("String must be one of: {}", allowed.join(", "))));
                    }
                }
                Check::ThrottledReplicas if !items.is_empty() && !throttled_replicas_ok(value) => {
                    return Err(invalid(
                        k.name,
                        value,
                        format!(
                            "{} must be the literal '*' or a list of replicas in the following format: \
                             [partitionId]:[brokerId],[partitionId]:[brokerId],...",
                            k.name
                        ),
                    ))
                }
                _ => {}
            }
            items.join(",")
        }
    };
    if let Support::NotYet { capability, accepts } = k.support {
        if !accepts.contains(&normal.as_str()) {
            return Err(ConfigError::NotYetSupported {
                key: k.name.to_string(),
                value: value.to_string(),
                capability: capability.to_string(),
                accepted: accepts.iter().map(|a| if a.is_empty() { "\"\"" } else { *a }).collect::<Vec<_>>().join(", "),
            });
        }
    }
    Ok(normal)
}

impl TopicConfig {
    /// Sets one config by its Kafka name, validating the value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let k = key(name).ok_or_else(|| ConfigError::UnknownKey(name.to_string()))?;
        let v = validate(k, value)?;
        let n = || v.parse::<i64>().expect("validated as a number");
        match k.name {
            "segment.bytes" => self.segment_bytes = n() as u64,
            "internal.segment.bytes" => self.internal_segment_bytes = Some(n() as u64),
            "segment.ms" => self.segment_ms = n(),
            "segment.jitter.ms" => self.segment_jitter_ms = n(),
            "index.interval.bytes" => self.index_interval_bytes = n() as u64,
            "flush.messages" => self.flush_messages = n(),
            "flush.ms" => self.flush_ms = n(),
            "retention.ms" => self.retention_ms = n(),
            "retention.bytes" => self.retention_bytes = n(),
            "max.message.bytes" => self.max_message_bytes = n() as u64,
            "message.timestamp.before.max.ms" => self.timestamp_before_max_ms = n(),
            "message.timestamp.after.max.ms" => self.timestamp_after_max_ms = n(),
            "min.insync.replicas" | "write.quorum" | "read.quorum" => {
                let q = u16::try_from(n()).map_err(|_| invalid(k.name, value, "Value must be no more than 65535"))?;
                if k.name == "read.quorum" {
                    self.read_quorum = Some(q);
                } else {
                    self.write_quorum = Some(q);
                }
            }
            "write.caching" => self.write_caching = v == "true",
            "unclean.leader.election.enable" => self.unclean_leader_election = v == "true",
            "compression.type" => {
                self.compression_type = CompressionType::parse(&v).expect("validated as a compression type")
            }
            "compression.gzip.level" => self.gzip_level = n() as i32,
            "compression.lz4.level" => self.lz4_level = n() as i32,
            "compression.zstd.level" => self.zstd_level = n() as i32,
            "message.timestamp.type" => {
                self.timestamp_type =
                    if v == "LogAppendTime" { TimestampType::LogAppendTime } else { TimestampType::CreateTime }
            }
            "cleanup.policy" => self.cleanup_policy = CleanupPolicy::Delete,
            other => {
                if v == k.kafka_default {
                    self.others.remove(other);
                } else {
                    self.others.insert(k.name, v);
                }
            }
        }
        Ok(())
    }

    /// The value of one config by its Kafka name, rendered as Kafka renders it; `None`
    /// for an unknown name, and for an internal config that is not set.
    pub fn get(&self, name: &str) -> Option<String> {
        let k = key(name)?;
        Some(match k.name {
            "segment.bytes" => self.segment_bytes.to_string(),
            "internal.segment.bytes" => return self.internal_segment_bytes.map(|b| b.to_string()),
            "segment.ms" => self.segment_ms.to_string(),
            "segment.jitter.ms" => self.segment_jitter_ms.to_string(),
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
            "unclean.leader.election.enable" => self.unclean_leader_election.to_string(),
            "compression.type" => self.compression_type.name().to_string(),
            "compression.gzip.level" => self.gzip_level.to_string(),
            "compression.lz4.level" => self.lz4_level.to_string(),
            "compression.zstd.level" => self.zstd_level.to_string(),
            "message.timestamp.type" => match self.timestamp_type {
                TimestampType::CreateTime => "CreateTime".to_string(),
                TimestampType::LogAppendTime => "LogAppendTime".to_string(),
            },
            "cleanup.policy" => match self.cleanup_policy {
                CleanupPolicy::Delete => "delete".to_string(),
            },
            other => self.others.get(other).cloned().unwrap_or_else(|| k.kafka_default.to_string()),
        })
    }

    /// The size the active segment rolls at: `internal.segment.bytes` when set, else
    /// `segment.bytes`.
    pub fn roll_bytes(&self) -> u64 {
        self.internal_segment_bytes.unwrap_or(self.segment_bytes)
    }

    /// The codec and level produce batches are recompressed into, or `None` when the
    /// topic keeps the producer's.
    pub fn recompression(&self) -> Option<Compression> {
        match self.compression_type {
            CompressionType::Producer => None,
            CompressionType::Codec(codec) => Some(Compression {
                codec,
                level: match codec {
                    Codec::Gzip => self.gzip_level,
                    Codec::Lz4 => self.lz4_level,
                    Codec::Zstd => self.zstd_level,
                    Codec::None | Codec::Snappy => 0,
                },
            }),
        }
    }

    /// These defaults with every override of a stored topic applied that this version
    /// accepts, and the ones it refused (written by a newer version, or under older
    /// bounds): a stored topic is never hidden for one config.
    pub fn with_usable_overrides(&self, overrides: &BTreeMap<String, String>) -> (TopicConfig, Vec<ConfigError>) {
        let mut config = self.clone();
        let mut refused = Vec::new();
        for (k, v) in overrides {
            if let Err(e) = config.set(k, v) {
                refused.push(e);
            }
        }
        (config, refused)
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

    /// [`TopicConfig::quorums`], and what else a topic of `replicas` replicas must
    /// satisfy before it is created or altered: no unclean elections on a CP topic.
    pub fn check_for(&self, replicas: usize) -> Result<(u16, u16), ConfigError> {
        let (w, r) = self.quorums(replicas)?;
        let rf = u16::try_from(replicas).unwrap_or(u16::MAX).max(1);
        // An unclean election on a CP topic would elect a leader that heard from fewer
        // than R replicas; DLog cannot yet. With one replica there is no other to elect;
        // AP topics (W + R <= RF) already elect from any R replicas.
        if self.unclean_leader_election && rf > 1 && w + r > rf {
            return Err(ConfigError::NotYetSupported {
                key: "unclean.leader.election.enable".to_string(),
                value: "true".to_string(),
                capability: format!(
                    "unclean elections on CP topics (write.quorum {w} + read.quorum {r} > {rf} replicas)"
                ),
                accepted: "false".to_string(),
            });
        }
        Ok((w, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_round_trips_through_get_and_set() {
        let defaults = TopicConfig::default();
        for key in TOPIC_CONFIGS.iter().filter(|k| !k.internal) {
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
        assert_eq!(
            c.set("message.downconversion.enable", "true").unwrap_err().to_string(),
            "Unknown topic config name: message.downconversion.enable",
            "removed in Kafka 4.0"
        );
        assert!(matches!(c.set("cleanup.policy", "compact"), Err(ConfigError::NotYetSupported { .. })));
        assert_eq!(
            c.set("segment.bytes", "100").unwrap_err().to_string(),
            "Invalid value 100 for configuration segment.bytes: Value must be at least 1048576"
        );
        c.set("internal.segment.bytes", "100").unwrap();
        assert_eq!(c.roll_bytes(), 100);
        assert_eq!(
            c.set("compression.type", "GZIP").unwrap_err().to_string(),
            "Invalid value GZIP for configuration compression.type: String must be one of: uncompressed, zstd, lz4, \
             snappy, gzip, producer"
        );
        assert!(c
            .set("compression.gzip.level", "10")
            .unwrap_err()
            .to_string()
            .contains("between 1 and 9 or equal to -1"));
        assert!(c.set("min.cleanable.dirty.ratio", "2.0").unwrap_err().to_string().contains("no more than 1"));
        assert!(c.set("preallocate", "yes").unwrap_err().to_string().contains("either true or false"));
        assert!(c.set("leader.replication.throttled.replicas", "0:1,x").is_err());
        assert!(matches!(
            c.set("leader.replication.throttled.replicas", "0:1,1:2"),
            Err(ConfigError::NotYetSupported { .. })
        ));
        assert!(matches!(c.set("remote.storage.enable", "true"), Err(ConfigError::NotYetSupported { .. })));
        assert!(c.set("max.message.bytes", "3000000000").unwrap_err().to_string().contains("type INT"));
    }

    #[test]
    fn every_kafka_config_is_accepted_with_its_default_and_listed_with_it() {
        let c = TopicConfig::default();
        for k in TOPIC_CONFIGS.iter().filter(|k| !k.internal) {
            let mut d = TopicConfig::default();
            d.set(k.name, k.kafka_default).unwrap_or_else(|e| panic!("{}: {e}", k.name));
            if !["write.quorum", "read.quorum", "min.insync.replicas"].contains(&k.name) {
                assert_eq!(c.get(k.name).as_deref(), Some(k.kafka_default), "{}", k.name);
            }
        }
        let names: Vec<&str> = TOPIC_CONFIGS.iter().map(|k| k.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "the table is sorted by name");
    }

    #[test]
    fn inert_configs_keep_their_values_and_compression_picks_its_level() {
        let mut c = TopicConfig::default();
        c.set("delete.retention.ms", "1000").unwrap();
        c.set("min.cleanable.dirty.ratio", "0.25").unwrap();
        c.set("cleanup.policy", " delete ").unwrap();
        assert_eq!(c.get("delete.retention.ms").as_deref(), Some("1000"));
        assert_eq!(c.get("min.cleanable.dirty.ratio").as_deref(), Some("0.25"));
        assert_eq!(c.recompression(), None);
        c.set("compression.type", "zstd").unwrap();
        c.set("compression.zstd.level", "7").unwrap();
        assert_eq!(c.recompression(), Some(Compression { codec: Codec::Zstd, level: 7 }));
        c.set("compression.type", "uncompressed").unwrap();
        assert_eq!(c.recompression(), Some(Compression { codec: Codec::None, level: 0 }));
    }

    #[test]
    fn unclean_election_is_refused_on_cp_topics_only() {
        let mut c = TopicConfig::default();
        c.set("unclean.leader.election.enable", "true").unwrap();
        assert!(matches!(c.check_for(3), Err(ConfigError::NotYetSupported { .. })), "W 2 + R 2 > 3: CP");
        assert_eq!(c.quorums(3), Ok((2, 2)), "a running partition still gets its quorums");
        assert!(c.check_for(1).is_ok(), "one replica: nothing else to elect");
        c.set("read.quorum", "1").unwrap();
        assert_eq!(c.check_for(3), Ok((2, 1)), "W 2 + R 1 <= 3: AP");
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
