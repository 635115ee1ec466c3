//! Executions and the queue on MongoDB: inserts under the unique fire key,
//! changes by compare-and-swap on the version (by `_id`, O(1) on its index),
//! claims as one such change each, all at once, and the change stream that
//! tells nodes of executions queued elsewhere.

use super::errors::DUPLICATE_KEY;
use super::queue::{queued, queued_now};
use super::{MongoBackend, db_err, document, is_duplicate, ms, record, set_if};
use crate::backend::{
    ClaimOrder, ExecutionChange, ExecutionFilter, PageQuery, Queued, Result, execution_row,
};
use crate::traits::ExecutionStore;
use crate::{Lease, StoreError};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::ErrorKind;
use std::time::Duration;
use taskhost_model::Execution;
use taskhost_model::effects::KvEffects;

#[async_trait::async_trait]
impl ExecutionStore for MongoBackend {
    async fn execution_insert(&self, execution: &Execution) -> Result<bool> {
        match self
            .coll("executions")
            .insert_one(document(&execution_row(execution)?))
            .await
        {
            Ok(_) => Ok(true),
            // A duplicate of its own `_id` is this very insert, retried by the
            // driver after a lost reply: it is stored. Another fire key's
            // owner is a different execution: not inserted.
            Err(e) if is_duplicate(&e) => Ok(self
                .coll("executions")
                .find_one(doc! { "_id": &execution.id })
                .await
                .map_err(db_err)?
                .is_some()),
            Err(e) => Err(db_err(e)),
        }
    }

    async fn execution_get(&self, id: &str) -> Result<Option<Execution>> {
        self.get("executions", id).await
    }

    async fn execution_get_many(&self, ids: &[String]) -> Result<Vec<Execution>> {
        let limit = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        let filter = doc! { "_id": { "$in": ids } };
        self.find("executions", filter, doc! { "_id": 1 }, limit)
            .await
    }

    async fn execution_update(
        &self,
        id: &str,
        mut change: ExecutionChange,
    ) -> Result<Option<Execution>> {
        // Compare-and-swap on the version, by `_id`.
        for _ in 0..crate::CAS_ATTEMPTS {
            let Some(mut execution) = self.get::<Execution>("executions", id).await? else {
                return Ok(None);
            };
            let expected = execution.version;
            if !change(&mut execution) {
                return Ok(None);
            }
            execution.version += 1;
            let row = execution_row(&execution)?;
            if self.replace("executions", &row, expected).await? {
                return Ok(Some(execution));
            }
            // The write may have landed with its reply lost (the driver then
            // retries and finds the version moved): if the stored record is
            // exactly ours, it is ours.
            if self.get::<Execution>("executions", id).await?.as_ref() == Some(&execution) {
                return Ok(Some(execution));
            }
        }
        Err(StoreError::Contention(format!("execution {id}")))
    }

    async fn execution_update_committing(
        &self,
        id: &str,
        change: ExecutionChange,
        effects: &KvEffects,
    ) -> Result<Option<Execution>> {
        self.update_committing(id, change, effects).await
    }

    async fn executions_claim(&self, ids: &[String], order: &ClaimOrder) -> Result<Vec<Execution>> {
        // One conditional update by `_id` each, all at once: O(1) on the
        // `_id` index (a sorted findAndModify scans on some servers). Runs
        // with a concurrency key are set aside: they need a slot first.
        let keyed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let claims = ids.iter().map(|id| {
            let (order, keyed) = (order.clone(), keyed.clone());
            self.execution_update(
                id,
                Box::new(move |e| {
                    if !crate::executions::has_key(e) {
                        return crate::executions::claim(e, &order);
                    }
                    if crate::executions::claimable(e, &order) {
                        keyed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(e.clone());
                    }
                    false
                }),
            )
        });
        let mut claimed = Vec::with_capacity(ids.len());
        let mut failure = None;
        for result in futures::future::join_all(claims).await {
            match result {
                Ok(e) => claimed.extend(e),
                Err(e) => failure = Some(e),
            }
        }
        let keyed = std::mem::take(&mut *keyed.lock().unwrap_or_else(|p| p.into_inner()));
        for e in keyed {
            match self.claim_keyed(&e, order).await {
                Ok(e) => claimed.extend(e),
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(e) if claimed.is_empty() => Err(e),
            _ => Ok(claimed),
        }
    }

    async fn execution_write_fenced(&self, e: &Execution, held: &Lease) -> Result<Option<u64>> {
        let (done, held) = (e.clone(), held.clone());
        let written = self
            .execution_update(
                &e.id,
                Box::new(move |current| {
                    if !crate::executions::holds_lease(current, &held) {
                        return false;
                    }
                    let version = current.version;
                    *current = done.clone();
                    current.version = version;
                    true
                }),
            )
            .await?;
        Ok(written.map(|e| e.version))
    }

    async fn execution_list(
        &self,
        tenant: &str,
        filter: &ExecutionFilter,
        page: &PageQuery,
    ) -> Result<Vec<Execution>> {
        let mut query = doc! { "tenant": tenant };
        set_if(&mut query, "schedule_id", filter.schedule_id.clone());
        set_if(&mut query, "plugin_id", filter.plugin_id.clone());
        set_if(&mut query, "waiting_event", filter.waiting_for.clone());
        match filter.status {
            Some(s) => query.insert("status", s.as_str()),
            None => query.insert("status", doc! { "$ne": "skipped" }),
        };
        let mut created = Document::new();
        set_if(&mut created, "$gte", filter.since.map(ms));
        set_if(&mut created, "$lt", filter.until.map(ms));
        if !created.is_empty() {
            query.insert("created_at", created);
        }
        self.list("executions", query, page).await
    }

    async fn executions_due_tenants(&self, before: DateTime<Utc>) -> Result<Vec<String>> {
        let filter = doc! { "status": "queued", "due_at": { "$lte": ms(before) } };
        let tenants = self
            .coll("executions")
            .distinct("tenant", filter)
            .await
            .map_err(db_err)?;
        Ok(tenants
            .into_iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect())
    }

    async fn executions_due(
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

    async fn execution_insert_many(&self, executions: &[Execution]) -> Result<()> {
        let docs = executions
            .iter()
            .map(|e| execution_row(e).map(|row| document(&row)))
            .collect::<Result<Vec<_>>>()?;
        match self.coll("executions").insert_many(docs).await {
            Ok(_) => Ok(()),
            // The driver retried the batch after a lost reply, and the
            // first try wrote some of it (ids are fresh: a duplicate `_id`
            // is our own): write the rest.
            Err(e) if is_duplicate(&e) => self.insert_the_rest(executions).await,
            Err(e) => Err(db_err(e)),
        }
    }

    async fn executions_queued_count(&self, tenant: &str) -> Result<u64> {
        self.coll("executions")
            .count_documents(doc! { "status": "queued", "tenant": tenant })
            .await
            .map_err(db_err)
    }

    async fn executions_stored(&self, tenant: &str) -> Result<(u64, u64)> {
        // `bytes` is written with every execution (see `execution_row`);
        // records from before it count as none.
        let pipeline = [
            doc! { "$match": { "tenant": tenant } },
            doc! { "$group": { "_id": Bson::Null, "n": { "$sum": 1 }, "bytes": { "$sum": "$bytes" } } },
        ];
        let mut cursor = self
            .coll("executions")
            .aggregate(pipeline)
            .await
            .map_err(db_err)?;
        let Some(total) = cursor.try_next().await.map_err(db_err)? else {
            return Ok((0, 0));
        };
        let number = |key: &str| match total.get(key) {
            Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
            Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
            Some(Bson::Double(n)) => n.max(0.0) as u64,
            _ => 0,
        };
        Ok((number("n"), number("bytes")))
    }

    async fn executions_delete_expired(&self, now: DateTime<Utc>, limit: u32) -> Result<u64> {
        let filter = doc! { "expires_at": { "$ne": Bson::Null, "$lte": ms(now) } };
        let cursor = self
            .coll("executions")
            .find(filter)
            .projection(doc! { "_id": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(db_err)?;
        let ids: Vec<Bson> = cursor
            .try_collect::<Vec<Document>>()
            .await
            .map_err(db_err)?
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let deleted = self
            .coll("executions")
            .delete_many(doc! { "_id": { "$in": ids } })
            .await
            .map_err(db_err)?;
        Ok(deleted.deleted_count)
    }

    async fn executions_expired(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Execution>> {
        let filter =
            doc! { "status": "running", "lease_expires_at": { "$ne": Bson::Null, "$lt": ms(now) } };
        self.find("executions", filter, doc! { "lease_expires_at": 1 }, limit)
            .await
    }

    async fn executions_active(&self, schedule_ids: &[String]) -> Result<Vec<Execution>> {
        let filter = doc! {
            "schedule_id": { "$in": schedule_ids },
            "status": { "$in": ["queued", "running"] },
        };
        self.find("executions", filter, doc! { "_id": -1 }, 0).await
    }

    async fn executions_notify_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<Execution>> {
        let filter = doc! {
            "notify_due_at": { "$ne": Bson::Null, "$lte": ms(now) },
            "tenant": { "$nin": skip },
        };
        self.find("executions", filter, doc! { "notify_due_at": 1 }, limit)
            .await
    }

    async fn watch_executions(&self, news: std::sync::Arc<crate::news::News>) -> bool {
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
}

impl MongoBackend {
    /// Inserts each fire record unless its fire key is taken (one unordered
    /// `insertMany`); per row, whether it was inserted (a row of ours found
    /// stored after a retried write counts as inserted).
    pub(super) async fn fires_insert(&self, rows: &[Execution]) -> Result<Vec<bool>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let docs = rows
            .iter()
            .map(|e| execution_row(e).map(|r| document(&r)))
            .collect::<Result<Vec<_>>>()?;
        let error = match self
            .coll("executions")
            .insert_many(docs)
            .ordered(false)
            .await
        {
            Ok(_) => return Ok(vec![true; rows.len()]),
            Err(e) => e,
        };
        let ErrorKind::InsertMany(failure) = error.kind.as_ref() else {
            return Err(db_err(error));
        };
        if failure.write_concern_error.is_some() {
            return Err(db_err(error));
        }
        let mut inserted = vec![true; rows.len()];
        let mut refused = Vec::new();
        for w in failure.write_errors.iter().flatten() {
            match inserted.get_mut(w.index) {
                Some(slot) if w.code == DUPLICATE_KEY => {
                    *slot = false;
                    refused.push(rows[w.index].id.clone());
                }
                _ => return Err(db_err(error)),
            }
        }
        if !refused.is_empty() {
            let ours: Vec<Document> = self
                .coll("executions")
                .find(doc! { "_id": { "$in": &refused } })
                .projection(doc! { "_id": 1 })
                .await
                .map_err(db_err)?
                .try_collect()
                .await
                .map_err(db_err)?;
            for d in ours {
                if let Some(i) = rows
                    .iter()
                    .position(|r| d.get_str("_id") == Ok(r.id.as_str()))
                {
                    inserted[i] = true;
                }
            }
        }
        Ok(inserted)
    }
}

impl MongoBackend {
    /// Inserts those of `executions` that are not stored yet; a duplicate
    /// among them (another fire key's owner) is a conflict.
    async fn insert_the_rest(&self, executions: &[Execution]) -> Result<()> {
        let ids: Vec<&str> = executions.iter().map(|e| e.id.as_str()).collect();
        let found: Vec<Document> = self
            .coll("executions")
            .find(doc! { "_id": { "$in": &ids } })
            .await
            .map_err(db_err)?
            .try_collect()
            .await
            .map_err(db_err)?;
        let mut stored = std::collections::HashSet::new();
        for d in &found {
            let theirs: Execution = record(d)?;
            let ours = executions.iter().find(|e| e.id == theirs.id);
            // Ours if it is what we wrote; a different record under the
            // same id is a real conflict, and the batch stops here.
            if !ours.is_some_and(|e| same_write(e, &theirs)) {
                return Err(StoreError::Conflict(
                    "an execution of the batch already exists".into(),
                ));
            }
            stored.insert(theirs.id);
        }
        let rest = executions
            .iter()
            .filter(|e| !stored.contains(&e.id))
            .map(|e| execution_row(e).map(|row| document(&row)))
            .collect::<Result<Vec<_>>>()?;
        if rest.is_empty() {
            return Ok(());
        }
        match self.coll("executions").insert_many(rest).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => Err(StoreError::Conflict(
                "an execution of the batch already exists".into(),
            )),
            Err(e) => Err(db_err(e)),
        }
    }
}

/// Whether a stored execution is the one `ours` wrote (not someone else's
/// under the same id): the fields fixed at creation agree.
fn same_write(ours: &Execution, stored: &Execution) -> bool {
    ours.tenant == stored.tenant
        && ours.created_at.timestamp_millis() == stored.created_at.timestamp_millis()
        && ours.plugin_id == stored.plugin_id
        && ours.policy.input == stored.policy.input
}
