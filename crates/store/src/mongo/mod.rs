//! The cluster store: MongoDB, through the official driver.
//!
//! Documents mirror the SQLite rows ([`super::backend::Row`]): `_id`, the
//! indexed fields (times as Unix milliseconds), and the record as JSON in
//! `doc`. Indexes are made at start-up: a unique `fire_key` (a schedule fire
//! materializes once however many nodes race), TTL indexes that garbage-collect
//! expired locks and heartbeats, and the query indexes.
//!
//! Claims and every other execution change are a conditional `replace_one` by
//! `_id` and version, never a sorted `findAndModify` across the collection.
//! Lock correctness never waits for the TTL monitor: every acquire compares
//! `expires_at` with now. Writes are journaled unless the URL says otherwise.
//! Plugin wasm is kept in 1 MiB chunks, so the 16 MB document limit does not
//! cap plugin size.

mod errors;
mod fires;
mod indexes;
mod kv;
mod plugins;
mod queue;
mod secrets;

use super::StoreError;
use super::backend::{
    Backend, ExecutionFilter, Field, FireFilter, PageQuery, PluginFilter, Queued, Result, Row,
    ScheduleFilter, Usage, execution_row, from_doc, node_row, schedule_row,
};
use chrono::{DateTime, Utc};
use errors::{db_err, is_duplicate};
use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::options::{ClientOptions, WriteConcern};
use mongodb::{Client, Collection, Database};
use serde::de::DeserializeOwned;
use std::time::Duration;
use taskhost_model::kv::KvQuota;
use taskhost_model::{Execution, NodeInfo, PluginAlias, PluginRecord, Schedule, SecretInfo};

/// The MongoDB backend.
pub struct MongoBackend {
    db: Database,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A row as a document: `_id`, its fields, and `doc`.
fn document(row: &Row) -> Document {
    let mut d = doc! { "_id": &row.id };
    for (name, value) in &row.fields {
        let value = match value {
            Field::Text(t) => Bson::String(t.clone()),
            Field::Int(i) => Bson::Int64(*i),
            Field::Null => Bson::Null,
        };
        d.insert(*name, value);
    }
    // TTL indexes need dates: finished executions are collected by one. The
    // TTL monitor runs on the database's wall clock, the sweeper on the
    // node's; an expiry already past by the wall clock (a node whose clock is
    // behind, or a test clock) is left to the sweeper, so the monitor never
    // removes an execution before its retention is over by its node's clock.
    if let Some((_, Field::Int(at))) = row.fields.iter().find(|(n, _)| *n == "expires_at")
        && *at > chrono::Utc::now().timestamp_millis()
    {
        d.insert("expires_at_date", bson::DateTime::from_millis(*at));
    }
    d.insert("doc", &row.doc);
    d
}

/// When the TTL monitor (on the database's wall clock) may collect a lock
/// held from `now` until `expires_at` by the node's clock: as long after the
/// wall clock's now. Never earlier, so a node whose clock is behind (or a
/// test clock) does not lose a held lock to the monitor; correctness never
/// waits for it (every acquire compares `expires_at` with now).
fn wall_expiry(now: DateTime<Utc>, expires_at: DateTime<Utc>) -> bson::DateTime {
    let held = (expires_at - now).num_milliseconds().max(0);
    bson::DateTime::from_millis(chrono::Utc::now().timestamp_millis().saturating_add(held))
}

fn record<T: DeserializeOwned>(d: &Document) -> Result<T> {
    from_doc(
        d.get_str("doc")
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
    )
}

impl MongoBackend {
    /// Connects, checks the server answers, and makes the indexes.
    pub async fn connect(url: &str) -> Result<Self> {
        let mut options = ClientOptions::parse(url)
            .await
            .map_err(|e| StoreError::BadUrl {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        if options.write_concern.is_none() {
            options.write_concern = Some(WriteConcern::builder().journal(true).build());
        }
        options.app_name.get_or_insert_with(|| "taskhost".into());
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(10));
        let client = Client::with_options(options).map_err(db_err)?;
        let db = client
            .default_database()
            .unwrap_or_else(|| client.database("taskhost"));
        let backend = MongoBackend { db };
        backend.ping().await?;
        backend.create_indexes().await?;
        Ok(backend)
    }

    fn coll(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    async fn find<T: DeserializeOwned>(
        &self,
        coll: &str,
        filter: Document,
        sort: Document,
        limit: u32,
    ) -> Result<Vec<T>> {
        let cursor = self
            .coll(coll)
            .find(filter)
            .sort(sort)
            .limit(i64::from(limit))
            .await
            .map_err(db_err)?;
        let docs: Vec<Document> = cursor.try_collect().await.map_err(db_err)?;
        docs.iter().map(record).collect()
    }

    async fn get<T: DeserializeOwned>(&self, coll: &str, id: &str) -> Result<Option<T>> {
        let found = self
            .coll(coll)
            .find_one(doc! { "_id": id })
            .await
            .map_err(db_err)?;
        found.as_ref().map(record).transpose()
    }

    async fn replace(&self, coll: &str, row: &Row, expected: u64) -> Result<bool> {
        let filter = doc! { "_id": &row.id, "version": expected as i64 };
        let result = match self.coll(coll).replace_one(filter, document(row)).await {
            Ok(result) => result,
            // A unique index other than `_id` refused the new version.
            Err(e) if is_duplicate(&e) => {
                return Err(StoreError::Conflict(format!("a record in {coll}")));
            }
            Err(e) => return Err(db_err(e)),
        };
        Ok(result.matched_count == 1)
    }

    async fn delete(&self, coll: &str, filter: Document) -> Result<bool> {
        Ok(self
            .coll(coll)
            .delete_one(filter)
            .await
            .map_err(db_err)?
            .deleted_count
            == 1)
    }

    async fn list<T: DeserializeOwned>(
        &self,
        coll: &str,
        mut filter: Document,
        page: &PageQuery,
    ) -> Result<Vec<T>> {
        if let Some(before) = &page.before {
            filter.insert("_id", doc! { "$lt": before });
        }
        self.find(coll, filter, doc! { "_id": -1 }, page.limit)
            .await
    }
}

/// A `{ field: value }` filter entry only when the value is given.
fn set_if<T: Into<Bson>>(filter: &mut Document, key: &str, value: Option<T>) {
    if let Some(value) = value {
        filter.insert(key, value.into());
    }
}

#[async_trait::async_trait]
impl Backend for MongoBackend {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    async fn ping(&self) -> Result<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map(drop)
            .map_err(db_err)
    }

    async fn plugin_insert(&self, plugin: &PluginRecord, wasm: &[u8]) -> Result<()> {
        self.insert_plugin(plugin, wasm).await
    }

    async fn plugin_get(&self, id: &str) -> Result<Option<PluginRecord>> {
        self.get("plugins", id).await
    }

    async fn plugin_wasm(&self, id: &str) -> Result<Option<Vec<u8>>> {
        self.wasm_chunks(id).await
    }

    async fn plugin_list(
        &self,
        tenant: &str,
        filter: &PluginFilter,
        page: &PageQuery,
    ) -> Result<Vec<PluginRecord>> {
        let mut query = doc! { "tenant": tenant };
        set_if(&mut query, "name", filter.name.clone());
        set_if(&mut query, "version", filter.version.clone());
        self.list("plugins", query, page).await
    }

    async fn alias_put(&self, alias: &PluginAlias) -> Result<bool> {
        self.put_alias(alias).await
    }

    async fn alias_delete(&self, tenant: &str, name: &str, alias: &str) -> Result<bool> {
        self.delete_alias(tenant, name, alias).await
    }

    async fn alias_get(
        &self,
        tenant: &str,
        name: &str,
        alias: &str,
    ) -> Result<Option<PluginAlias>> {
        self.get_alias(tenant, name, alias).await
    }

    async fn alias_list(&self, tenant: &str, name: &str) -> Result<Vec<PluginAlias>> {
        self.list_aliases(tenant, name).await
    }

    async fn plugin_delete(&self, id: &str) -> Result<bool> {
        // Marked first: an alias moved onto it from now on sees the mark and
        // takes itself back; one moved before is seen by the check.
        let plugins = self.coll("plugins");
        plugins
            .update_one(doc! { "_id": id }, doc! { "$set": { "deleting": true } })
            .await
            .map_err(db_err)?;
        if let Some(why) = self.plugin_in_use(id).await? {
            plugins
                .update_one(doc! { "_id": id }, doc! { "$unset": { "deleting": "" } })
                .await
                .map_err(db_err)?;
            return Err(StoreError::InUse(why));
        }
        let deleted = self.delete("plugins", doc! { "_id": id }).await?;
        self.coll("plugin_chunks")
            .delete_many(doc! { "plugin_id": id })
            .await
            .map_err(db_err)?;
        Ok(deleted)
    }

    async fn schedule_insert(&self, schedule: &Schedule) -> Result<()> {
        match self
            .coll("schedules")
            .insert_one(document(&schedule_row(schedule)?))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => Err(StoreError::Conflict(format!(
                "schedule {:?}",
                schedule.name
            ))),
            Err(e) => Err(db_err(e)),
        }
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
        self.list("schedules", query, page).await
    }

    async fn schedule_delete(&self, id: &str) -> Result<bool> {
        self.delete("schedules", doc! { "_id": id }).await
    }

    async fn schedules_due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Schedule>> {
        let filter = doc! { "next_fire_at": { "$ne": Bson::Null, "$lte": ms(now) } };
        self.find("schedules", filter, doc! { "next_fire_at": 1 }, limit)
            .await
    }

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

    async fn fires_insert(&self, rows: &[Execution]) -> Result<Vec<bool>> {
        self.insert_fires(rows).await
    }

    async fn fires_list(
        &self,
        tenant: &str,
        schedule_id: &str,
        filter: &FireFilter,
        page: &PageQuery,
    ) -> Result<Vec<Execution>> {
        self.list_fires(tenant, schedule_id, filter, page).await
    }

    async fn fires_count(
        &self,
        schedule_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, Option<String>, u64)>> {
        self.count_fires(schedule_id, since).await
    }

    async fn execution_replace(
        &self,
        execution: &Execution,
        expected_version: u64,
    ) -> Result<bool> {
        self.replace("executions", &execution_row(execution)?, expected_version)
            .await
    }

    async fn execution_list(
        &self,
        tenant: &str,
        filter: &ExecutionFilter,
        page: &PageQuery,
    ) -> Result<Vec<Execution>> {
        self.list_executions(tenant, filter, page).await
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
        self.due(tenant, before, limit).await
    }

    async fn execution_insert_many(&self, executions: &[Execution]) -> Result<()> {
        self.insert_many(executions).await
    }

    async fn executions_queued_count(&self, tenant: &str) -> Result<u64> {
        self.coll("executions")
            .count_documents(doc! { "status": "queued", "tenant": tenant })
            .await
            .map_err(db_err)
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

    async fn tenant_usage(&self, tenant: &str) -> Result<Usage> {
        let plugins: Vec<taskhost_model::PluginRecord> = self
            .find(
                "plugins",
                doc! { "tenant": tenant },
                doc! { "_id": 1 },
                1_000_000,
            )
            .await?;
        let schedules = self
            .coll("schedules")
            .count_documents(doc! { "tenant": tenant })
            .await
            .map_err(db_err)?;
        Ok(Usage {
            plugins: plugins.len() as u64,
            plugin_bytes: plugins.iter().map(|p| p.size).sum(),
            schedules,
        })
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
    ) -> Result<Vec<Execution>> {
        let filter = doc! { "notify_due_at": { "$ne": Bson::Null, "$lte": ms(now) } };
        self.find("executions", filter, doc! { "notify_due_at": 1 }, limit)
            .await
    }

    async fn lock_acquire(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool> {
        // Matches a lock that is free to take; if none matches, the upsert
        // inserts one, which fails on `_id` when someone else holds it.
        let filter = doc! { "_id": name, "$or": [ { "expires_at": { "$lte": ms(now) } }, { "owner": owner } ] };
        let update = doc! { "$set": {
            "owner": owner,
            "expires_at": ms(expires_at),
            "expires_at_date": wall_expiry(now, expires_at),
        } };
        match self
            .coll("locks")
            .update_one(filter, update)
            .upsert(true)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate(&e) => Ok(false),
            Err(e) => Err(db_err(e)),
        }
    }

    async fn lock_renew(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool> {
        let update = doc! { "$set": {
            "expires_at": ms(expires_at),
            "expires_at_date": wall_expiry(now, expires_at),
        } };
        let result = self
            .coll("locks")
            .update_one(doc! { "_id": name, "owner": owner }, update)
            .await
            .map_err(db_err)?;
        Ok(result.matched_count == 1)
    }

    async fn lock_release(&self, name: &str, owner: &str) -> Result<bool> {
        self.delete("locks", doc! { "_id": name, "owner": owner })
            .await
    }

    async fn kv_get(&self, tenant: &str, plugin: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.kv_read(tenant, plugin, key).await
    }

    async fn kv_set(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
        value: &[u8],
        quota: Option<KvQuota>,
    ) -> Result<()> {
        self.kv_write(tenant, plugin, key, value, quota).await
    }

    async fn kv_delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<bool> {
        self.kv_remove(tenant, plugin, key).await
    }

    async fn node_upsert(&self, node: &NodeInfo) -> Result<bool> {
        let mut fields = document(&node_row(node)?);
        fields.remove("_id");
        fields.insert(
            "expires_at_date",
            bson::DateTime::from_millis(ms(node.expires_at)),
        );
        // `$set` leaves `draining` alone: only a drain request sets it.
        let updated = self
            .coll("nodes")
            .find_one_and_update(doc! { "_id": &node.id }, doc! { "$set": fields })
            .upsert(true)
            .return_document(mongodb::options::ReturnDocument::After)
            .await
            .map_err(db_err)?;
        Ok(updated.is_some_and(|d| d.get_bool("draining").unwrap_or(false)))
    }

    async fn nodes_alive(&self, now: DateTime<Utc>) -> Result<Vec<NodeInfo>> {
        let cursor = self
            .coll("nodes")
            .find(doc! { "expires_at": { "$gt": ms(now) } })
            .sort(doc! { "_id": 1 })
            .await
            .map_err(db_err)?;
        let docs: Vec<Document> = cursor.try_collect().await.map_err(db_err)?;
        docs.iter()
            .map(|d| {
                let mut node: NodeInfo = record(d)?;
                node.draining = d.get_bool("draining").unwrap_or(false);
                Ok(node)
            })
            .collect()
    }

    async fn secret_put(
        &self,
        tenant: &str,
        name: &str,
        sealed: &[u8],
        now: DateTime<Utc>,
        max: u64,
    ) -> Result<SecretInfo> {
        self.put_secret(tenant, name, sealed, now, max).await
    }

    async fn secret_list(&self, tenant: &str) -> Result<Vec<SecretInfo>> {
        self.list_secrets(tenant).await
    }

    async fn secret_get(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>> {
        self.get_secret(tenant, name).await
    }

    async fn secret_delete(&self, tenant: &str, name: &str) -> Result<bool> {
        self.delete_secret(tenant, name).await
    }

    async fn node_drain(&self, id: &str) -> Result<bool> {
        let result = self
            .coll("nodes")
            .update_one(doc! { "_id": id }, doc! { "$set": { "draining": true } })
            .await
            .map_err(db_err)?;
        Ok(result.matched_count == 1)
    }

    async fn node_remove(&self, id: &str) -> Result<bool> {
        self.delete("nodes", doc! { "_id": id }).await
    }

    async fn watch_executions(&self, news: std::sync::Arc<super::news::News>) -> bool {
        self.watch_queued(news).await
    }
}
