//! Retention: finished executions (with their outputs and logs) are removed
//! once their retention is over.
//!
//! An execution's `expires_at` is set when it ends (`finished_at` + its
//! retention: the schedule's, or the node's default). Any node may sweep, but
//! only the holder of the store's `retention-sweeper` lock does, so two nodes
//! never sweep at once; the sweeper deletes in batches and renews the lock
//! between them. On MongoDB a TTL index also collects what expired, but
//! nothing waits for it: the sweeper is what removes executions on time.

use super::Node;
use std::time::Duration;
use taskhost_store::StoreError;

/// The lock that makes one node the sweeper.
pub const SWEEPER_LOCK: &str = "retention-sweeper";
/// How long the lock holds between renewals.
const LOCK_TTL: Duration = Duration::from_secs(60);
/// Executions deleted per batch (one store round trip each).
const BATCH: u32 = 1000;
/// Batches per sweep, so that one sweep never runs long.
const MAX_BATCHES: usize = 100;

impl Node {
    /// Removes expired executions if this node can take the sweeper lock.
    /// Returns how many it removed, or `None` when another node holds the lock.
    pub async fn sweep_expired(&self) -> Result<Option<u64>, StoreError> {
        let store = &self.inner.store;
        let owner = &self.inner.config.node_id;
        if !store.acquire_lock(SWEEPER_LOCK, owner, LOCK_TTL).await? {
            return Ok(None);
        }
        let mut removed = 0;
        let mut result = Ok(());
        for _ in 0..MAX_BATCHES {
            match store.delete_expired(BATCH).await {
                Ok(n) => {
                    removed += n;
                    if n < u64::from(BATCH) {
                        break;
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            match store.renew_lock(SWEEPER_LOCK, owner, LOCK_TTL).await {
                Ok(true) => {}
                // Lost it (this node stalled past the lock): stop, another sweeps.
                Ok(false) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let _ = store.release_lock(SWEEPER_LOCK, owner).await;
        self.inner.metrics.swept(removed);
        result.map(|()| Some(removed))
    }
}
