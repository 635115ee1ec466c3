//! Revoked tokens on MongoDB: one document per (tenant, jti), unique, the
//! record as its JSON `doc`; a TTL index collects the expired. API keys:
//! one document per key (the tenant's count is checked before the insert,
//! as for hooks).

use super::{MongoBackend, db_err, document, is_duplicate};
use crate::StoreError;
use crate::backend::{Result, api_key_row, json};
use crate::traits::{ApiKeyStore, TokenStore};
use chrono::{DateTime, Utc};
use mongodb::bson::{self, doc};
use taskhost_model::Revocation;
use taskhost_model::apikey::ApiKeyRecord;
use taskhost_model::quota::{QuotaExceeded, QuotaKind};

#[async_trait::async_trait]
impl TokenStore for MongoBackend {
    async fn token_revoke(
        &self,
        revocation: &Revocation,
        now: DateTime<Utc>,
        max: u64,
    ) -> Result<bool> {
        let coll = self.coll("revocations");
        let (tenant, now_ms) = (&revocation.tenant, now.timestamp_millis());
        coll.delete_many(doc! { "tenant": tenant, "expires_at": { "$lte": now_ms } })
            .await
            .map_err(db_err)?;
        let kept = coll
            .count_documents(doc! { "tenant": tenant })
            .await
            .map_err(db_err)?;
        QuotaExceeded::check(QuotaKind::RevokedTokens, max, kept, 1).map_err(StoreError::Quota)?;
        let expires_at = revocation.expires_at.timestamp_millis();
        let record = doc! {
            "_id": taskhost_model::new_id(), "tenant": tenant, "jti": &revocation.jti,
            "expires_at": expires_at,
            // Collected an hour after by the database's clock (skew margin).
            "expires_at_date": bson::DateTime::from_millis(expires_at.saturating_add(3_600_000)),
            "doc": json(revocation)?,
        };
        match coll.insert_one(record).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate(&e) => Ok(false),
            Err(e) => Err(db_err(e)),
        }
    }

    async fn tokens_revoked(
        &self,
        tenant: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Revocation>> {
        let mut filter = doc! { "expires_at": { "$gt": now.timestamp_millis() } };
        super::set_if(&mut filter, "tenant", tenant);
        let mut found: Vec<Revocation> =
            self.find("revocations", filter, doc! {}, u32::MAX).await?;
        found.sort_by_key(|r| r.revoked_at);
        Ok(found)
    }
}

#[async_trait::async_trait]
impl ApiKeyStore for MongoBackend {
    async fn api_key_insert(&self, key: &ApiKeyRecord, max: u64) -> Result<()> {
        let coll = self.coll("api_keys");
        let kept = coll
            .count_documents(doc! { "tenant": &key.tenant })
            .await
            .map_err(db_err)?;
        QuotaExceeded::check(QuotaKind::ApiKeys, max, kept, 1).map_err(StoreError::Quota)?;
        coll.insert_one(document(&api_key_row(key)?))
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn api_key_get(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        self.get("api_keys", id).await
    }

    async fn api_key_list(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>> {
        let sort = doc! { "_id": -1 };
        self.find("api_keys", doc! { "tenant": tenant }, sort, u32::MAX)
            .await
    }

    async fn api_key_delete(&self, tenant: &str, id: &str) -> Result<bool> {
        self.delete("api_keys", doc! { "_id": id, "tenant": tenant })
            .await
    }

    async fn api_key_touch(&self, key: &ApiKeyRecord) -> Result<()> {
        let record = document(&api_key_row(key)?);
        self.coll("api_keys")
            .replace_one(doc! { "_id": &key.id }, record)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
