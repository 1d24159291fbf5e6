//! Admission of Kafka connections and of the bytes they buffer.
//!
//! - At most `max_connections` connections at once: the acceptor takes a slot before it
//!   accepts, so at the limit new clients wait in the kernel's backlog (as Kafka's
//!   acceptor blocks) rather than being accepted and dropped.
//! - At most `max_connections_per_ip` from one address: one more is closed at once.
//! - Request bytes: each connection may buffer [`FREE_BYTES_PER_CONNECTION`] on its own,
//!   enough for every ordinary request (metadata, fetch, heartbeats, small produces). A
//!   frame larger than that takes its whole declared size from the node-wide
//!   `queued_max_request_bytes` budget before more of it is read, all or nothing, and
//!   gives it back once handled. Half-sent or idle connections therefore hold at most
//!   their free allowance plus one frame each, never stall small requests, and large
//!   frames never deadlock each other holding parts of the budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ConnectionLimits;

/// Bytes a connection buffers without drawing on the node-wide budget.
pub const FREE_BYTES_PER_CONNECTION: usize = 64 * 1024;

/// The node's connection limits, shared by the acceptor and every connection.
pub struct Gate {
    limits: ConnectionLimits,
    slots: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    request_bytes: Arc<Semaphore>,
}

/// One admitted connection: its slot and its address's count, returned on drop.
pub struct Admission {
    _slot: OwnedSemaphorePermit,
    ip: IpAddr,
    gate: Arc<Gate>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut per_ip = self.gate.per_ip.lock().expect("per-ip lock");
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Gate {
    pub fn new(limits: ConnectionLimits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            per_ip: Mutex::new(HashMap::new()),
            request_bytes: Arc::new(Semaphore::new(limits.queued_max_request_bytes.min(Semaphore::MAX_PERMITS))),
        })
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Waits for a free connection slot (before accepting).
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        self.slots.clone().acquire_owned().await.expect("the connection semaphore is never closed")
    }

    /// Admits a connection from `ip` holding `slot`, or `None` when that address already
    /// holds `max_connections_per_ip`.
    pub fn admit(self: &Arc<Self>, slot: OwnedSemaphorePermit, ip: IpAddr) -> Option<Admission> {
        let mut per_ip = self.per_ip.lock().expect("per-ip lock");
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.limits.max_connections_per_ip {
            if *n == 0 {
                per_ip.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(Admission { _slot: slot, ip, gate: self.clone() })
    }

    /// Takes `n` bytes of the node-wide request budget (at most the whole budget), all at
    /// once, waiting for them.
    pub async fn request_bytes(&self, n: usize) -> OwnedSemaphorePermit {
        let n = n.min(self.limits.queued_max_request_bytes).min(Semaphore::MAX_PERMITS);
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.request_bytes.clone().acquire_many_owned(n).await.expect("the budget semaphore is never closed")
    }

    /// Bytes of the request budget not taken right now.
    pub fn request_bytes_available(&self) -> usize {
        self.request_bytes.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(max: usize, per_ip: usize, budget: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: max,
            max_connections_per_ip: per_ip,
            idle: Duration::from_secs(600),
            socket_request_max_bytes: budget,
            queued_max_request_bytes: budget,
        }
    }

    #[tokio::test]
    async fn slots_and_addresses_are_counted_and_returned() {
        let gate = Gate::new(limits(3, 2, 1024));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = gate.admit(gate.slot().await, a).unwrap();
        let _second = gate.admit(gate.slot().await, a).unwrap();
        assert!(gate.admit(gate.slot().await, a).is_none(), "a third from one address");
        let _other = gate.admit(gate.slot().await, b).unwrap();
        // Three held: the next slot waits until one closes.
        assert!(tokio::time::timeout(Duration::from_millis(50), gate.slot()).await.is_err());
        drop(first);
        let again = tokio::time::timeout(Duration::from_millis(50), gate.slot()).await.expect("a slot came back");
        assert!(gate.admit(again, a).is_some(), "the address's count came back too");
    }

    #[tokio::test]
    async fn the_request_budget_is_taken_whole_and_returned() {
        let gate = Gate::new(limits(10, 10, 1000));
        let big = gate.request_bytes(800).await;
        assert_eq!(gate.request_bytes_available(), 200);
        assert!(tokio::time::timeout(Duration::from_millis(50), gate.request_bytes(300)).await.is_err());
        drop(big);
        let all = gate.request_bytes(5000).await; // more than the budget: takes all of it
        assert_eq!(gate.request_bytes_available(), 0);
        drop(all);
        assert_eq!(gate.request_bytes_available(), 1000);
    }
}
