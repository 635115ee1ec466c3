//! The audit log on MongoDB: one document per record, the record as its
//! JSON `doc`; a TTL index collects the expired.

use super::{MongoBackend, db_err};
use crate::backend::{PageQuery, Result, json};
use crate::traits::AuditStore;
use chrono::{DateTime, Utc};
use mongodb::bson::{self, doc};
use taskhost_model::audit::AuditRecord;

#[async_trait::async_trait]
impl AuditStore for MongoBackend {
    async fn audit_append(&self, r: &AuditRecord, _now: DateTime<Utc>) -> Result<()> {
        let expires_at = r.expires_at.timestamp_millis();
        let record = doc! {
            "_id": &r.id, "tenant": &r.tenant, "expires_at": expires_at,
            // Collected an hour after by the database's clock (skew margin).
            "expires_at_date": bson::DateTime::from_millis(expires_at.saturating_add(3_600_000)),
            "doc": json(r)?,
        };
        self.coll("audit")
            .insert_one(record)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn audit_list(&self, tenant: Option<&str>, page: &PageQuery) -> Result<Vec<AuditRecord>> {
        let mut filter = doc! {};
        super::set_if(&mut filter, "tenant", tenant);
        self.list("audit", filter, page).await
    }
}
