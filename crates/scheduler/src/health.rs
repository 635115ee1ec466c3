//! Whether this node is ready, from what it already knows: its heartbeat is
//! a write to the store every third of the heartbeat TTL, so its outcome
//! says whether the store takes writes (a full disk, a lost database, a
//! read-only replica) without a probe touching the store on every call.
//! The count of live nodes `/metrics` shows is read with it.

use crate::Node;
use std::sync::Mutex;
use std::time::Instant;
use taskhost_store::StoreError;

/// The outcome of the last heartbeat write.
#[derive(Default)]
pub(crate) struct Health {
    last: Mutex<Option<Result<Instant, String>>>,
    /// Live nodes as of the last heartbeat (for `/metrics`).
    live_nodes: Mutex<Option<usize>>,
}

impl Health {
    /// Keeps the outcome of a heartbeat write.
    pub(crate) fn record<T>(&self, written: &Result<T, StoreError>) {
        let outcome = match written {
            Ok(_) => Ok(Instant::now()),
            Err(e) => Err(e.to_string()),
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
    }

    /// Keeps the count of live nodes read after a heartbeat.
    pub(crate) fn saw_live_nodes(&self, n: usize) {
        *self.live_nodes.lock().unwrap_or_else(|p| p.into_inner()) = Some(n);
    }
}

impl Node {
    /// The live nodes sharing the store, as of this node's last heartbeat
    /// (`None` before the first).
    pub fn live_nodes(&self) -> Option<usize> {
        *self
            .inner
            .health
            .live_nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// `Ok` if this node's last heartbeat was written to the store within
    /// the heartbeat TTL; else why not (for the log: the probe's answer
    /// stays terse).
    pub fn readiness(&self) -> Result<(), String> {
        let ttl = self.inner.config.heartbeat_ttl;
        let last = self
            .inner
            .health
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match last.as_ref() {
            None => Err("no heartbeat written yet".to_owned()),
            Some(Err(e)) => Err(format!("the last heartbeat could not be written: {e}")),
            Some(Ok(at)) if at.elapsed() > ttl => Err(format!(
                "no heartbeat written for {} s (the store does not answer)",
                at.elapsed().as_secs()
            )),
            Some(Ok(_)) => Ok(()),
        }
    }
}
