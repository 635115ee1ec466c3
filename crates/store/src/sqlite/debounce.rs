//! Debounce keys on SQLite: one row per (tenant, key), its pending run;
//! expired rows are replaced, and a few are removed at each write.

use super::{SqliteBackend, ms, sql};
use crate::backend::Result;
use crate::traits::DebounceStore;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

/// Expired keys removed at each write, at most.
const SWEEP: i64 = 100;

#[async_trait::async_trait]
impl DebounceStore for SqliteBackend {
    async fn debounce_pending(
        &self,
        tenant: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        let (tenant, key) = (tenant.to_owned(), key.to_owned());
        self.call_statement(move |c| {
            c.query_row(
                "SELECT pending FROM debounce WHERE tenant = ? AND key = ? AND expires_at > ?",
                params![tenant, key, ms(now)],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
        })
        .await
    }

    async fn debounce_swap(
        &self,
        tenant: &str,
        key: &str,
        expected: Option<&str>,
        new: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool> {
        let (tenant, key, new) = (tenant.to_owned(), key.to_owned(), new.to_owned());
        let expected = expected.map(str::to_owned);
        self.call(move |c| {
            let (now, until) = (ms(now), ms(expires_at));
            c.execute(
                "DELETE FROM debounce WHERE (tenant, key) IN
                   (SELECT tenant, key FROM debounce WHERE expires_at <= ? LIMIT ?)",
                params![now, SWEEP],
            )
            .map_err(sql)?;
            let changed = match &expected {
                Some(old) => c.execute(
                    "UPDATE debounce SET pending = ?, expires_at = ?
                     WHERE tenant = ? AND key = ? AND pending = ? AND expires_at > ?",
                    params![new, until, tenant, key, old, now],
                ),
                None => c.execute(
                    "INSERT INTO debounce (tenant, key, pending, expires_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (tenant, key) DO UPDATE SET pending = excluded.pending,
                       expires_at = excluded.expires_at
                     WHERE debounce.expires_at <= ?",
                    params![tenant, key, new, until, now],
                ),
            };
            Ok(changed.map_err(sql)? == 1)
        })
        .await
    }
}
