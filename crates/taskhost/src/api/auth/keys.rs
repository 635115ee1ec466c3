//! API keys on the request path: each node's short-lived cache of the
//! stored keys (see [`taskhost_model::apikey`]).
//!
//! A key is read from the store on its first use and trusted for
//! [`CACHE_FOR`]; past that, the next request reads it again, so a key
//! deleted on any node is refused on every node within that time. An
//! unknown id is remembered as unknown for as long, so a flood of made-up
//! keys costs one store read per id and second. Its last use is written
//! at most every [`TOUCH_EVERY`], off the request's path.

use crate::api::error::ApiError;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use taskhost_model::apikey::{self, ApiKeyRecord, CACHE_FOR, TOUCH_EVERY};
use taskhost_store::Store;

/// The most keys remembered; past it the cache starts afresh.
const MAX_CACHED: usize = 10_000;

/// What a node read of one key id.
struct Entry {
    /// The record, or `None` for an id with no key.
    record: Option<ApiKeyRecord>,
    read_at: Instant,
}

/// The cache of one node.
pub struct ApiKeys {
    store: Store,
    entries: Mutex<HashMap<String, Entry>>,
}

impl ApiKeys {
    pub fn new(store: Store) -> ApiKeys {
        ApiKeys {
            store,
            entries: Mutex::default(),
        }
    }

    /// The record of a presented key (`thk_…`), if it is a live key with
    /// this secret; 401 otherwise, 503 if the store cannot say.
    pub async fn check(&self, presented: &str) -> Result<ApiKeyRecord, ApiError> {
        let refused = || ApiError::unauthorized("unknown or revoked API key");
        let (id, secret) =
            apikey::split(presented).ok_or_else(|| ApiError::unauthorized("malformed API key"))?;
        let record = match self.cached(id) {
            Some(record) => record,
            None => self.read(id).await?,
        };
        let record = record.filter(|r| r.matches(secret)).ok_or_else(refused)?;
        let now = self.store.now();
        if record.expired(now) {
            return Err(ApiError::unauthorized("API key expired"));
        }
        self.touch(&record, now);
        Ok(record)
    }

    /// Forgets a key at once (it was deleted on this node).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn cached(&self, id: &str) -> Option<Option<ApiKeyRecord>> {
        let entries = self.lock();
        let entry = entries.get(id)?;
        (entry.read_at.elapsed() < CACHE_FOR).then(|| entry.record.clone())
    }

    async fn read(&self, id: &str) -> Result<Option<ApiKeyRecord>, ApiError> {
        let record = self.store.api_keys().api_key_get(id).await.map_err(|e| {
            tracing::warn!(error = %e, "could not read an API key");
            ApiError::unavailable("could not read the API key from the store; try again shortly")
        })?;
        let mut entries = self.lock();
        if entries.len() >= MAX_CACHED {
            entries.clear();
        }
        let read_at = Instant::now();
        let entry = Entry {
            record: record.clone(),
            read_at,
        };
        entries.insert(id.to_owned(), entry);
        Ok(record)
    }

    /// Writes the key's last use if the stored one is older than
    /// [`TOUCH_EVERY`] (in a task: the request does not wait for it).
    fn touch(&self, record: &ApiKeyRecord, now: chrono::DateTime<chrono::Utc>) {
        let every = chrono::Duration::from_std(TOUCH_EVERY).unwrap_or_default();
        if record.last_used_at.is_some_and(|at| now - at < every) {
            return;
        }
        let mut used = record.clone();
        used.last_used_at = Some(now);
        if let Some(entry) = self.lock().get_mut(&record.id) {
            entry.record = Some(used.clone());
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.api_keys().api_key_touch(&used).await {
                tracing::debug!(error = %e, "could not write an API key's last use");
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
