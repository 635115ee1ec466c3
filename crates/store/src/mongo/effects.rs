//! A run's result (or step) and its held kv writes on MongoDB (see
//! `taskhost_model::effects`): the record first, by compare-and-swap on its
//! version and fenced by the lease, then the kv writes.
//!
//! Not one multi-document transaction: SecantusDB, the MongoDB-wire server
//! the tests run on, keeps the locks of a transaction whose client was
//! killed before committing, so a node killed mid-commit would leave its
//! execution locked for good (the chaos suite found it; a two-line pymongo
//! script shows it). In this order a result is never saved with its writes
//! applied twice — a run whose record could not be written wrote nothing,
//! and runs again on a clean state — but a node killed between the record
//! and the writes loses those writes (at most once), as does a write that
//! fails four times, and a record the database applied whose answer was
//! lost (the run fails to record the step, and its next run replays it). The kv quota is checked
//! as the plugin writes; the commit does not check it again.

use super::MongoBackend;
use crate::backend::{ExecutionChange, Result};
use crate::traits::{ExecutionStore, StateStore};
use taskhost_model::Execution;
use taskhost_model::effects::KvEffects;

/// The pauses after a kv write that failed before it is tried again.
const WRITE_RETRIES: [std::time::Duration; 4] = [
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(2),
    std::time::Duration::ZERO,
];

impl MongoBackend {
    /// See [`crate::traits::ExecutionStore::execution_update_committing`].
    pub(super) async fn update_committing(
        &self,
        id: &str,
        change: ExecutionChange,
        effects: &KvEffects,
    ) -> Result<Option<Execution>> {
        let Some(done) = self.execution_update(id, change).await? else {
            return Ok(None);
        };
        let Some(ns) = &effects.namespace else {
            return Ok(Some(done));
        };
        for (key, value) in &effects.writes {
            let mut wrote = Ok(());
            // A write that fails is tried again (the record stands, so the
            // run will not write it again): a busy database loses nothing.
            for pause in WRITE_RETRIES {
                wrote = match value {
                    Some(v) => self.kv_set(&ns.tenant, &ns.plugin, key, v, None).await,
                    None => self.kv_delete(&ns.tenant, &ns.plugin, key).await.map(drop),
                };
                if wrote.is_ok() {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            if let Err(e) = wrote {
                // The record stands; this write is lost (see the module docs).
                tracing::error!(execution = %id, key = %key, error = %e,
                    "could not write a run's kv write after its record");
            }
        }
        Ok(Some(done))
    }
}
