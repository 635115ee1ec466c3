//! What the intake remembers between calls: plugins it found lately, and
//! each tenant's queued count and stored executions for its quotas.
//!
//! The queued count comes from the store at most once a second
//! ([`QUEUE_COUNT_TTL`]) and is corrected by what this node queued and
//! claimed since, so taking in work costs no scan of the backlog; it may lag
//! by what other nodes did within that second. The stored count and bytes
//! come from the store at most every [`STORED_COUNT_TTL`] (an index scan of
//! the tenant's records), corrected by the records this node added and the
//! inputs of runs submitted through it (fires' and outputs' bytes show at
//! the next count).

use super::plugins::PluginsSeen;
use crate::Node;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use taskhost_store::StoreError;

/// How long a tenant's queued count from the store is trusted.
pub const QUEUE_COUNT_TTL: Duration = Duration::from_secs(1);

/// How long a tenant's stored count and bytes from the store are trusted.
pub const STORED_COUNT_TTL: Duration = Duration::from_secs(10);

/// A tenant's stored executions and their bytes as last counted, and how
/// many this node added since.
struct StoredCount {
    count: u64,
    bytes: u64,
    added: u64,
    /// Inputs of those added (their outputs are known once counted again).
    added_bytes: u64,
    counted_at: Instant,
}

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
    stored: Mutex<HashMap<String, StoredCount>>,
    /// Tenants whose stored count is being refreshed in the background.
    refreshing: Mutex<std::collections::HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Memory {
    pub(crate) fn new(plugins: NonZeroUsize) -> Memory {
        Memory {
            seen: Mutex::new(PluginsSeen::new(plugins)),
            counts: Mutex::new(HashMap::new()),
            stored: Mutex::new(HashMap::new()),
            refreshing: Mutex::default(),
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

    /// One of the tenant's executions was stored through this node, with
    /// an input of `bytes`.
    pub(super) fn stored(&self, tenant: &str, bytes: u64) {
        if let Some(s) = lock(&self.stored).get_mut(tenant) {
            s.added += 1;
            s.added_bytes += bytes;
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

    /// The tenant's stored executions and their bytes, for its storage
    /// quotas (see the module's documentation). With `wait` false (the
    /// fire path, which must not wait on an index scan), a stale or missing
    /// count is refreshed in the background and the last one (or none)
    /// answers now.
    pub(super) async fn stored_estimate(
        &self,
        tenant: &str,
        wait: bool,
    ) -> Result<(u64, u64), StoreError> {
        let memory = &self.inner.intake;
        let last = lock(&memory.stored).get(tenant).map(|s| {
            let fresh = s.counted_at.elapsed() < STORED_COUNT_TTL;
            (fresh, (s.count + s.added, s.bytes + s.added_bytes))
        });
        match last {
            Some((true, estimate)) => Ok(estimate),
            _ if wait => self.recount_stored(tenant).await,
            stale => {
                if lock(&memory.refreshing).insert(tenant.to_owned()) {
                    let (node, tenant) = (self.clone(), tenant.to_owned());
                    tokio::spawn(async move {
                        if let Err(e) = node.recount_stored(&tenant).await {
                            tracing::debug!(%tenant, error = %e, "could not count stored executions");
                        }
                        lock(&node.inner.intake.refreshing).remove(&tenant);
                    });
                }
                Ok(stale.map_or((0, 0), |(_, estimate)| estimate))
            }
        }
    }

    /// Counts the tenant's stored executions in the store, and keeps it.
    async fn recount_stored(&self, tenant: &str) -> Result<(u64, u64), StoreError> {
        let (count, bytes) = self.inner.store.stored_usage(tenant).await?;
        let mut stored = lock(&self.inner.intake.stored);
        // Bounded: tenants not seen for a while are counted afresh anyway.
        if stored.len() > 10_000 {
            stored.retain(|_, s| s.counted_at.elapsed() < STORED_COUNT_TTL);
        }
        let entry = StoredCount {
            count,
            bytes,
            added: 0,
            added_bytes: 0,
            counted_at: Instant::now(),
        };
        stored.insert(tenant.to_owned(), entry);
        Ok((count, bytes))
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
