//! Tenant secrets on MongoDB: one document per (tenant, name), unique, with
//! the sealed value as binary; never plain text.

use super::{MongoBackend, db_err, is_duplicate};
use crate::StoreError;
use crate::backend::Result;
use crate::traits::SecretStore;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{Binary, Document, doc, spec::BinarySubtype};
use mongodb::options::ReturnDocument;
use taskhost_model::SecretInfo;
use taskhost_model::quota::QuotaExceeded;

fn info(d: &Document) -> Option<SecretInfo> {
    Some(SecretInfo {
        name: d.get_str("name").ok()?.to_owned(),
        version: u64::try_from(d.get_i64("version").ok()?).ok()?,
        created_at: DateTime::from_timestamp_millis(d.get_i64("created_at").ok()?)?,
        updated_at: DateTime::from_timestamp_millis(d.get_i64("updated_at").ok()?)?,
    })
}

fn corrupt() -> StoreError {
    StoreError::Corrupt("a secret's record lacks its fields".into())
}

#[async_trait::async_trait]
impl SecretStore for MongoBackend {
    async fn secret_put(
        &self,
        tenant: &str,
        name: &str,
        sealed: &[u8],
        now: DateTime<Utc>,
        max: u64,
    ) -> Result<SecretInfo> {
        let value = Binary {
            subtype: BinarySubtype::Generic,
            bytes: sealed.to_vec(),
        };
        let now = now.timestamp_millis();
        let secrets = self.coll("secrets");
        // A new value for an existing secret, or a new secret within the quota
        // (racing inserts of one name: the unique index lets one win, and the
        // other becomes an update).
        for _ in 0..2 {
            let updated = secrets
                .find_one_and_update(
                    doc! { "tenant": tenant, "name": name },
                    doc! { "$set": { "value": value.clone(), "updated_at": now }, "$inc": { "version": 1_i64 } },
                )
                .return_document(ReturnDocument::After)
                .await
                .map_err(db_err)?;
            if let Some(d) = updated {
                return info(&d).ok_or_else(corrupt);
            }
            let kept = secrets
                .count_documents(doc! { "tenant": tenant })
                .await
                .map_err(db_err)?;
            QuotaExceeded::check(taskhost_model::quota::QuotaKind::Secrets, max, kept, 1)
                .map_err(StoreError::Quota)?;
            let record = doc! {
                "_id": taskhost_model::new_id(), "tenant": tenant, "name": name, "version": 1_i64,
                "created_at": now, "updated_at": now, "value": value.clone(),
            };
            match secrets.insert_one(&record).await {
                Ok(_) => return info(&record).ok_or_else(corrupt),
                Err(e) if is_duplicate(&e) => continue,
                Err(e) => return Err(db_err(e)),
            }
        }
        Err(StoreError::Contention(format!("secret {name}")))
    }

    async fn secret_list(&self, tenant: &str) -> Result<Vec<SecretInfo>> {
        let cursor = self
            .coll("secrets")
            .find(doc! { "tenant": tenant })
            .projection(doc! { "value": 0 })
            .sort(doc! { "name": 1 })
            .await
            .map_err(db_err)?;
        let docs: Vec<Document> = cursor.try_collect().await.map_err(db_err)?;
        docs.iter().map(|d| info(d).ok_or_else(corrupt)).collect()
    }

    async fn secret_get(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let found = self
            .coll("secrets")
            .find_one(doc! { "tenant": tenant, "name": name })
            .await
            .map_err(db_err)?;
        Ok(found.and_then(|d| d.get_binary_generic("value").ok().cloned()))
    }

    async fn secret_delete(&self, tenant: &str, name: &str) -> Result<bool> {
        let result = self
            .coll("secrets")
            .delete_one(doc! { "tenant": tenant, "name": name })
            .await
            .map_err(db_err)?;
        Ok(result.deleted_count == 1)
    }
}
