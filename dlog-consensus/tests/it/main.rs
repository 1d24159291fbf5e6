//! Integration tests of `dlog-consensus` through its public API: the `MetadataStore`
//! conformance suite on every implementation, and the suite's own ability to catch a
//! broken store; `raft_store` drives in-process Raft clusters (`cluster`).

mod cluster;
mod linearizable;
mod raft_store;
mod sim;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dlog_consensus::conformance::{self, Check};
use dlog_consensus::{
    Comparison, Entry, ExpectedVersion, LocalStore, LocalStoreConfig, MetadataError, MetadataStore, PutOptions,
    SessionId, Stat, SystemClock, Watch,
};

fn local_store() -> LocalStore {
    // Expire often, so that the expiry check does not wait for long.
    let config = LocalStoreConfig { expiry_interval: Duration::from_millis(20), ..LocalStoreConfig::default() };
    LocalStore::start(config, Arc::new(SystemClock))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_store_passes_the_conformance_suite() {
    conformance::run_all(|| async { local_store() }).await;
}

/// A store whose puts ignore their expectation: compare-and-set is broken.
struct IgnoresExpectations(LocalStore);

#[async_trait]
impl MetadataStore for IgnoresExpectations {
    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<(String, Stat), MetadataError> {
        self.0.put(key, value, PutOptions { expected: ExpectedVersion::Any, ..options }).await
    }
    async fn delete(&self, key: &str, expected: ExpectedVersion) -> Result<bool, MetadataError> {
        self.0.delete(key, expected).await
    }
    async fn delete_range(&self, start: &str, end: &str) -> Result<(), MetadataError> {
        self.0.delete_range(start, end).await
    }
    async fn get(&self, key: &str, comparison: Comparison) -> Result<Option<Entry>, MetadataError> {
        self.0.get(key, comparison).await
    }
    async fn list(&self, start: &str, end: &str) -> Result<Vec<String>, MetadataError> {
        self.0.list(start, end).await
    }
    async fn range_scan(&self, start: &str, end: &str) -> Result<Vec<Entry>, MetadataError> {
        self.0.range_scan(start, end).await
    }
    async fn create_session(&self, timeout: Duration, identity: &str) -> Result<SessionId, MetadataError> {
        self.0.create_session(timeout, identity).await
    }
    async fn keep_alive(&self, session: SessionId) -> Result<(), MetadataError> {
        self.0.keep_alive(session).await
    }
    async fn close_session(&self, session: SessionId) -> Result<(), MetadataError> {
        self.0.close_session(session).await
    }
    async fn watch(&self, prefix: &str) -> Result<Watch, MetadataError> {
        self.0.watch(prefix).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_names_the_checks_a_broken_store_fails() {
    // One check on its own panics...
    let alone = tokio::spawn(conformance::cas_put(Arc::new(IgnoresExpectations(local_store()))));
    assert!(alone.await.unwrap_err().is_panic());

    // ...and a run reports it by name, after running the others.
    let checks: Vec<Check> = conformance::CHECKS
        .iter()
        .filter(|c| ["put_get_round_trip", "cas_put", "get_comparisons"].contains(&c.name))
        .copied()
        .collect();
    assert_eq!(checks.len(), 3);
    let run = tokio::spawn(async move {
        conformance::run_checks(|| async { IgnoresExpectations(local_store()) }, &checks).await;
    });
    let panic = run.await.unwrap_err().into_panic();
    let message = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(message.starts_with("1 of 3 MetadataStore conformance checks failed"), "{message}");
    assert!(message.contains("\ncas_put: "), "{message}");
}
