//! Hooks on SQLite: one row per hook, the record as its JSON `doc`.

use super::rows::{doc, docs, insert_row, replace_row};
use super::{SqliteBackend, sql};
use crate::StoreError;
use crate::backend::{Result, hook_row};
use crate::traits::HookStore;
use taskhost_model::HookRecord;
use taskhost_model::quota::{QuotaExceeded, QuotaKind};

#[async_trait::async_trait]
impl HookStore for SqliteBackend {
    async fn hook_insert(&self, hook: &HookRecord, max: u64) -> Result<()> {
        let row = hook_row(hook)?;
        let tenant = hook.tenant.clone();
        self.call(move |c| {
            let kept: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM hooks WHERE tenant = ?",
                    [&tenant],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            QuotaExceeded::check(QuotaKind::Hooks, max, kept as u64, 1)
                .map_err(StoreError::Quota)?;
            insert_row(c, "hooks", &row, "").map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn hook_get(&self, id: &str) -> Result<Option<HookRecord>> {
        let id = id.to_owned();
        self.call_statement(move |c| doc(c, "SELECT doc FROM hooks WHERE id = ?", &id))
            .await
    }

    async fn hook_list(&self, tenant: &str) -> Result<Vec<HookRecord>> {
        let tenant = tenant.to_owned();
        self.call_statement(move |c| {
            docs(
                c,
                "SELECT doc FROM hooks WHERE tenant = ? ORDER BY id DESC",
                &[&tenant],
            )
        })
        .await
    }

    async fn hook_replace(&self, hook: &HookRecord, expected: u64) -> Result<bool> {
        let row = hook_row(hook)?;
        self.call(move |c| replace_row(c, "hooks", &row, expected).map_err(sql))
            .await
    }

    async fn hook_delete(&self, tenant: &str, id: &str) -> Result<bool> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.call(move |c| {
            let n = c
                .execute(
                    "DELETE FROM hooks WHERE tenant = ? AND id = ?",
                    [&tenant, &id],
                )
                .map_err(sql)?;
            Ok(n == 1)
        })
        .await
    }
}
