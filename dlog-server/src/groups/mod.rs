//! The group coordinator. [`state`] is one group's rebalance protocol, I/O-free; the
//! server drives it from the handlers of the group APIs and the shard's clock.

pub mod state;
