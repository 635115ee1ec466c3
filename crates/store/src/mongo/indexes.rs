//! The indexes the MongoDB backend makes at start-up: uniqueness (plugin
//! versions, schedule names, one execution per fire), the query indexes, and
//! TTL indexes that garbage-collect expired locks, heartbeats and executions.

use super::{MongoBackend, db_err};
use crate::backend::Result;
use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use std::time::Duration;

impl MongoBackend {
    pub(super) async fn create_indexes(&self) -> Result<()> {
        let unique = || IndexOptions::builder().unique(true).build();
        let ttl = || IndexOptions::builder().expire_after(Duration::ZERO).build();
        // An hour's margin for the clock skew between nodes and the database.
        let ttl_late = || {
            IndexOptions::builder()
                .expire_after(Duration::from_secs(3600))
                .build()
        };
        let indexes: Vec<(&str, Document, Option<IndexOptions>)> = vec![
            (
                "plugins",
                doc! { "tenant": 1, "name": 1, "version": 1 },
                Some(unique()),
            ),
            ("plugins", doc! { "tenant": 1, "_id": -1 }, None),
            (
                "plugin_chunks",
                doc! { "plugin_id": 1, "n": 1 },
                Some(unique()),
            ),
            ("schedules", doc! { "tenant": 1, "name": 1 }, Some(unique())),
            ("secrets", doc! { "tenant": 1, "name": 1 }, Some(unique())),
            (
                "revocations",
                doc! { "tenant": 1, "jti": 1 },
                Some(unique()),
            ),
            ("revocations", doc! { "expires_at_date": 1 }, Some(ttl())),
            (
                "idempotency",
                doc! { "tenant": 1, "key": 1 },
                Some(unique()),
            ),
            ("idempotency", doc! { "expires_at_date": 1 }, Some(ttl())),
            ("debounce", doc! { "expires_at_date": 1 }, Some(ttl())),
            ("audit", doc! { "expires_at_date": 1 }, Some(ttl())),
            ("audit", doc! { "tenant": 1, "_id": -1 }, None),
            ("schedules", doc! { "tenant": 1, "_id": -1 }, None),
            ("schedules", doc! { "next_fire_at": 1 }, None),
            (
                "schedules",
                doc! { "partition_no": 1, "next_fire_at": 1 },
                None,
            ),
            ("schedules", doc! { "tenant": 1, "plugin_alias": 1 }, None),
            ("schedules", doc! { "tenant": 1, "event_name": 1 }, None),
            ("executions", doc! { "tenant": 1, "waiting_event": 1 }, None),
            ("hooks", doc! { "tenant": 1, "_id": -1 }, None),
            ("api_keys", doc! { "tenant": 1, "_id": -1 }, None),
            ("plugin_aliases", doc! { "plugin_id": 1 }, None),
            ("plugin_aliases", doc! { "tenant": 1, "name": 1 }, None),
            (
                "executions",
                doc! { "schedule_id": 1, "fire_at": 1, "fate": 1, "fire_reason": 1 },
                None,
            ),
            ("schedules", doc! { "plugin_id": 1 }, None),
            ("executions", doc! { "fire_key": 1 }, Some(unique())),
            ("executions", doc! { "status": 1, "due_at": 1 }, None),
            (
                "executions",
                doc! { "status": 1, "tenant": 1, "priority": -1, "due_at": 1 },
                None,
            ),
            ("executions", doc! { "expires_at": 1 }, None),
            ("executions", doc! { "notify_due_at": 1 }, None),
            // Garbage collection only: the sweeper removes expired executions
            // on time (driven by the node's clock); this catches what it left.
            (
                "executions",
                doc! { "expires_at_date": 1 },
                Some(ttl_late()),
            ),
            (
                "executions",
                doc! { "status": 1, "lease_expires_at": 1 },
                None,
            ),
            ("executions", doc! { "tenant": 1, "_id": -1 }, None),
            // A tenant's stored count and bytes, from the index alone.
            ("executions", doc! { "tenant": 1, "bytes": 1 }, None),
            ("locks", doc! { "expires_at_date": 1 }, Some(ttl())),
            ("nodes", doc! { "expires_at_date": 1 }, Some(ttl())),
        ];
        for (collection, keys, options) in indexes {
            let model = IndexModel::builder().keys(keys).options(options).build();
            self.coll(collection)
                .create_index(model)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }
}
