//! Schedules and their fire ledger on MongoDB. A fire's record is its
//! execution document (or a `skipped` one) under the unique `fire_key`;
//! `fire_at`, `fate` and `fire_reason` are fields, so the ledger pages and
//! counts from one index.

use super::usage::Take;
use super::{MongoBackend, db_err, document, is_duplicate, ms, set_if};
use crate::PassWritten;
use crate::StoreError;
use crate::backend::{FireFilter, PageQuery, Result, ScheduleFilter, schedule_row};
use crate::traits::ScheduleStore;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use taskhost_model::quota::QuotaKind;
use taskhost_model::{Execution, Schedule};

#[async_trait::async_trait]
impl ScheduleStore for MongoBackend {
    async fn schedule_insert(&self, schedule: &Schedule, max: Option<u64>) -> Result<()> {
        // Counted first (see `usage`): of racing creates, only those that fit.
        let take = Take {
            kind: QuotaKind::Schedules,
            amount: 1,
            limit: max.unwrap_or(u64::MAX),
        };
        let row = document(&schedule_row(schedule)?);
        self.usage_take(&schedule.tenant, &[take]).await?;
        let written = match self.coll("schedules").insert_one(row).await {
            Ok(_) => return Ok(()),
            Err(e) if is_duplicate(&e) => {
                StoreError::Conflict(format!("schedule {:?}", schedule.name))
            }
            Err(e) => db_err(e),
        };
        self.usage_give(&schedule.tenant, &[(QuotaKind::Schedules, 1)])
            .await?;
        Err(written)
    }

    async fn schedule_get(&self, id: &str) -> Result<Option<Schedule>> {
        self.get("schedules", id).await
    }

    async fn schedule_replace(&self, schedule: &Schedule, expected_version: u64) -> Result<bool> {
        match self
            .replace("schedules", &schedule_row(schedule)?, expected_version)
            .await
        {
            Err(StoreError::Conflict(_)) => Err(StoreError::Conflict(format!(
                "schedule {:?}",
                schedule.name
            ))),
            other => other,
        }
    }

    async fn schedule_list(
        &self,
        tenant: &str,
        filter: &ScheduleFilter,
        page: &PageQuery,
    ) -> Result<Vec<Schedule>> {
        let mut query = doc! { "tenant": tenant };
        set_if(&mut query, "plugin_id", filter.plugin_id.clone());
        set_if(&mut query, "paused", filter.paused.map(i64::from));
        set_if(&mut query, "plugin_alias", filter.plugin_alias.clone());
        set_if(&mut query, "event_name", filter.event.clone());
        self.list("schedules", query, page).await
    }

    async fn schedule_delete(&self, id: &str) -> Result<bool> {
        let deleted = self
            .coll("schedules")
            .find_one_and_delete(doc! { "_id": id })
            .await
            .map_err(db_err)?;
        let Some(deleted) = deleted else {
            return Ok(false);
        };
        if let Ok(tenant) = deleted.get_str("tenant") {
            self.usage_give(tenant, &[(QuotaKind::Schedules, 1)])
                .await?;
        }
        Ok(true)
    }

    async fn schedules_due(
        &self,
        before: DateTime<Utc>,
        partitions: Option<&[u32]>,
        limit: u32,
    ) -> Result<Vec<Schedule>> {
        let mut filter = doc! { "next_fire_at": { "$ne": Bson::Null, "$lte": ms(before) } };
        if let Some(partitions) = partitions {
            filter.insert(
                "partition_no",
                doc! { "$in": partitions.iter().map(|p| i64::from(*p)).collect::<Vec<_>>() },
            );
        }
        self.find("schedules", filter, doc! { "next_fire_at": 1 }, limit)
            .await
    }

    async fn fires_record(&self, rows: &[Execution], moves: &[Schedule]) -> Result<PassWritten> {
        let inserted = self.fires_insert(rows).await?;
        let writes = moves.iter().map(|s| async move {
            let row = schedule_row(s)?;
            self.replace("schedules", &row, s.version.saturating_sub(1))
                .await
        });
        let moved = futures::future::join_all(writes)
            .await
            .into_iter()
            .collect::<Result<Vec<bool>>>()?;
        Ok(PassWritten { inserted, moved })
    }

    async fn fires_list(
        &self,
        tenant: &str,
        schedule_id: &str,
        filter: &FireFilter,
        page: &PageQuery,
    ) -> Result<Vec<Execution>> {
        let mut at = doc! { "$ne": Bson::Null };
        if let Some(v) = filter.since {
            at.insert("$gte", ms(v));
        }
        let mut until = filter.until.map(ms);
        if let Some(before) = &page.before {
            let before: i64 = before
                .parse()
                .map_err(|_| StoreError::backend(format!("invalid fire cursor {before:?}")))?;
            until = Some(until.map_or(before, |u| u.min(before)));
        }
        if let Some(v) = until {
            at.insert("$lt", v);
        }
        if !filter.at.is_empty() {
            let times: Vec<i64> = filter.at.iter().map(|t| ms(*t)).collect();
            at.insert("$in", times);
        }
        let mut query = doc! { "schedule_id": schedule_id, "fire_at": at, "tenant": tenant };
        if let Some(fate) = filter.fate {
            query.insert("fate", fate.as_str());
        }
        self.find("executions", query, doc! { "fire_at": -1 }, page.limit)
            .await
    }

    async fn fires_count(
        &self,
        schedule_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, Option<String>, u64)>> {
        let pipeline = vec![
            doc! { "$match": { "schedule_id": schedule_id, "fire_at": { "$gte": ms(since) },
            "fate": { "$ne": Bson::Null } } },
            doc! { "$group": { "_id": { "f": "$fate", "r": "$fire_reason" }, "n": { "$sum": 1 } } },
        ];
        let cursor = self
            .coll("executions")
            .aggregate(pipeline)
            .await
            .map_err(db_err)?;
        let groups: Vec<Document> = cursor.try_collect().await.map_err(db_err)?;
        let mut counts = Vec::new();
        for g in groups {
            let key = g
                .get_document("_id")
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let fate = key.get_str("f").unwrap_or_default().to_owned();
            let reason = key.get_str("r").ok().map(str::to_owned);
            let n = match g.get("n") {
                Some(Bson::Int32(n)) => *n as u64,
                Some(Bson::Int64(n)) => *n as u64,
                Some(Bson::Double(n)) => *n as u64,
                _ => 0,
            };
            counts.push((fate, reason, n));
        }
        Ok(counts)
    }
}
