//! The fire ledger and plugin aliases on MongoDB.
//!
//! A fire's record is its execution document (or a `skipped` one) under the
//! unique `fire_key`; `fire_at`, `fate` and `fire_reason` are fields so the
//! ledger pages and counts from one index. Aliases are documents with
//! `_id = tenant/name/alias`.

use super::errors::DUPLICATE_KEY;
use super::{MongoBackend, db_err, document, ms, record, set_if};
use crate::StoreError;
use crate::backend::{ExecutionFilter, FireFilter, PageQuery, Result, execution_row};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::ErrorKind;
use taskhost_model::{Execution, PluginAlias};

fn alias_id(tenant: &str, name: &str, alias: &str) -> String {
    format!("{tenant}/{name}/{alias}")
}

impl MongoBackend {
    /// Every row insert-if-absent, in one unordered `insert_many`: a row
    /// whose fire key is taken is refused on its own (duplicate key), the
    /// others are stored. A duplicate of a row's own `_id` is that very row,
    /// stored by an earlier try whose reply was lost: it counts as inserted.
    pub(super) async fn insert_fires(&self, rows: &[Execution]) -> Result<Vec<bool>> {
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

    /// `tenant`'s executions by filter, newest first; the records of fires
    /// that did not run (`skipped`) only when asked for by status.
    pub(super) async fn list_executions(
        &self,
        tenant: &str,
        filter: &ExecutionFilter,
        page: &PageQuery,
    ) -> Result<Vec<Execution>> {
        let mut query = doc! { "tenant": tenant };
        set_if(&mut query, "schedule_id", filter.schedule_id.clone());
        set_if(&mut query, "plugin_id", filter.plugin_id.clone());
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

    pub(super) async fn list_fires(
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

    pub(super) async fn count_fires(
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

    pub(super) async fn put_alias(&self, alias: &PluginAlias) -> Result<bool> {
        // A plugin being deleted is marked `deleting` before its delete
        // checks for aliases (see `plugin_delete`).
        let usable = || async {
            self.coll("plugins")
                .find_one(doc! { "_id": &alias.plugin_id, "deleting": { "$ne": true } })
                .await
                .map(|d| d.is_some())
                .map_err(db_err)
        };
        if !usable().await? {
            return Ok(false);
        }
        let json = serde_json::to_string(alias).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let id = alias_id(&alias.tenant, &alias.name, &alias.alias);
        let d = doc! {
            "_id": &id, "tenant": &alias.tenant, "name": &alias.name, "alias": &alias.alias,
            "plugin_id": &alias.plugin_id, "doc": json,
        };
        let aliases = self.coll("plugin_aliases");
        let before = aliases
            .find_one_and_replace(doc! { "_id": &id }, d)
            .upsert(true)
            .await
            .map_err(db_err)?;
        // A delete marked the plugin after the first look: put the alias
        // back as it was (unless another move has replaced this one since).
        if !usable().await? {
            let ours = doc! { "_id": &id, "plugin_id": &alias.plugin_id };
            match before {
                Some(previous) => aliases.replace_one(ours, previous).await.map(drop),
                None => aliases.delete_one(ours).await.map(drop),
            }
            .map_err(db_err)?;
            return Ok(false);
        }
        Ok(true)
    }

    pub(super) async fn delete_alias(&self, tenant: &str, name: &str, alias: &str) -> Result<bool> {
        self.delete(
            "plugin_aliases",
            doc! { "_id": alias_id(tenant, name, alias) },
        )
        .await
    }

    pub(super) async fn get_alias(
        &self,
        tenant: &str,
        name: &str,
        alias: &str,
    ) -> Result<Option<PluginAlias>> {
        self.get("plugin_aliases", &alias_id(tenant, name, alias))
            .await
    }

    pub(super) async fn list_aliases(&self, tenant: &str, name: &str) -> Result<Vec<PluginAlias>> {
        self.find(
            "plugin_aliases",
            doc! { "tenant": tenant, "name": name },
            doc! { "alias": 1 },
            1000,
        )
        .await
    }

    /// Why a plugin may not be deleted, if it may not (see
    /// [`crate::Backend::plugin_delete`]). Checked, then deleted: an
    /// alias moved onto the plugin between the two is not seen (MongoDB is
    /// used without multi-document transactions).
    pub(super) async fn plugin_in_use(&self, id: &str) -> Result<Option<String>> {
        let schedules = self.coll("schedules");
        if let Some(s) = schedules
            .find_one(doc! { "plugin_id": id, "plugin_alias": Bson::Null })
            .await
            .map_err(db_err)?
        {
            let name = s.get_str("name").unwrap_or("?");
            return Ok(Some(format!("the plugin is used by schedule {name:?}")));
        }
        if let Some(a) = self
            .coll("plugin_aliases")
            .find_one(doc! { "plugin_id": id })
            .await
            .map_err(db_err)?
        {
            let alias: PluginAlias = record(&a)?;
            return Ok(Some(format!(
                "alias {}@{} points to this plugin; move the alias first",
                alias.name, alias.alias
            )));
        }
        let Some(plugin) = self
            .get::<taskhost_model::PluginRecord>("plugins", id)
            .await?
        else {
            return Ok(None);
        };
        let newest: Vec<taskhost_model::PluginRecord> = self
            .find(
                "plugins",
                doc! { "tenant": &plugin.tenant, "name": &plugin.name },
                doc! { "_id": -1 },
                1,
            )
            .await?;
        let latest = format!("{}@{}", plugin.name, taskhost_model::LATEST);
        if newest.first().is_some_and(|p| p.id == id)
            && let Some(s) = schedules
                .find_one(doc! { "tenant": &plugin.tenant, "plugin_alias": &latest })
                .await
                .map_err(db_err)?
        {
            let name = s.get_str("name").unwrap_or("?");
            return Ok(Some(format!(
                "schedule {name:?} follows {latest}, and this is the newest version"
            )));
        }
        Ok(None)
    }
}
