//! Plugin key-value state on MongoDB, with the tenant's usage kept beside it.
//!
//! Each value is a document keyed by (tenant, plugin, key). A `kv_usage`
//! document per tenant counts its keys and bytes, updated with `$inc` after
//! each write, so a quota check is one read rather than a scan. Without a
//! transaction the check and the write are not one step: writers racing at
//! the edge of a quota may pass it by the size of their writes, never more.

use super::{MongoBackend, db_err};
use crate::StoreError;
use crate::backend::Result;
use crate::traits::StateStore;
use mongodb::bson::{self, Document, doc};
use taskhost_model::kv::KvQuota;

fn kv_id(tenant: &str, plugin: &str, key: &str) -> Document {
    doc! { "t": tenant, "p": plugin, "k": key }
}

impl MongoBackend {
    /// A tenant's kv keys and bytes.
    async fn usage_of(&self, tenant: &str) -> Result<(u64, u64)> {
        let usage = self
            .coll("kv_usage")
            .find_one(doc! { "_id": tenant })
            .await
            .map_err(db_err)?;
        let number = |d: &Document, k: &str| d.get_i64(k).unwrap_or(0).max(0) as u64;
        Ok(usage.map_or((0, 0), |d| (number(&d, "keys"), number(&d, "bytes"))))
    }

    async fn add_kv_usage(&self, tenant: &str, keys: i64, bytes: i64) -> Result<()> {
        self.coll("kv_usage")
            .update_one(
                doc! { "_id": tenant },
                doc! { "$inc": { "keys": keys, "bytes": bytes } },
            )
            .upsert(true)
            .await
            .map(drop)
            .map_err(db_err)
    }
}

#[async_trait::async_trait]
impl StateStore for MongoBackend {
    async fn kv_get(&self, tenant: &str, plugin: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let found = self
            .coll("kv")
            .find_one(doc! { "_id": kv_id(tenant, plugin, key) })
            .await
            .map_err(db_err)?;
        found
            .map(|d| {
                d.get_binary_generic("value")
                    .cloned()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .transpose()
    }

    async fn kv_set(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
        value: &[u8],
        quota: Option<KvQuota>,
    ) -> Result<()> {
        let old = self
            .kv_get(tenant, plugin, key)
            .await?
            .map(|v| (v.len() + key.len()) as u64);
        let usage = match quota {
            Some(_) => Some(self.usage_of(tenant).await?),
            None => None,
        };
        let (keys, bytes) = KvQuota::admit(quota, usage, old, (key.len() + value.len()) as u64)?;
        let data = bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: value.to_vec(),
        };
        self.coll("kv")
            .update_one(
                doc! { "_id": kv_id(tenant, plugin, key) },
                doc! { "$set": { "value": data } },
            )
            .upsert(true)
            .await
            .map_err(db_err)?;
        self.add_kv_usage(tenant, keys, bytes).await
    }

    async fn kv_delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<bool> {
        let removed = self
            .coll("kv")
            .find_one_and_delete(doc! { "_id": kv_id(tenant, plugin, key) })
            .await
            .map_err(db_err)?;
        let Some(removed) = removed else {
            return Ok(false);
        };
        let len = removed
            .get_binary_generic("value")
            .map_or(0, |v| v.len() + key.len());
        self.add_kv_usage(tenant, -1, -(len as i64)).await?;
        Ok(true)
    }

    async fn kv_usage(&self, tenant: &str) -> Result<(u64, u64)> {
        self.usage_of(tenant).await
    }
}
