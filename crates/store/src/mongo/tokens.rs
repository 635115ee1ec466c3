//! Revoked tokens on MongoDB: one document per (tenant, jti), unique, the
//! record as its JSON `doc`; a TTL index collects the expired.

use super::{MongoBackend, db_err, is_duplicate};
use crate::StoreError;
use crate::backend::{Result, json};
use crate::traits::TokenStore;
use chrono::{DateTime, Utc};
use mongodb::bson::{self, doc};
use taskhost_model::Revocation;
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
