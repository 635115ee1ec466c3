//! Idempotency keys on SQLite: one row per (tenant, key); expired rows are
//! replaced, and a few are removed at each write.

use super::{SqliteBackend, ms, sql};
use crate::backend::{Result, from_doc, json};
use crate::traits::IdempotencyStore;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use taskhost_model::IdempotencyRecord;

/// Expired keys removed at each write, at most.
const SWEEP: i64 = 100;

#[async_trait::async_trait]
impl IdempotencyStore for SqliteBackend {
    async fn idempotency_put(
        &self,
        record: &IdempotencyRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>> {
        let doc = json(record)?;
        let r = record.clone();
        self.call(move |c| {
            let now = ms(now);
            c.execute(
                "DELETE FROM idempotency WHERE (tenant, key) IN
                   (SELECT tenant, key FROM idempotency WHERE expires_at <= ? LIMIT ?)",
                params![now, SWEEP],
            )
            .map_err(sql)?;
            let first: Option<String> = c
                .query_row(
                    "SELECT doc FROM idempotency WHERE tenant = ? AND key = ? AND expires_at > ?",
                    params![r.tenant, r.key, now],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql)?;
            if let Some(first) = first {
                return from_doc(&first).map(Some);
            }
            c.execute(
                "INSERT OR REPLACE INTO idempotency (tenant, key, expires_at, doc) VALUES (?, ?, ?, ?)",
                params![r.tenant, r.key, ms(r.expires_at), doc],
            )
            .map_err(sql)?;
            Ok(None)
        })
        .await
    }
}
