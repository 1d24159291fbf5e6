//! The topic registry: names, ids, partition counts, config overrides and each
//! partition's assignment (replicas, leader, leader epoch).
//!
//! Two modes. A single node is its own source of truth: one TOML file per topic under
//! `<data-dir>/meta/topics/`, every partition led by this node at epoch 0. A cluster
//! member holds an *image* of the topics recorded in the metadata store by the
//! controller ([`crate::controller`]): nothing is written here, the image is replaced
//! wholesale as the store changes ([`TopicRegistry::replace`]).
//!
//! Architecture invariant: a topic's file is written (atomically, fsynced) before any
//! of its partitions is opened, and deleted after its partitions are closed. Invariant:
//! `meta.assignments.len() == meta.partitions`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dlog_core::{limits, Error, LeaderEpoch, NodeId, Result, TopicConfig, TopicId};
use serde::{Deserialize, Serialize};

/// One topic as the registry knows it.
#[derive(Debug, Clone)]
pub struct TopicMeta {
    pub name: Arc<str>,
    pub id: TopicId,
    pub partitions: i32,
    /// The configs set on this topic (Kafka's "topic config overrides").
    pub overrides: BTreeMap<String, String>,
    /// The broker defaults with `overrides` applied.
    pub config: TopicConfig,
    /// Where each partition lives, indexed by partition.
    pub assignments: Arc<[Assignment]>,
}

/// Where one partition lives and who leads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The brokers holding a copy; the first is the preferred leader.
    pub replicas: Vec<NodeId>,
    /// The broker serving it, or none when it is offline.
    pub leader: Option<NodeId>,
    /// Bumps at every change of leader (including to and from offline).
    pub leader_epoch: LeaderEpoch,
    /// The replicas the leader counts in its write quorum, as it reported them.
    pub isr: Option<Vec<NodeId>>,
    /// Replicas their nodes reported unfit to lead (a failed log, or data lost and
    /// not caught up yet).
    pub cannot_lead: Vec<NodeId>,
}

impl Assignment {
    /// Whether the leader's last report counts `replica` in sync.
    pub fn in_sync(&self, replica: NodeId) -> bool {
        self.isr.as_ref().is_some_and(|isr| isr.contains(&replica)) && !self.cannot_lead.contains(&replica)
    }

    /// The in-sync replicas to show a client: the leader's last report, without the
    /// brokers not live; before its first report, the leader alone.
    pub fn shown_isr(&self, live: &std::collections::BTreeSet<NodeId>) -> Vec<NodeId> {
        match (&self.isr, self.leader) {
            (Some(isr), _) => isr.iter().copied().filter(|r| live.contains(r)).collect(),
            (None, Some(leader)) => vec![leader],
            (None, None) => Vec::new(),
        }
    }

    /// A partition of a single node: it holds and leads it, forever at epoch 0.
    pub fn local(node: NodeId) -> Assignment {
        Assignment {
            replicas: vec![node],
            leader: Some(node),
            leader_epoch: LeaderEpoch(0),
            isr: None,
            cannot_lead: Vec::new(),
        }
    }
}

impl TopicMeta {
    /// The assignment of `partition`, if the topic has it.
    pub fn assignment(&self, partition: i32) -> Option<&Assignment> {
        usize::try_from(partition).ok().and_then(|p| self.assignments.get(p))
    }

    /// Replicas per partition (every partition of a topic has the same number).
    pub fn replication_factor(&self) -> usize {
        self.assignments.first().map_or(1, |a| a.replicas.len())
    }

    /// Whether `node` holds a copy of `partition`.
    pub fn is_replica(&self, partition: i32, node: NodeId) -> bool {
        self.assignment(partition).is_some_and(|a| a.replicas.contains(&node))
    }
}

#[derive(Serialize, Deserialize)]
struct TopicFile {
    id: String,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

/// All topics this node knows.
#[derive(Debug)]
pub struct TopicRegistry {
    /// Where topic files live; `None` for a cluster member's image.
    dir: Option<PathBuf>,
    /// This node: a single node's partitions are all its own.
    node: NodeId,
    defaults: TopicConfig,
    topics: BTreeMap<Arc<str>, TopicMeta>,
    by_id: HashMap<TopicId, Arc<str>>,
}

/// Checks a topic name the way Kafka does: 1 to 249 characters of `[a-zA-Z0-9._-]`,
/// not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let invalid = |reason: &str| Err(Error::InvalidTopic { name: name.to_string(), reason: reason.to_string() });
    if name.is_empty() {
        return invalid("topic name is empty");
    }
    if name == "." || name == ".." {
        return invalid("topic name cannot be \".\" or \"..\"");
    }
    if name.len() > limits::TOPIC_NAME_MAX_LEN {
        return invalid("topic name is longer than 249 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return invalid("topic names may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// Checks a new topic's name and partition count (its configs are checked against
/// the defaults they override). Shared by a single node's registry and the controller.
pub fn check_new_topic(name: &str, partitions: i32) -> Result<()> {
    validate_topic_name(name)?;
    if !(1..=limits::PARTITIONS_MAX).contains(&partitions) {
        return Err(Error::InvalidPartitions(format!(
            "number of partitions must be between 1 and {}, got {partitions}",
            limits::PARTITIONS_MAX
        )));
    }
    Ok(())
}

/// Checks growing a topic from `current` to `requested` partitions.
pub fn check_growth(current: i32, requested: i32) -> Result<()> {
    if requested <= current {
        return Err(Error::InvalidPartitions(format!(
            "topic currently has {current} partitions, which is higher than or equal to the requested {requested}"
        )));
    }
    if requested > limits::PARTITIONS_MAX {
        return Err(Error::InvalidPartitions(format!("at most {} partitions", limits::PARTITIONS_MAX)));
    }
    Ok(())
}

impl TopicRegistry {
    /// An empty image for a cluster member, filled by [`TopicRegistry::replace`].
    pub fn image(node: NodeId, defaults: TopicConfig) -> TopicRegistry {
        TopicRegistry { dir: None, node, defaults, topics: BTreeMap::new(), by_id: HashMap::new() }
    }

    /// Whether this is a cluster member's image of the metadata store.
    pub fn is_image(&self) -> bool {
        self.dir.is_none()
    }

    /// Replaces a cluster member's image with `topics`.
    pub fn replace(&mut self, topics: Vec<TopicMeta>) {
        assert!(self.is_image(), "a single node's registry is its own source of truth");
        self.topics.clear();
        self.by_id.clear();
        for t in topics {
            assert_eq!(t.assignments.len(), t.partitions as usize, "topic {} assignments", t.name);
            self.by_id.insert(t.id, t.name.clone());
            self.topics.insert(t.name.clone(), t);
        }
    }

    /// Loads every topic file under `<data_dir>/meta/topics` of single node `node`.
    pub fn load(data_dir: &Path, node: NodeId, defaults: TopicConfig) -> anyhow::Result<TopicRegistry> {
        let dir = data_dir.join("meta").join("topics");
        std::fs::create_dir_all(&dir)?;
        let mut registry =
            TopicRegistry { dir: Some(dir.clone()), node, defaults, topics: BTreeMap::new(), by_id: HashMap::new() };
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".toml")) else {
                continue; // temporary files of an interrupted write
            };
            let text = std::fs::read_to_string(&path)?;
            let file: TopicFile = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            // Checked before anything is sized by it: a damaged count must not abort the
            // process reserving billions of assignments.
            if !(1..=limits::PARTITIONS_MAX).contains(&file.partitions) {
                anyhow::bail!(
                    "{}: {} partitions (at most {})",
                    path.display(),
                    file.partitions,
                    limits::PARTITIONS_MAX
                );
            }
            let id = TopicId::from_hex(&file.id)
                .ok_or_else(|| anyhow::anyhow!("{}: bad topic id {:?}", path.display(), file.id))?;
            let (config, refused) = registry.defaults.with_usable_overrides(&file.configs);
            for e in refused {
                tracing::warn!(topic = %path.display(), error = %e, "cannot apply a topic config; ignoring it");
            }
            let name: Arc<str> = name.into();
            registry.by_id.insert(id, name.clone());
            let assignments = local_assignments(node, file.partitions);
            registry.topics.insert(
                name.clone(),
                TopicMeta { name, id, partitions: file.partitions, overrides: file.configs, config, assignments },
            );
        }
        Ok(registry)
    }

    pub fn defaults(&self) -> &TopicConfig {
        &self.defaults
    }

    pub fn get(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    pub fn name_of(&self, id: TopicId) -> Option<Arc<str>> {
        self.by_id.get(&id).cloned()
    }

    pub fn list(&self) -> impl Iterator<Item = &TopicMeta> {
        self.topics.values()
    }

    /// Validates a new topic of `replicas` replicas per partition without creating it.
    pub fn check_create(
        &self,
        name: &str,
        partitions: i32,
        overrides: &BTreeMap<String, String>,
        replicas: usize,
    ) -> Result<TopicConfig> {
        check_new_topic(name, partitions)?;
        if self.topics.contains_key(name) {
            return Err(Error::TopicAlreadyExists(name.to_string()));
        }
        let config = self.defaults.with_overrides(overrides)?;
        config.check_for(replicas)?;
        Ok(config)
    }

    /// Creates and persists a topic.
    pub fn create(&mut self, name: &str, partitions: i32, overrides: BTreeMap<String, String>) -> Result<TopicMeta> {
        let config = self.check_create(name, partitions, &overrides, 1)?;
        let id = TopicId(*uuid::Uuid::new_v4().as_bytes());
        let assignments = local_assignments(self.node, partitions);
        let meta = TopicMeta { name: name.into(), id, partitions, overrides, config, assignments };
        self.persist(&meta)?;
        self.by_id.insert(id, meta.name.clone());
        self.topics.insert(meta.name.clone(), meta.clone());
        Ok(meta)
    }

    /// Grows a topic to `partitions`.
    pub fn set_partitions(&mut self, name: &str, partitions: i32, validate_only: bool) -> Result<TopicMeta> {
        let mut meta = self.get(name).cloned().ok_or_else(|| Error::UnknownTopicOrPartition(name.to_string()))?;
        check_growth(meta.partitions, partitions)?;
        meta.partitions = partitions;
        meta.assignments = local_assignments(self.node, partitions);
        if !validate_only {
            self.persist(&meta)?;
            self.topics.insert(meta.name.clone(), meta.clone());
        }
        Ok(meta)
    }

    /// Replaces a topic's overrides.
    pub fn set_overrides(
        &mut self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMeta> {
        let mut meta = self.get(name).cloned().ok_or_else(|| Error::UnknownTopicOrPartition(name.to_string()))?;
        meta.config = self.defaults.with_overrides(&overrides)?;
        meta.config.check_for(meta.replication_factor())?;
        meta.overrides = overrides;
        if !validate_only {
            self.persist(&meta)?;
            self.topics.insert(meta.name.clone(), meta.clone());
        }
        Ok(meta)
    }

    /// Removes a topic from the registry (its partitions are deleted by their shards).
    pub fn delete(&mut self, name: &str) -> Result<TopicMeta> {
        let meta = self.topics.remove(name).ok_or_else(|| Error::UnknownTopicOrPartition(name.to_string()))?;
        self.by_id.remove(&meta.id);
        let dir = self.dir.as_ref().expect("a cluster image is never changed in place");
        let path = dir.join(format!("{name}.toml"));
        std::fs::remove_file(&path).map_err(|e| Error::Storage(format!("{}: {e}", path.display())))?;
        sync_dir(dir)?;
        Ok(meta)
    }

    fn persist(&self, meta: &TopicMeta) -> Result<()> {
        let dir = self.dir.as_ref().expect("a cluster image is never changed in place");
        let file = TopicFile { id: meta.id.to_hex(), partitions: meta.partitions, configs: meta.overrides.clone() };
        let text = toml::to_string(&file).map_err(|e| Error::Storage(e.to_string()))?;
        let path = dir.join(format!("{}.toml", meta.name));
        let tmp = dir.join(format!(".{}.tmp", meta.name));
        let io = |e: std::io::Error| Error::Storage(format!("{}: {e}", path.display()));
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        sync_dir(dir)
    }
}

fn local_assignments(node: NodeId, partitions: i32) -> Arc<[Assignment]> {
    (0..partitions).map(|_| Assignment::local(node)).collect()
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::Storage(format!("{}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = TopicRegistry::load(dir.path(), NodeId(1), TopicConfig::default()).unwrap();
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "1000".to_string());
        let t = r.create("orders", 3, o).unwrap();
        r.set_partitions("orders", 5, false).unwrap();
        let r2 = TopicRegistry::load(dir.path(), NodeId(1), TopicConfig::default()).unwrap();
        let t2 = r2.get("orders").unwrap();
        assert_eq!((t2.id, t2.partitions, t2.config.retention_ms), (t.id, 5, 1000));
        assert_eq!(r2.name_of(t.id).as_deref(), Some("orders"));
    }

    #[test]
    fn bad_topics_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = TopicRegistry::load(dir.path(), NodeId(1), TopicConfig::default()).unwrap();
        assert!(matches!(r.create("bad/name", 1, BTreeMap::new()), Err(Error::InvalidTopic { .. })));
        assert!(matches!(r.create("..", 1, BTreeMap::new()), Err(Error::InvalidTopic { .. })));
        assert!(matches!(r.create("t", 0, BTreeMap::new()), Err(Error::InvalidPartitions(_))));
        r.create("t", 1, BTreeMap::new()).unwrap();
        assert!(matches!(r.create("t", 1, BTreeMap::new()), Err(Error::TopicAlreadyExists(_))));
        assert!(matches!(r.set_partitions("t", 1, false), Err(Error::InvalidPartitions(_))));
        let mut bad = BTreeMap::new();
        bad.insert("nope".to_string(), "1".to_string());
        assert!(matches!(r.create("u", 1, bad), Err(Error::InvalidConfig(_))));
    }
}
