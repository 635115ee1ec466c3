//! The queue's queries on MongoDB: what a node's heap loads (ids, tenants,
//! priorities and due times, never whole documents), batch inserts, and the
//! change stream that tells nodes of executions queued elsewhere.

use super::{MongoBackend, db_err, document, is_duplicate};
use crate::StoreError;
use crate::backend::{Queued, Result, execution_row};
use crate::news::News;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use std::sync::Arc;
use std::time::Duration;
use taskhost_model::Execution;

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

    /// Watches the executions: each one made or changed to `queued` (an
    /// insert or a replacement, which carry the whole document) is news for
    /// the nodes. Returns false if the server has no change streams.
    pub(super) async fn watch_queued(&self, news: Arc<News>) -> bool {
        let mut stream = match self.coll("executions").watch().await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::info!(error = %e, "change streams unavailable; idle nodes poll at their refill interval");
                return false;
            }
        };
        let executions = self.coll("executions");
        tokio::spawn(async move {
            // Reopened after an outage; meanwhile nodes poll at their refill
            // interval.
            let mut backoff = Duration::from_secs(1);
            loop {
                match stream.try_next().await {
                    Ok(Some(event)) => {
                        if let Some(q) = event.full_document.as_ref().and_then(queued_now) {
                            news.queued(q);
                        }
                        backoff = Duration::from_secs(1);
                        continue;
                    }
                    Ok(None) => tracing::info!("change stream closed; reopening"),
                    Err(e) => tracing::warn!(error = %e, "change stream failed; reopening"),
                }
                stream = loop {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    if let Ok(stream) = executions.watch().await {
                        break stream;
                    }
                };
                // Whatever was queued while the stream was down.
                news.missed();
            }
        });
        true
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

/// What a queue keeps of a whole execution document, if it is queued.
fn queued_now(d: &Document) -> Option<Queued> {
    if d.get_str("status").ok()? != "queued" {
        return None;
    }
    queued(d, d.get_str("tenant").ok()?)
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
