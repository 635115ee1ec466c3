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

mod audit;
mod cluster;
mod debounce;
mod effects;
mod errors;
mod executions;
mod hooks;
mod idempotency;
mod indexes;
mod kv;
mod plugins;
mod queue;
mod schedules;
mod secrets;
mod slots;
mod tokens;
mod usage;

use super::StoreError;
use super::backend::{Field, PageQuery, Result, Row, from_doc};
use crate::traits::Backend;
use chrono::{DateTime, Utc};
use errors::{db_err, is_duplicate};
use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::options::{ClientOptions, WriteConcern};
use mongodb::{Client, Collection, Database};
use serde::de::DeserializeOwned;
use std::time::Duration;

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

/// The store format this code writes. Raised when a change means older
/// nodes must not open the database any more (they refuse a higher one).
pub const FORMAT: i64 = 1;

impl MongoBackend {
    /// Connects, checks the server answers and the store's format, and makes
    /// the indexes.
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
        backend.check_format().await?;
        backend.create_indexes().await?;
        backend.fill_partitions().await?;
        backend.fill_waiting_events().await?;
        Ok(backend)
    }

    /// Refuses a database a newer taskhost wrote (its store format is
    /// higher than [`FORMAT`]); marks an older one as this format.
    async fn check_format(&self) -> Result<()> {
        let meta = self.coll("meta");
        let found = meta
            .find_one(doc! { "_id": "format" })
            .await
            .map_err(db_err)?;
        let stored = found.and_then(|d| d.get_i64("version").ok()).unwrap_or(0);
        if stored > FORMAT {
            return Err(StoreError::backend(format!(
                "the database has store format {stored}, newer than this taskhost knows ({FORMAT}); upgrade taskhost"
            )));
        }
        if stored < FORMAT {
            meta.update_one(
                doc! { "_id": "format" },
                doc! { "$max": { "version": FORMAT } },
            )
            .upsert(true)
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    /// Gives every schedule stored before partitions existed its partition.
    async fn fill_partitions(&self) -> Result<()> {
        let old = doc! { "partition_no": { "$exists": false } };
        let mut cursor = self.coll("schedules").find(old).await.map_err(db_err)?;
        while let Some(d) = cursor.try_next().await.map_err(db_err)? {
            let Ok(id) = d.get_str("_id") else { continue };
            let partition = i64::from(taskhost_model::partition_of(id));
            let set = doc! { "$set": { "partition_no": partition } };
            self.coll("schedules")
                .update_one(doc! { "_id": id }, set)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }

    /// Gives every queued execution stored before `waiting_event` existed
    /// the field (the event it waits for, or null), so that the tenant's
    /// events find the workflows among them that wait. Each is read once:
    /// executions written since always carry the field.
    async fn fill_waiting_events(&self) -> Result<()> {
        let executions = self.coll("executions");
        let old = doc! { "status": "queued", "waiting_event": { "$exists": false } };
        let mut cursor = executions.find(old).await.map_err(db_err)?;
        while let Some(d) = cursor.try_next().await.map_err(db_err)? {
            let Ok(id) = d.get_str("_id") else { continue };
            // An unreadable document is left as it is, for its readers to report.
            let Ok(e) = record::<taskhost_model::Execution>(&d) else {
                continue;
            };
            let event = e.waiting.map(|w| w.event).filter(|name| !name.is_empty());
            let set = doc! { "$set": { "waiting_event": event.map_or(Bson::Null, Bson::String) } };
            executions
                .update_one(
                    doc! { "_id": id, "waiting_event": { "$exists": false } },
                    set,
                )
                .await
                .map_err(db_err)?;
        }
        Ok(())
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
        crate::backend::readable(coll, docs.iter().map(record))
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
}
