//! Hooks on MongoDB: one document per hook, the record as its JSON `doc`.
//! The per-tenant count is checked before the insert: racing creates of
//! one tenant may pass it by the number racing (an admin's action, rare).

use super::{MongoBackend, db_err, document};
use crate::StoreError;
use crate::backend::{Result, hook_row};
use crate::traits::HookStore;
use mongodb::bson::doc;
use taskhost_model::HookRecord;
use taskhost_model::quota::{QuotaExceeded, QuotaKind};

#[async_trait::async_trait]
impl HookStore for MongoBackend {
    async fn hook_insert(&self, hook: &HookRecord, max: u64) -> Result<()> {
        let coll = self.coll("hooks");
        let kept = coll
            .count_documents(doc! { "tenant": &hook.tenant })
            .await
            .map_err(db_err)?;
        QuotaExceeded::check(QuotaKind::Hooks, max, kept, 1).map_err(StoreError::Quota)?;
        coll.insert_one(document(&hook_row(hook)?))
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn hook_get(&self, id: &str) -> Result<Option<HookRecord>> {
        self.get("hooks", id).await
    }

    async fn hook_list(&self, tenant: &str) -> Result<Vec<HookRecord>> {
        self.find(
            "hooks",
            doc! { "tenant": tenant },
            doc! { "_id": -1 },
            u32::MAX,
        )
        .await
    }

    async fn hook_replace(&self, hook: &HookRecord, expected: u64) -> Result<bool> {
        self.replace("hooks", &hook_row(hook)?, expected).await
    }

    async fn hook_delete(&self, tenant: &str, id: &str) -> Result<bool> {
        self.delete("hooks", doc! { "_id": id, "tenant": tenant })
            .await
    }
}
