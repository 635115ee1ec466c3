//! Events on [`Store`]: the schedules an event fires, the hooks that
//! send events (see `taskhost_model::event` and `taskhost_model::hook`), and
//! the pending runs of debounce keys (`taskhost_model::flow`).

use super::backend::{PageQuery, ScheduleFilter};
use super::{Store, StoreError};
use taskhost_model::{HookRecord, Schedule};

/// Schedules read per query while gathering an event's.
const PAGE: u32 = 1000;

impl Store {
    /// Every schedule of `tenant` whose trigger is the event `name` (its
    /// filter not applied), by the index on (tenant, event name).
    pub async fn event_schedules(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<Schedule>, StoreError> {
        let filter = ScheduleFilter {
            event: Some(name.to_owned()),
            ..ScheduleFilter::default()
        };
        let mut all = Vec::new();
        let mut query = PageQuery {
            before: None,
            limit: PAGE,
        };
        loop {
            let page = self.backend.schedule_list(tenant, &filter, &query).await?;
            let full = page.len() == PAGE as usize;
            query.before = page.last().map(|s| s.id.clone());
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    /// Stores a new hook, if its tenant keeps fewer than `max`.
    pub async fn create_hook(&self, hook: &HookRecord, max: u64) -> Result<(), StoreError> {
        self.backend.hook_insert(hook, max).await
    }

    /// A hook by id, of any tenant (a hook's request names only its id).
    pub async fn hook(&self, id: &str) -> Result<Option<HookRecord>, StoreError> {
        self.backend.hook_get(id).await
    }

    /// `tenant`'s hooks, newest first.
    pub async fn hooks(&self, tenant: &str) -> Result<Vec<HookRecord>, StoreError> {
        self.backend.hook_list(tenant).await
    }

    /// Writes a changed hook if no one changed it since it was read at
    /// `expected`; false otherwise.
    pub async fn replace_hook(&self, hook: &HookRecord, expected: u64) -> Result<bool, StoreError> {
        self.backend.hook_replace(hook, expected).await
    }

    pub async fn delete_hook(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        self.backend.hook_delete(tenant, id).await
    }
}

impl Store {
    /// The pending run of `tenant`'s debounce key, if any.
    pub async fn debounce_pending(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        self.backend.debounce_pending(tenant, key, self.now()).await
    }

    /// Makes `new` the key's pending run until `expires_at`, if the pending
    /// one is still `expected`.
    pub async fn debounce_swap(
        &self,
        tenant: &str,
        key: &str,
        expected: Option<&str>,
        new: &str,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        self.backend
            .debounce_swap(tenant, key, expected, new, now, expires_at)
            .await
    }
}
