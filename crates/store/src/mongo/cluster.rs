//! Locks and node heartbeats on MongoDB: a lock is a document with
//! `expires_at` and a TTL index for garbage collection; correctness never
//! waits for the TTL monitor (every acquire compares `expires_at` with now).

use super::{MongoBackend, db_err, document, is_duplicate, ms, record, wall_expiry};
use crate::backend::{Result, node_row};
use crate::traits::ClusterStore;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{self, Document, doc};
use taskhost_model::NodeInfo;

#[async_trait::async_trait]
impl ClusterStore for MongoBackend {
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
}
