//! Debounce (see `taskhost_model::flow`): a run with a debounce key is made
//! due a period later (in `records`), then becomes its key's pending run;
//! the run that was pending, if it still waits, ends `debounced` into it.
//!
//! The pending run is swapped by compare-and-swap in the store, so of runs
//! made at once on several nodes each replaces exactly one predecessor, and
//! one — the last swapped — is left to run.

use super::Node;
use std::time::Duration;
use taskhost_model::time::add_saturating;
use taskhost_model::{Execution, ExecutionStatus};
use taskhost_store::StoreError;

/// Tries at a key's swap before giving up (each lost try means another
/// node's run of the key got in first).
const TRIES: usize = 16;
/// How long a key's pending run is remembered past its due time.
const REMEMBER: Duration = Duration::from_secs(3600);

impl Node {
    /// Makes each of `made` that has a debounce key its key's pending run,
    /// folding the one it replaces.
    pub(super) async fn debounce(&self, made: &[Execution]) -> Result<(), StoreError> {
        for e in made {
            let Some(key) = e.policy.debounce.as_ref().and_then(|d| d.key.as_deref()) else {
                continue;
            };
            self.replace_pending(e, key).await?;
        }
        Ok(())
    }

    async fn replace_pending(&self, e: &Execution, key: &str) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let until = add_saturating(e.due_at, REMEMBER);
        for _ in 0..TRIES {
            let old = store.debounce_pending(&e.tenant, key).await?;
            if old.as_deref() == Some(e.id.as_str()) {
                return Ok(());
            }
            if store
                .debounce_swap(&e.tenant, key, old.as_deref(), &e.id, until)
                .await?
            {
                if let Some(old) = old {
                    self.fold(&e.tenant, &old, &e.id).await?;
                }
                return Ok(());
            }
        }
        Err(StoreError::Contention(format!("debounce key {key}")))
    }

    /// Ends `old` as debounced into `into`, if it still waits.
    async fn fold(&self, tenant: &str, old: &str, into: &str) -> Result<(), StoreError> {
        let now = self.inner.store.now();
        let into = into.to_owned();
        let folded = self
            .inner
            .store
            .modify_execution(old, move |e| {
                if e.status != ExecutionStatus::Queued {
                    return false;
                }
                e.finish(ExecutionStatus::Debounced, now);
                e.debounced_into = Some(into.clone());
                true
            })
            .await?;
        if folded.is_some() {
            self.count_dequeued(tenant);
            self.queue().forget(old);
        }
        Ok(())
    }
}
