//! Debounce keys on MongoDB: one document per (tenant, key), its pending
//! run, changed by compare-and-swap; a TTL index collects the expired.

use super::{MongoBackend, db_err, is_duplicate};
use crate::backend::Result;
use crate::traits::DebounceStore;
use chrono::{DateTime, Utc};
use mongodb::bson::{self, doc};

fn id(tenant: &str, key: &str) -> String {
    format!("{tenant}\u{1f}{key}")
}

#[async_trait::async_trait]
impl DebounceStore for MongoBackend {
    async fn debounce_pending(
        &self,
        tenant: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        let live = doc! { "_id": id(tenant, key), "expires_at": { "$gt": now.timestamp_millis() } };
        let found = self.coll("debounce").find_one(live).await.map_err(db_err)?;
        Ok(found.and_then(|d| d.get_str("pending").ok().map(str::to_owned)))
    }

    async fn debounce_swap(
        &self,
        tenant: &str,
        key: &str,
        expected: Option<&str>,
        new: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool> {
        let coll = self.coll("debounce");
        let until = expires_at.timestamp_millis();
        let set = doc! { "$set": {
            "pending": new, "expires_at": until,
            // Collected an hour after by the database's clock (skew margin).
            "expires_at_date": bson::DateTime::from_millis(until.saturating_add(3_600_000)),
        } };
        let filter = match expected {
            Some(old) => doc! { "_id": id(tenant, key), "pending": old,
            "expires_at": { "$gt": now.timestamp_millis() } },
            None => {
                let fresh = doc! { "_id": id(tenant, key), "pending": new, "expires_at": until,
                "expires_at_date": bson::DateTime::from_millis(until.saturating_add(3_600_000)) };
                match coll.insert_one(fresh).await {
                    Ok(_) => return Ok(true),
                    Err(e) if is_duplicate(&e) => {}
                    Err(e) => return Err(db_err(e)),
                }
                // Taken, unless what is there has expired.
                doc! { "_id": id(tenant, key), "expires_at": { "$lte": now.timestamp_millis() } }
            }
        };
        let changed = coll.update_one(filter, set).await.map_err(db_err)?;
        Ok(changed.modified_count == 1)
    }
}
