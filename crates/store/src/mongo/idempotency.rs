//! Idempotency keys on MongoDB: one document per (tenant, key) under a
//! unique index, the record as its JSON `doc`; a TTL index collects the
//! expired, and an expired one found first is replaced.

use super::{MongoBackend, db_err, is_duplicate, record};
use crate::StoreError;
use crate::backend::{Result, json};
use crate::traits::IdempotencyStore;
use chrono::{DateTime, Utc};
use mongodb::bson::{self, doc};
use taskhost_model::IdempotencyRecord;

#[async_trait::async_trait]
impl IdempotencyStore for MongoBackend {
    async fn idempotency_put(
        &self,
        r: &IdempotencyRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>> {
        let coll = self.coll("idempotency");
        let expires_at = r.expires_at.timestamp_millis();
        let new = doc! {
            "_id": taskhost_model::new_id(), "tenant": &r.tenant, "key": &r.key,
            "expires_at": expires_at,
            // Collected an hour after by the database's clock (skew margin).
            "expires_at_date": bson::DateTime::from_millis(expires_at.saturating_add(3_600_000)),
            "doc": json(r)?,
        };
        // An expired first record is removed, then the insert is tried again.
        for _ in 0..2 {
            match coll.insert_one(new.clone()).await {
                Ok(_) => return Ok(None),
                Err(e) if is_duplicate(&e) => {}
                Err(e) => return Err(db_err(e)),
            }
            let found = coll
                .find_one(doc! { "tenant": &r.tenant, "key": &r.key })
                .await
                .map_err(db_err)?;
            let Some(found) = found else { continue };
            let first: IdempotencyRecord = record(&found)?;
            if first.expires_at > now {
                return Ok(Some(first));
            }
            let old = first.expires_at.timestamp_millis();
            coll.delete_one(doc! { "tenant": &r.tenant, "key": &r.key, "expires_at": old })
                .await
                .map_err(db_err)?;
        }
        Err(StoreError::Contention(format!("idempotency key {}", r.key)))
    }
}
