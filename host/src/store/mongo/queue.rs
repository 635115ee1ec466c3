//! The queue's queries on MongoDB: what a node's heap loads (ids, tenants,
//! priorities and due times, never whole documents) and batch inserts.

use super::{MongoBackend, db_err, document, is_duplicate};
use crate::model::Execution;
use crate::store::StoreError;
use crate::store::backend::{Queued, Result, execution_row};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};

impl MongoBackend {
    pub(super) async fn due(
        &self,
        tenant: &str,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Queued>> {
        let filter = doc! {
            "status": "queued", "tenant": tenant, "due_at": { "$lte": before.timestamp_millis() }
        };
        let cursor = self
            .coll("executions")
            .find(filter)
            .sort(doc! { "priority": -1, "due_at": 1, "_id": 1 })
            .projection(doc! { "_id": 1, "priority": 1, "due_at": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(db_err)?;
        let docs: Vec<Document> = cursor.try_collect().await.map_err(db_err)?;
        docs.iter()
            .map(|d| queued(d, tenant))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| StoreError::Corrupt("a queued execution without its fields".into()))
    }

    /// One `insertMany`: a single round trip. MongoDB does not make it all
    /// or nothing without a transaction; the executions it is used for
    /// (ad hoc runs) have unique ids as fire keys, so only an outage can
    /// stop it part way, and the error says so.
    pub(super) async fn insert_many(&self, executions: &[Execution]) -> Result<()> {
        let docs = executions
            .iter()
            .map(|e| execution_row(e).map(|row| document(&row)))
            .collect::<Result<Vec<_>>>()?;
        match self.coll("executions").insert_many(docs).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => Err(StoreError::Conflict(
                "an execution of the batch already exists".into(),
            )),
            Err(e) => Err(db_err(e)),
        }
    }
}

/// What a queue keeps, from a document with `_id`, `priority` and `due_at`.
pub(super) fn queued(d: &Document, tenant: &str) -> Option<Queued> {
    Some(Queued {
        id: d.get_str("_id").ok()?.to_owned(),
        tenant: tenant.to_owned(),
        priority: i32::try_from(d.get_i64("priority").ok()?).ok()?,
        due_at: DateTime::from_timestamp_millis(d.get_i64("due_at").ok()?)?,
    })
}
