//! Revoked tokens on SQLite: one row per (tenant, jti), gone once expired.

use super::{SqliteBackend, docs, ms, sql};
use crate::StoreError;
use crate::backend::{Result, json};
use crate::traits::TokenStore;
use chrono::{DateTime, Utc};
use rusqlite::params;
use taskhost_model::Revocation;
use taskhost_model::quota::{QuotaExceeded, QuotaKind};

#[async_trait::async_trait]
impl TokenStore for SqliteBackend {
    async fn token_revoke(
        &self,
        revocation: &Revocation,
        now: DateTime<Utc>,
        max: u64,
    ) -> Result<bool> {
        let doc = json(revocation)?;
        let r = revocation.clone();
        self.call(move |c| {
            c.execute(
                "DELETE FROM revocations WHERE tenant = ? AND expires_at <= ?",
                params![r.tenant, ms(now)],
            )
            .map_err(sql)?;
            let kept: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM revocations WHERE tenant = ?",
                    [&r.tenant],
                    |row| row.get(0),
                )
                .map_err(sql)?;
            QuotaExceeded::check(QuotaKind::RevokedTokens, max, kept as u64, 1)
                .map_err(StoreError::Quota)?;
            let added = c
                .execute(
                    "INSERT INTO revocations (tenant, jti, expires_at, doc) VALUES (?, ?, ?, ?)
                     ON CONFLICT (tenant, jti) DO NOTHING",
                    params![r.tenant, r.jti, ms(r.expires_at), doc],
                )
                .map_err(sql)?;
            Ok(added == 1)
        })
        .await
    }

    async fn tokens_revoked(
        &self,
        tenant: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Revocation>> {
        let tenant = tenant.map(str::to_owned);
        self.call_statement(move |c| {
            let now = ms(now);
            match &tenant {
                Some(t) => docs(
                    c,
                    "SELECT doc FROM revocations WHERE tenant = ? AND expires_at > ?
                     ORDER BY json_extract(doc, '$.revoked_at')",
                    &[t, &now],
                ),
                None => docs(
                    c,
                    "SELECT doc FROM revocations WHERE expires_at > ?
                     ORDER BY json_extract(doc, '$.revoked_at')",
                    &[&now],
                ),
            }
        })
        .await
    }
}
