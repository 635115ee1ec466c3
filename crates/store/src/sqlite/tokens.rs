//! Revoked tokens on SQLite: one row per (tenant, jti), gone once expired;
//! API keys: one row per key, the record as its JSON `doc`.

use super::rows::{doc, insert_row};
use super::{SqliteBackend, docs, ms, sql};
use crate::StoreError;
use crate::backend::{Result, api_key_row, json};
use crate::traits::{ApiKeyStore, TokenStore};
use chrono::{DateTime, Utc};
use rusqlite::params;
use taskhost_model::Revocation;
use taskhost_model::apikey::ApiKeyRecord;
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

#[async_trait::async_trait]
impl ApiKeyStore for SqliteBackend {
    async fn api_key_insert(&self, key: &ApiKeyRecord, max: u64) -> Result<()> {
        let row = api_key_row(key)?;
        let tenant = key.tenant.clone();
        self.call(move |c| {
            let kept: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM api_keys WHERE tenant = ?",
                    [&tenant],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            QuotaExceeded::check(QuotaKind::ApiKeys, max, kept as u64, 1)
                .map_err(StoreError::Quota)?;
            insert_row(c, "api_keys", &row, "").map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn api_key_get(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let id = id.to_owned();
        self.call_statement(move |c| doc(c, "SELECT doc FROM api_keys WHERE id = ?", &id))
            .await
    }

    async fn api_key_list(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>> {
        let tenant = tenant.to_owned();
        self.call_statement(move |c| {
            docs(
                c,
                "SELECT doc FROM api_keys WHERE tenant = ? ORDER BY id DESC",
                &[&tenant],
            )
        })
        .await
    }

    async fn api_key_delete(&self, tenant: &str, id: &str) -> Result<bool> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.call(move |c| {
            let n = c
                .execute(
                    "DELETE FROM api_keys WHERE tenant = ? AND id = ?",
                    [&tenant, &id],
                )
                .map_err(sql)?;
            Ok(n == 1)
        })
        .await
    }

    async fn api_key_touch(&self, key: &ApiKeyRecord) -> Result<()> {
        let (id, doc) = (key.id.clone(), json(key)?);
        self.call(move |c| {
            c.execute("UPDATE api_keys SET doc = ? WHERE id = ?", [&doc, &id])
                .map_err(sql)?;
            Ok(())
        })
        .await
    }
}
