//! Tenant secrets on SQLite: sealed values, never plain text.

use super::{SqliteBackend, ms, sql};
use crate::StoreError;
use crate::backend::Result;
use crate::traits::SecretStore;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use taskhost_model::SecretInfo;
use taskhost_model::quota::QuotaExceeded;

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[async_trait::async_trait]
impl SecretStore for SqliteBackend {
    async fn secret_put(
        &self,
        tenant: &str,
        name: &str,
        sealed: &[u8],
        now: DateTime<Utc>,
        max: u64,
    ) -> Result<SecretInfo> {
        let (t, n, v) = (tenant.to_owned(), name.to_owned(), sealed.to_vec());
        self.call(move |c| {
            let exists: Option<i64> = c
                .query_row(
                    "SELECT version FROM secrets WHERE tenant = ? AND name = ?",
                    params![t, n],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            if exists.is_none() {
                let kept: i64 = c
                    .query_row("SELECT COUNT(*) FROM secrets WHERE tenant = ?", [&t], |r| {
                        r.get(0)
                    })
                    .map_err(sql)?;
                QuotaExceeded::check(
                    taskhost_model::quota::QuotaKind::Secrets,
                    max,
                    kept as u64,
                    1,
                )
                .map_err(StoreError::Quota)?;
            }
            c.query_row(
                "INSERT INTO secrets (tenant, name, version, created_at, updated_at, value)
                 VALUES (?1, ?2, 1, ?3, ?3, ?4)
                 ON CONFLICT (tenant, name) DO UPDATE SET
                   version = version + 1, updated_at = ?3, value = excluded.value
                 RETURNING version, created_at, updated_at",
                params![t, n, ms(now), v],
                |r| {
                    Ok(SecretInfo {
                        name: n.clone(),
                        version: r.get::<_, i64>(0)? as u64,
                        created_at: time(r.get(1)?),
                        updated_at: time(r.get(2)?),
                    })
                },
            )
            .map_err(sql)
        })
        .await
    }

    async fn secret_list(&self, tenant: &str) -> Result<Vec<SecretInfo>> {
        let t = tenant.to_owned();
        self.call(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT name, version, created_at, updated_at FROM secrets
                     WHERE tenant = ? ORDER BY name",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map([&t], |r| {
                    Ok(SecretInfo {
                        name: r.get(0)?,
                        version: r.get::<_, i64>(1)? as u64,
                        created_at: time(r.get(2)?),
                        updated_at: time(r.get(3)?),
                    })
                })
                .map_err(sql)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql)
        })
        .await
    }

    async fn secret_get(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let (t, n) = (tenant.to_owned(), name.to_owned());
        self.call_statement(move |c| {
            c.query_row(
                "SELECT value FROM secrets WHERE tenant = ? AND name = ?",
                params![t, n],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
        })
        .await
    }

    async fn secret_delete(&self, tenant: &str, name: &str) -> Result<bool> {
        let (t, n) = (tenant.to_owned(), name.to_owned());
        self.call_statement(move |c| {
            Ok(c.execute(
                "DELETE FROM secrets WHERE tenant = ? AND name = ?",
                params![t, n],
            )
            .map_err(sql)?
                == 1)
        })
        .await
    }
}
