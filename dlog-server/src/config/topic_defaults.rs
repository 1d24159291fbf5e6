//! The broker's defaults for topic configs: Kafka's broker names (or topic names) from
//! the file's `[topic_defaults]` and the `--topic-default` flags, resolved as Kafka
//! resolves its synonyms.

use std::collections::BTreeMap;

use dlog_core::TopicConfig;

use super::{dlog_topic_defaults, BrokerTopicDefaults, ConfigProblem};

/// The topic config defaults the broker sets, from the file's `[topic_defaults]` and
/// the `--topic-default` flags (which win for the same name). A name is a topic config
/// or a broker synonym of one; when several set the same topic config the one Kafka
/// ranks first wins (`log.retention.ms` over `log.retention.hours`), a topic config's
/// own name first of all. Hours and minutes convert to milliseconds.
pub(super) fn resolve_topic_defaults(
    file: BTreeMap<String, toml::Value>,
    flags: &[String],
) -> Result<(TopicConfig, BrokerTopicDefaults), ConfigProblem> {
    let mut given: BTreeMap<String, (&str, String)> = BTreeMap::new();
    for (k, v) in file {
        let value = match v {
            toml::Value::String(s) => s,
            other => other.to_string(),
        };
        given.insert(k, ("topic_defaults", value));
    }
    for kv in flags {
        let (k, v) =
            kv.split_once('=').ok_or_else(|| ConfigProblem(format!("--topic-default: {kv:?} is not KEY=VALUE")))?;
        given.insert(k.trim().to_string(), ("--topic-default", v.trim().to_string()));
    }
    // topic config -> (rank, name given, topic value, value given, where)
    let mut chosen: BTreeMap<&'static str, (usize, String, String, String, &str)> = BTreeMap::new();
    for (name, (what, value)) in given {
        let (k, rank, scale) = if let Some(k) = dlog_core::config::key(&name) {
            (k, 0, 1)
        } else if let Some((k, syn)) = dlog_core::config::keys::by_synonym(&name) {
            let rank = 1 + k.synonyms.iter().position(|s| s.name == syn.name).unwrap_or(0);
            (k, rank, syn.scale)
        } else {
            return Err(ConfigProblem(format!(
                "{what}: {name:?} is neither a topic config nor a broker config that sets one"
            )));
        };
        let topic_value = if scale == 1 {
            value.clone()
        } else {
            value
                .parse::<i64>()
                .ok()
                .and_then(|n| n.checked_mul(scale))
                .ok_or_else(|| ConfigProblem(format!("{what}: {name} = {value:?} is not a number in range")))?
                .to_string()
        };
        if chosen.get(k.name).is_none_or(|c| rank < c.0) {
            chosen.insert(k.name, (rank, name, topic_value, value, what));
        }
    }
    let mut defaults = dlog_topic_defaults();
    let mut settings = BrokerTopicDefaults::new();
    for (topic_key, (_, name, topic_value, value, what)) in chosen {
        defaults.set(topic_key, &topic_value).map_err(|e| ConfigProblem(format!("{what}: {name}: {e}")))?;
        // A topic config's own name stands for its first broker synonym.
        let shown = match dlog_core::config::key(&name) {
            Some(k) => k.synonyms.first().map_or(name.clone(), |s| s.name.to_string()),
            None => name,
        };
        settings.insert(topic_key.to_string(), (shown, value));
    }
    if defaults.unclean_leader_election {
        return Err(ConfigProblem(
            "topic defaults: unclean.leader.election.enable=true is not yet supported as a broker default (it is \
             refused on CP topics; set it on AP topics)"
                .into(),
        ));
    }
    Ok((defaults, settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_defaults_take_kafkas_broker_names_and_rank_them_as_kafka_does() {
        let file: BTreeMap<String, toml::Value> = [
            ("log.retention.hours".to_string(), toml::Value::Integer(24)),
            ("flush.messages".to_string(), toml::Value::Integer(10)),
            ("log.roll.ms".to_string(), toml::Value::String("5000".into())),
        ]
        .into();
        let flags = ["log.retention.ms=1000".to_string(), "log.segment.bytes=2097152".to_string()];
        let (d, set) = resolve_topic_defaults(file.clone(), &flags).unwrap();
        assert_eq!(d.retention_ms, 1000, "log.retention.ms outranks log.retention.hours");
        assert_eq!(set["retention.ms"], ("log.retention.ms".to_string(), "1000".to_string()));
        assert_eq!(d.segment_bytes, 2097152);
        assert_eq!(d.segment_ms, 5000);
        assert_eq!(d.flush_messages, 10);
        assert_eq!(set["flush.messages"].0, "log.flush.interval.messages", "a topic name shows as its broker name");
        assert_eq!(d.flush_ms, 1000, "DLog's own default stays");
        let (d, _) = resolve_topic_defaults(file, &[]).unwrap();
        assert_eq!(d.retention_ms, 24 * 3_600_000, "hours convert to ms");
        for bad in ["no.such.setting=1", "log.retention.hours=soon", "log.segment.bytes=10", "noequals"] {
            let e = resolve_topic_defaults(BTreeMap::new(), &[bad.to_string()]).unwrap_err().to_string();
            assert!(e.contains("--topic-default"), "{bad}: {e}");
        }
        assert!(resolve_topic_defaults(BTreeMap::new(), &["unclean.leader.election.enable=true".into()]).is_err());
    }
}
