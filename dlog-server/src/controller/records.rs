//! What the controller records and what it is asked: the topic records under
//! `/topics/`, the admin requests forwarded to it and their replies, all as JSON.

use super::*;

/// Topic records: `/topics/<name>` = a JSON [`TopicRecord`].
pub const TOPICS_PREFIX: &str = "/topics/";
pub const TOPICS_END: &str = "/topics0";
/// How often a compare-and-set that lost a race is tried again before giving up.
pub(crate) const CAS_ATTEMPTS: usize = 16;

/// A topic as the metadata store records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// The topic id, 32 hex digits.
    pub id: String,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionRecord>,
}

/// One partition's assignment as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub replicas: Vec<i32>,
    /// The leading broker, -1 when offline.
    pub leader: i32,
    pub epoch: i32,
    /// The replicas the leader of `epoch` counts in its write quorum (Kafka's ISR),
    /// as it last reported them; none before its first report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isr: Option<Vec<i32>>,
    /// Replicas that must not lead, as their nodes reported: the log failed a write
    /// or an fsync there (offline until that node reopens it), or the node lost its
    /// data and has not caught up yet. Never elected, never counted in sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cannot_lead: Vec<i32>,
}

impl PartitionRecord {
    /// Whether the leader's last report counts `replica` in sync.
    pub fn in_sync(&self, replica: i32) -> bool {
        self.isr.as_ref().is_some_and(|isr| isr.contains(&replica)) && self.may_lead(replica)
    }

    /// Whether `replica` may be elected: its node has not reported it unfit.
    pub fn may_lead(&self, replica: i32) -> bool {
        !self.cannot_lead.contains(&replica)
    }

    /// Records whether `replica` may lead. Unfit, it leaves the in-sync set, and loses
    /// the leadership if it holds it (to a live in-sync replica, else any live fit one,
    /// else none): returns whether the leader changed.
    pub fn set_fit(&mut self, replica: i32, fit: bool, live: &BTreeSet<i32>) -> bool {
        if fit {
            self.cannot_lead.retain(|&r| r != replica);
            return false;
        }
        if !self.cannot_lead.contains(&replica) {
            self.cannot_lead.push(replica);
        }
        if let Some(isr) = &mut self.isr {
            isr.retain(|&r| r != replica);
        }
        if self.leader != replica {
            return false;
        }
        self.leader = self.next_leader(live);
        self.epoch += 1;
        self.isr = None;
        true
    }

    /// The replica to lead next among `live`: one the last leader counted in sync
    /// first (it holds the most), then any fit one; -1 when none is live.
    pub(crate) fn next_leader(&self, live: &BTreeSet<i32>) -> i32 {
        let candidates = || self.replicas.iter().copied().filter(|r| live.contains(r) && self.may_lead(*r));
        candidates().find(|&r| self.in_sync(r)).or_else(|| candidates().next()).unwrap_or(-1)
    }
}

pub fn topic_key(name: &str) -> String {
    format!("{TOPICS_PREFIX}{name}")
}

impl TopicRecord {
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a topic record always serializes"))
    }

    pub fn decode(value: &[u8]) -> std::result::Result<TopicRecord, String> {
        serde_json::from_slice(value).map_err(|e| e.to_string())
    }

    /// This record as a cluster member's registry holds it, its configs applied over
    /// `defaults`. A config this node cannot parse (a newer node wrote it) falls back
    /// to the defaults, with a warning, rather than hiding the topic.
    pub fn to_meta(&self, name: &str, defaults: &TopicConfig) -> std::result::Result<TopicMeta, String> {
        let id = TopicId::from_hex(&self.id).ok_or_else(|| format!("bad topic id {:?}", self.id))?;
        let (config, refused) = defaults.with_usable_overrides(&self.configs);
        for e in refused {
            tracing::warn!(topic = name, error = %e, "cannot apply a topic config; ignoring it");
        }
        let assignments = self
            .partitions
            .iter()
            .map(|p| Assignment {
                replicas: p.replicas.iter().map(|&r| NodeId(r)).collect(),
                leader: (p.leader >= 0).then_some(NodeId(p.leader)),
                leader_epoch: LeaderEpoch(p.epoch),
                isr: p.isr.as_ref().map(|isr| isr.iter().map(|&r| NodeId(r)).collect()),
                cannot_lead: p.cannot_lead.iter().map(|&r| NodeId(r)).collect(),
            })
            .collect();
        Ok(TopicMeta {
            name: name.into(),
            id,
            partitions: self.partitions.len() as i32,
            overrides: self.configs.clone(),
            config,
            assignments,
        })
    }
}

/// An admin change, as forwarded to the controller. `validate_only` requests never get
/// here: any node validates against its own image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerRequest {
    CreateTopic {
        name: String,
        /// Chosen by the forwarder, so that a retry recognises its own topic.
        id: String,
        partitions: i32,
        configs: BTreeMap<String, String>,
        /// Replicas chosen by the client, one list per partition; none: the controller
        /// places them.
        assignment: Option<Vec<Vec<i32>>>,
        /// Replicas per partition when the controller places them; none: 3, or the
        /// number of live brokers when fewer.
        #[serde(default)]
        replication_factor: Option<i32>,
    },
    DeleteTopic {
        name: String,
        /// Set when an earlier attempt may have taken effect: "already gone" succeeds.
        retried: bool,
    },
    CreatePartitions {
        name: String,
        count: i32,
        assignment: Option<Vec<Vec<i32>>>,
        /// Set when an earlier attempt may have taken effect: "already `count`"
        /// succeeds.
        retried: bool,
    },
    AlterConfigs {
        name: String,
        change: ConfigChange,
    },
    /// Adds node `id`, whose internal RPC listens at `rpc`, to the metadata group.
    AddNode {
        id: i32,
        rpc: String,
    },
    /// Removes node `id` from the metadata group.
    RemoveNode {
        id: i32,
    },
    /// Moves these partitions' leadership to their preferred (first) replica where it
    /// is live and does not lead (Kafka's preferred leader election).
    ElectPreferred {
        partitions: Vec<(String, i32)>,
    },
    /// The leader `leader` of these partitions of `name` reports which replicas it
    /// counts in its write quorum now: (partition, epoch, replicas). A report from a
    /// leader or epoch that is no longer the partition's is ignored.
    SetIsr {
        name: String,
        leader: i32,
        partitions: Vec<(i32, i32, Vec<i32>)>,
    },
    /// Node `node` reports whether its replica of `partition` of `name` may lead:
    /// not after a failed write or fsync (until the node reopens the log), nor while
    /// it catches up after losing its data. An unfit leader is replaced at once.
    ReplicaFit {
        name: String,
        partition: i32,
        node: i32,
        fit: bool,
    },
    /// Node `node` leads `partition` of `name` at `epoch` but did not open that epoch
    /// in its current life (it restarted within its session): it asks for a new
    /// epoch, so that no two lives of one leader ever write the same epoch.
    BumpEpoch {
        name: String,
        partition: i32,
        epoch: i32,
        node: i32,
    },
}

/// A change of a topic's config overrides, applied by the controller to the record as
/// it reads it (so concurrent changes of different keys both take effect).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    /// Drop every override first (the legacy AlterConfigs replaces them all).
    pub replace: bool,
    pub set: BTreeMap<String, String>,
    pub delete: Vec<String>,
}

impl ConfigChange {
    pub fn apply(&self, overrides: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut out = if self.replace { BTreeMap::new() } else { overrides.clone() };
        for k in &self.delete {
            out.remove(k);
        }
        out.extend(self.set.clone());
        out
    }
}

// Requests and replies travel as JSON: enum variants by name, so nodes of different
// versions (a rolling upgrade) read each other's unless a variant really is new.
impl ControllerRequest {
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a controller request always serializes"))
    }

    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<ControllerRequest, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("bad controller request: {e}"))
    }

    /// Marks the request as sent again after an attempt whose outcome is unknown.
    pub fn mark_retried(&mut self) {
        match self {
            ControllerRequest::DeleteTopic { retried, .. } | ControllerRequest::CreatePartitions { retried, .. } => {
                *retried = true
            }
            _ => {}
        }
    }
}

/// The controller's answer: the Raft log index at which the change was applied (the
/// forwarder waits until its own image reflects it), or why it was refused.
pub type ControllerReply = Result<u64>;

pub fn encode_reply(reply: &ControllerReply) -> Bytes {
    Bytes::from(serde_json::to_vec(reply).expect("a controller reply always serializes"))
}

pub fn decode_reply(bytes: &[u8]) -> ControllerReply {
    serde_json::from_slice(bytes).map_err(|e| Error::Storage(format!("bad controller reply: {e}")))?
}

/// A store failure in the controller's terms: the retriable ones say "not the
/// controller" (the forwarder tries again, at whoever leads by then).
pub(crate) fn store_error(e: MetadataError) -> Error {
    if e.is_retriable() {
        Error::NotController(e.to_string())
    } else {
        Error::Storage(format!("metadata store: {e}"))
    }
}
