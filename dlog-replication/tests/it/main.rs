//! Integration tests of `dlog-replication` through its public API: a deterministic
//! simulation of one partition's replicas driving the real engine (`sim`).

mod sim;
