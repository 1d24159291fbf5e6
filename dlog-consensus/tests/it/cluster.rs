//! An in-process metadata Raft cluster for tests: nodes in one temporary directory,
//! talking through an `InProcessTransport` whose links the tests cut and heal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use dlog_consensus::raft::network::InProcessTransport;
use dlog_consensus::raft::ServerState;
use dlog_consensus::{
    Comparison, Entry, ExpectedVersion, KvState, MetadataError, MetadataStore, PutOptions, RaftStatus, RaftStore,
    RaftStoreConfig, SessionId, Stat, SystemClock, Watch,
};
use dlog_core::NodeId;
use tempfile::TempDir;

/// Long enough for any election or catch-up here; a test failing waits this long.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct Cluster {
    pub transport: Arc<InProcessTransport>,
    dir: TempDir,
    members: BTreeMap<NodeId, String>,
    config: RaftStoreConfig,
    live: BTreeMap<NodeId, Arc<RaftStore>>,
}

impl Cluster {
    /// `n` nodes, ids 1..=n, bootstrapped by node 1, with a leader elected.
    pub async fn start(n: i32, config: RaftStoreConfig) -> Cluster {
        let members = (1..=n).map(|i| (NodeId(i), format!("node-{i}"))).collect();
        let mut cluster = Cluster {
            transport: InProcessTransport::new(),
            dir: tempfile::tempdir().expect("a temporary directory"),
            members,
            config,
            live: BTreeMap::new(),
        };
        for i in 1..=n {
            cluster.open(NodeId(i)).await;
        }
        cluster.node(NodeId(1)).bootstrap().await.expect("bootstrap");
        cluster.leader().await;
        cluster
    }

    /// Opens node `id` from its directory without connecting it.
    pub async fn open_detached(&self, id: NodeId) -> RaftStore {
        let dir = self.dir.path().join(format!("node-{}", id.0));
        RaftStore::open(
            id,
            &dir,
            self.members.clone(),
            self.config.clone(),
            self.transport.clone(),
            Arc::new(SystemClock),
        )
        .await
        .unwrap_or_else(|e| panic!("open node {id}: {e}"))
    }

    /// Connects an opened node.
    pub fn attach(&mut self, store: RaftStore) {
        let id = store.id();
        self.transport.register(id, &store.rpc_handler());
        assert!(self.live.insert(id, Arc::new(store)).is_none(), "node {id} is already running");
    }

    /// Opens node `id` from its directory and connects it.
    pub async fn open(&mut self, id: NodeId) {
        let store = self.open_detached(id).await;
        self.attach(store);
    }

    /// Stops node `id` as a crash would for its peers: it vanishes from the network.
    pub async fn kill(&mut self, id: NodeId) {
        self.transport.remove(id);
        let store = self.live.remove(&id).unwrap_or_else(|| panic!("node {id} is not running"));
        store.shutdown().await;
    }

    /// Kills node `id`, deletes its whole directory (a disk replaced or wiped) and
    /// starts it again, blank, under the same id.
    pub async fn wipe(&mut self, id: NodeId) {
        self.kill(id).await;
        let dir = self.dir.path().join(format!("node-{}", id.0));
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("wipe {}: {e}", dir.display()));
        self.open(id).await;
    }

    pub fn node(&self, id: NodeId) -> Arc<RaftStore> {
        self.live.get(&id).unwrap_or_else(|| panic!("node {id} is not running")).clone()
    }

    pub fn live(&self) -> Vec<NodeId> {
        self.live.keys().copied().collect()
    }

    /// The leader among the live nodes, once every live node agrees on it.
    pub async fn leader(&self) -> NodeId {
        self.leader_among(&self.live()).await
    }

    /// The leader among `nodes`, once all of them name it in the same term and it leads
    /// in that term. (A restarted leader may lead its old term for a moment.)
    pub async fn leader_among(&self, nodes: &[NodeId]) -> NodeId {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let statuses: Vec<RaftStatus> = nodes.iter().map(|&id| self.status(id)).collect();
            let first = &statuses[0];
            if let Some(leader) = first.leader.filter(|l| nodes.contains(l)) {
                let agreed = statuses.iter().all(|s| s.leader == Some(leader) && s.term == first.term);
                let leads = self.status(leader);
                if agreed && leads.state == ServerState::Leader && leads.term == first.term {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "no leader agreed on among {nodes:?}: {statuses:?}");
            // Polls: the condition spans several nodes' metrics.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A live node other than `not`.
    pub fn other_than(&self, not: NodeId) -> NodeId {
        *self.live.keys().find(|&&id| id != not).expect("another live node")
    }

    /// Waits until every live node has applied everything the leader has, then checks
    /// that their states are the same bytes; returns them.
    pub async fn converged(&self) -> Vec<u8> {
        let leader = self.leader().await;
        let last = self.node(leader).status().last_log_index;
        for id in self.live() {
            let caught_up = self.node(id).wait_for(PATIENCE, |s| s.last_applied_index >= last).await;
            caught_up.unwrap_or_else(|s| panic!("node {id} did not apply up to {last:?}: {s:?}"));
        }
        let expected = self.node(leader).read_local(KvState::snapshot);
        for id in self.live() {
            assert!(self.node(id).read_local(KvState::snapshot) == expected, "node {id} differs from leader {leader}");
        }
        expected
    }

    pub fn status(&self, id: NodeId) -> RaftStatus {
        self.node(id).status()
    }
}

/// A test config: the defaults with short request timeouts.
pub fn config() -> RaftStoreConfig {
    RaftStoreConfig { request_timeout: Duration::from_secs(3), ..RaftStoreConfig::default() }
}

/// A whole cluster seen through one of its nodes: what the conformance suite gets.
pub struct ClusterStore {
    pub cluster: Cluster,
    pub via: NodeId,
}

impl ClusterStore {
    fn store(&self) -> Arc<RaftStore> {
        self.cluster.node(self.via)
    }
}

#[async_trait]
impl MetadataStore for ClusterStore {
    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<(String, Stat), MetadataError> {
        self.store().put(key, value, options).await
    }
    async fn delete(&self, key: &str, expected: ExpectedVersion) -> Result<bool, MetadataError> {
        self.store().delete(key, expected).await
    }
    async fn delete_range(&self, start: &str, end: &str) -> Result<(), MetadataError> {
        self.store().delete_range(start, end).await
    }
    async fn get(&self, key: &str, comparison: Comparison) -> Result<Option<Entry>, MetadataError> {
        self.store().get(key, comparison).await
    }
    async fn list(&self, start: &str, end: &str) -> Result<Vec<String>, MetadataError> {
        self.store().list(start, end).await
    }
    async fn range_scan(&self, start: &str, end: &str) -> Result<Vec<Entry>, MetadataError> {
        self.store().range_scan(start, end).await
    }
    async fn create_session(&self, timeout: Duration, identity: &str) -> Result<SessionId, MetadataError> {
        self.store().create_session(timeout, identity).await
    }
    async fn keep_alive(&self, session: SessionId) -> Result<(), MetadataError> {
        self.store().keep_alive(session).await
    }
    async fn close_session(&self, session: SessionId) -> Result<(), MetadataError> {
        self.store().close_session(session).await
    }
    async fn watch(&self, prefix: &str) -> Result<Watch, MetadataError> {
        self.store().watch(prefix).await
    }
}
