//! What the intake remembers between calls: plugins it found lately, and
//! each tenant's queued count for its quota.
//!
//! The count comes from the store at most once a second
//! ([`QUEUE_COUNT_TTL`]) and is corrected by what this node queued and
//! claimed since, so taking in work costs no scan of the backlog; it may lag
//! by what other nodes did within that second.

use super::plugins::PluginsSeen;
use crate::Node;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use taskhost_store::StoreError;

/// How long a tenant's queued count from the store is trusted.
pub const QUEUE_COUNT_TTL: Duration = Duration::from_secs(1);

/// A tenant's queued executions as last counted, and how this node changed
/// that since (queued +1, claimed -1).
struct QueueCount {
    queued: u64,
    delta: i64,
    counted_at: Instant,
}

pub(crate) struct Memory {
    seen: Mutex<PluginsSeen>,
    counts: Mutex<HashMap<String, QueueCount>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Memory {
    pub(crate) fn new(plugins: NonZeroUsize) -> Memory {
        Memory {
            seen: Mutex::new(PluginsSeen::new(plugins)),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// When `id` was last found in `tenant`.
    pub(super) fn seen_at(&self, tenant: &str, id: &str) -> Option<Instant> {
        let mut seen = lock(&self.seen);
        seen.get(id).filter(|(t, _)| t == tenant).map(|(_, at)| *at)
    }

    pub(super) fn seen(&self, tenant: &str, id: &str) {
        lock(&self.seen).put(id.to_owned(), (tenant.to_owned(), Instant::now()));
    }

    /// A plugin was deleted through this node.
    pub(crate) fn forget(&self, id: &str) {
        lock(&self.seen).pop(id);
    }

    fn count(&self, tenant: &str, by: i64) {
        if let Some(c) = lock(&self.counts).get_mut(tenant) {
            c.delta += by;
        }
    }
}

impl Node {
    /// The tenant's queued executions, for its quota (see the module's
    /// documentation).
    pub(super) async fn queued_estimate(&self, tenant: &str) -> Result<u64, StoreError> {
        let memory = &self.inner.intake;
        if let Some(c) = lock(&memory.counts).get(tenant)
            && c.counted_at.elapsed() < QUEUE_COUNT_TTL
        {
            return Ok(c.queued.saturating_add_signed(c.delta));
        }
        let queued = self.inner.store.queued_count(tenant).await?;
        let count = QueueCount {
            queued,
            delta: 0,
            counted_at: Instant::now(),
        };
        lock(&memory.counts).insert(tenant.to_owned(), count);
        Ok(queued)
    }

    /// One of the tenant's executions was queued on this node.
    pub(super) fn count_enqueued(&self, tenant: &str) {
        self.inner.intake.count(tenant, 1);
    }

    /// One of the tenant's executions left the queue on this node (claimed).
    pub(crate) fn count_dequeued(&self, tenant: &str) {
        self.inner.intake.count(tenant, -1);
    }
}
