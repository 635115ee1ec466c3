//! Durable state: one [`Store`], two backends.
//!
//! [`Store`] holds every rule about state — tenant scoping, execution state
//! transitions, leases, locks, pagination — and speaks to a [`Backend`] that
//! only stores documents and answers queries:
//!
//! - [`sqlite`]: the default. One file, WAL mode, for one node (or several
//!   processes on one machine). `sqlite://PATH`.
//! - [`mongo`]: for a cluster of nodes. `mongodb://…`.
//!
//! Every change to a schedule or an execution is a compare-and-swap on its
//! `version` ([`Store::modify_execution`]), so racing nodes cannot both claim,
//! complete or requeue the same execution, on either backend. A fire of a
//! schedule is materialized at most once through a unique (schedule, fire time)
//! key. Time comes from the injected [`Clock`](taskhost_model::clock::Clock).

mod audit;
mod backend;
mod events;
mod executions;
pub mod faults;
mod fires;
mod idempotency;
#[cfg(feature = "mongodb")]
pub mod mongo;
pub mod news;
mod secrets;
pub mod sqlite;
mod tokens;
mod traits;

pub use backend::{
    ClaimOrder, ExecutionFilter, FireFilter, PageQuery, PassWritten, PluginFilter, Queued,
    ScheduleFilter, Usage, unreadable_records,
};
pub use executions::{Completion, Lease, LeaseRenewal, Release};
pub use fires::{AliasMove, FireDecided, ResolvedPlugin};
pub use traits::{
    ApiKeyStore, AuditStore, Backend, ClusterStore, DebounceStore, ExecutionStore, HookStore,
    PluginStore, ScheduleStore, SecretStore, StateStore,
};

use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use taskhost_model::clock::SharedClock;
use taskhost_model::kv::{KvError, KvNamespace, KvQuota, KvStore};
use taskhost_model::quota::QuotaExceeded;
use taskhost_model::quota::{QuotaConfig, Quotas};
use taskhost_model::time::add_saturating;
use taskhost_model::{NodeInfo, PluginRecord, Schedule};

/// The store used when none is configured.
pub const DEFAULT_URL: &str = "sqlite://./taskhost-data/taskhost.db";
/// Page size when a caller does not ask for one.
pub const DEFAULT_PAGE: u32 = 50;
/// The largest page a caller may ask for.
pub const MAX_PAGE: u32 = 1000;
/// How often a compare-and-swap is retried when other writers keep winning.
pub(crate) const CAS_ATTEMPTS: usize = 32;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is taken (plugin name + version, schedule name).
    #[error("{0} already exists")]
    Conflict(String),
    /// The record is still referenced (a plugin used by schedules).
    #[error("{0}")]
    InUse(String),
    /// Other writers kept changing the record; the caller may try again.
    #[error("too many concurrent updates to {0}; try again")]
    Contention(String),
    #[error("invalid store URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// A tenant's quota would be exceeded; nothing was written.
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    /// The database could not be reached, or was busy or shutting down: the
    /// same operation may work when tried again.
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// The database failed the operation; trying again will not help.
    #[error("store error: {0}")]
    Backend(#[source] Cause),
    /// A stored document could not be read back.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

/// The driver's own error, kept as the cause of a [`StoreError`].
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a caller may do about a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again later (with backoff): the store is away or busy.
    Transient,
    /// The record is not in the state the operation needs (taken, in use,
    /// over a quota): retrying the same thing gets the same answer.
    Conflict,
    /// A bug, bad configuration or bad data: report it.
    Permanent,
}

impl StoreError {
    /// A permanent failure described in words.
    pub fn backend(message: impl Into<String>) -> StoreError {
        StoreError::Backend(message.into().into())
    }

    /// A transient failure described in words.
    pub fn unavailable(message: impl Into<String>) -> StoreError {
        StoreError::Unavailable(message.into().into())
    }

    /// What a caller may do about this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Unavailable(_) | StoreError::Contention(_) => ErrorClass::Transient,
            StoreError::Conflict(_) | StoreError::InUse(_) | StoreError::Quota(_) => {
                ErrorClass::Conflict
            }
            StoreError::BadUrl { .. } | StoreError::Backend(_) | StoreError::Corrupt(_) => {
                ErrorClass::Permanent
            }
        }
    }

    /// Whether trying again later may work.
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }
}

/// A page of records, newest first, and the cursor for the next page.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; none on the last page.
    pub next: Option<String>,
}

/// Which page to read: `limit` records after `cursor` (from a previous page).
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

impl PageRequest {
    fn query(&self) -> PageQuery {
        PageQuery {
            before: self.cursor.clone(),
            limit: self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE),
        }
    }
}

fn page<T>(items: Vec<T>, query: &PageQuery, id: impl Fn(&T) -> &str) -> Page<T> {
    let next = (items.len() as u32 == query.limit)
        .then(|| items.last().map(|t| id(t).to_owned()))
        .flatten();
    Page { items, next }
}

/// Durable state behind one API. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    clock: SharedClock,
    news: Arc<news::News>,
    /// Whether `news` hears of other processes' executions (change streams).
    watching: bool,
    faults: Arc<faults::Faults>,
    /// What each tenant may keep, enforced inside the writes; none unless
    /// set ([`Store::with_quotas`]).
    quotas: Option<Arc<QuotaConfig>>,
}

impl Store {
    /// Opens the store at `url`: `sqlite://PATH` or `mongodb://…`.
    pub async fn open(url: &str, clock: SharedClock) -> Result<Store, StoreError> {
        let backend: Arc<dyn Backend> = if let Some(path) = url.strip_prefix("sqlite://") {
            Arc::new(sqlite::SqliteBackend::open(path).await?)
        } else if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") {
            Self::mongo_backend(url).await?
        } else {
            return Err(StoreError::BadUrl {
                url: url.to_owned(),
                reason: "expected sqlite://PATH or mongodb://HOST[:PORT]/[DATABASE]".into(),
            });
        };
        let mut store = Store::new(backend, clock);
        store.watching = store.backend.watch_executions(store.news.clone()).await;
        Ok(store)
    }

    #[cfg(feature = "mongodb")]
    async fn mongo_backend(url: &str) -> Result<Arc<dyn Backend>, StoreError> {
        Ok(Arc::new(mongo::MongoBackend::connect(url).await?))
    }

    #[cfg(not(feature = "mongodb"))]
    async fn mongo_backend(url: &str) -> Result<Arc<dyn Backend>, StoreError> {
        Err(StoreError::BadUrl {
            url: url.to_owned(),
            reason: "this build has no MongoDB store (built without the `mongodb` feature)".into(),
        })
    }

    pub fn new(backend: Arc<dyn Backend>, clock: SharedClock) -> Store {
        Store {
            backend,
            clock,
            news: Arc::default(),
            watching: false,
            faults: Arc::default(),
            quotas: None,
        }
    }

    /// Enforces the tenants' `plugins`, `plugin_bytes` and `schedules`
    /// quotas inside the writes that add them.
    #[must_use]
    pub fn with_quotas(mut self, quotas: QuotaConfig) -> Store {
        self.quotas = Some(Arc::new(quotas));
        self
    }

    fn quotas_of(&self, tenant: &str) -> Option<Quotas> {
        self.quotas.as_ref().map(|q| q.for_tenant(tenant))
    }

    /// Fault injection for tests and drills (disarmed unless armed).
    pub fn faults(&self) -> &faults::Faults {
        &self.faults
    }

    /// "sqlite" or "mongodb".
    pub fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// News of executions queued by other processes, where
    /// [`Store::watches_others`] (MongoDB change streams). Work made in this
    /// process is queued by the node that made it.
    pub fn news(&self) -> Arc<news::News> {
        self.news.clone()
    }

    /// Whether [`Store::news`] reports other processes' executions
    /// (MongoDB change streams). Without them, nodes poll.
    pub fn watches_others(&self) -> bool {
        self.watching
    }

    /// What `tenant` keeps: plugins, their bytes, schedules (for quotas).
    pub async fn usage(&self, tenant: &str) -> Result<Usage, StoreError> {
        self.backend.tenant_usage(tenant).await
    }

    /// Checks that the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.backend.ping().await
    }

    // ---- plugins ----

    /// Stores a plugin and its wasm. `Conflict` if the name and version
    /// exist, `Quota` past the tenant's `plugins` or `plugin_bytes`.
    pub async fn create_plugin(
        &self,
        plugin: &PluginRecord,
        wasm: &[u8],
    ) -> Result<(), StoreError> {
        let quota = self.quotas_of(&plugin.tenant);
        self.backend
            .plugin_insert(plugin, wasm, quota.as_ref())
            .await
    }

    pub async fn get_plugin(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<PluginRecord>, StoreError> {
        self.faults.check(faults::Op::LoadPlugin)?;
        Ok(self
            .backend
            .plugin_get(id)
            .await?
            .filter(|p| p.tenant == tenant))
    }

    pub async fn plugin_wasm(&self, tenant: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.get_plugin(tenant, id).await? {
            Some(_) => self.backend.plugin_wasm(id).await,
            None => Ok(None),
        }
    }

    pub async fn list_plugins(
        &self,
        tenant: &str,
        filter: &PluginFilter,
        request: &PageRequest,
    ) -> Result<Page<PluginRecord>, StoreError> {
        let query = request.query();
        let items = self.backend.plugin_list(tenant, filter, &query).await?;
        Ok(page(items, &query, |p| &p.id))
    }

    /// Deletes a plugin; `InUse` while a schedule uses it; false if absent.
    pub async fn delete_plugin(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        match self.get_plugin(tenant, id).await? {
            Some(_) => self.backend.plugin_delete(id).await,
            None => Ok(false),
        }
    }

    // ---- schedules ----

    /// Stores a new schedule. `Conflict` if its name exists in the tenant,
    /// `Quota` past its `schedules`.
    pub async fn create_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let max = self.quotas_of(&schedule.tenant).map(|q| q.schedules);
        self.backend.schedule_insert(schedule, max).await
    }

    pub async fn get_schedule(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Schedule>, StoreError> {
        Ok(self
            .backend
            .schedule_get(id)
            .await?
            .filter(|s| s.tenant == tenant))
    }

    pub async fn list_schedules(
        &self,
        tenant: &str,
        filter: &ScheduleFilter,
        request: &PageRequest,
    ) -> Result<Page<Schedule>, StoreError> {
        let query = request.query();
        let items = self.backend.schedule_list(tenant, filter, &query).await?;
        Ok(page(items, &query, |s| &s.id))
    }

    /// Changes a schedule with `change`, which may refuse by returning false.
    /// Retries when a concurrent writer got there first. `None` if the schedule
    /// does not exist (in `tenant`, when given) or `change` refused.
    pub async fn modify_schedule(
        &self,
        tenant: Option<&str>,
        id: &str,
        mut change: impl FnMut(&mut Schedule) -> bool + Send,
    ) -> Result<Option<Schedule>, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(mut schedule) = self.backend.schedule_get(id).await? else {
                return Ok(None);
            };
            if tenant.is_some_and(|t| t != schedule.tenant) || !change(&mut schedule) {
                return Ok(None);
            }
            let expected = schedule.version;
            schedule.version += 1;
            schedule.updated_at = self.now();
            if self.backend.schedule_replace(&schedule, expected).await? {
                return Ok(Some(schedule));
            }
            // A write that landed with its reply lost is ours (see
            // `modify_execution`).
            if self.backend.schedule_get(id).await?.as_ref() == Some(&schedule) {
                return Ok(Some(schedule));
            }
        }
        Err(StoreError::Contention(format!("schedule {id}")))
    }

    pub async fn delete_schedule(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        match self.get_schedule(tenant, id).await? {
            Some(_) => self.backend.schedule_delete(id).await,
            None => Ok(false),
        }
    }

    /// Schedules due by `before` (paused ones too), across tenants, of
    /// `partitions` when given: what a pass of the fire path reads.
    pub async fn due_schedules(
        &self,
        before: DateTime<Utc>,
        partitions: Option<&[u32]>,
        limit: u32,
    ) -> Result<Vec<Schedule>, StoreError> {
        self.backend.schedules_due(before, partitions, limit).await
    }

    // ---- locks ----

    /// Takes the named lock for `ttl` unless another owner holds an unexpired one.
    pub async fn acquire_lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        self.backend
            .lock_acquire(name, owner, now, add_saturating(now, ttl))
            .await
    }

    /// Extends a lock `owner` still holds.
    pub async fn renew_lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        self.backend
            .lock_renew(name, owner, now, add_saturating(now, ttl))
            .await
    }

    pub async fn release_lock(&self, name: &str, owner: &str) -> Result<bool, StoreError> {
        self.backend.lock_release(name, owner).await
    }

    // ---- nodes ----

    /// Records that `node` is alive for another `ttl`. The result carries
    /// whether the node was asked to drain.
    pub async fn heartbeat(&self, node: &NodeInfo, ttl: Duration) -> Result<NodeInfo, StoreError> {
        self.faults.check(faults::Op::Heartbeat)?;
        let now = self.now();
        let mut node = NodeInfo {
            last_seen: now,
            expires_at: add_saturating(now, ttl),
            ..node.clone()
        };
        node.draining = self.backend.node_upsert(&node).await?;
        Ok(node)
    }

    /// Asks a live node to drain. `None` if no live node has that id.
    pub async fn drain_node(&self, id: &str) -> Result<Option<NodeInfo>, StoreError> {
        let live = self.live_nodes().await?;
        let Some(mut node) = live.into_iter().find(|n| n.id == id) else {
            return Ok(None);
        };
        self.backend.node_drain(id).await?;
        node.draining = true;
        Ok(Some(node))
    }

    pub async fn live_nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        self.backend.nodes_alive(self.now()).await
    }

    pub async fn remove_node(&self, id: &str) -> Result<bool, StoreError> {
        self.backend.node_remove(id).await
    }
}

/// A store failure, as the runtime's kv import reports it to plugins.
fn kv_error(e: StoreError) -> KvError {
    match e {
        StoreError::Quota(q) => KvError::Quota(q),
        e => KvError::Backend(e.to_string()),
    }
}

/// Plugins' key-value state lives in the store, scoped to tenant + plugin.
#[async_trait::async_trait]
impl KvStore for Store {
    async fn kv_get(&self, ns: &KvNamespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.backend
            .kv_get(&ns.tenant, &ns.plugin, key)
            .await
            .map_err(kv_error)
    }

    async fn kv_set(
        &self,
        ns: &KvNamespace,
        key: &str,
        value: &[u8],
        quota: Option<KvQuota>,
    ) -> Result<(), KvError> {
        self.backend
            .kv_set(&ns.tenant, &ns.plugin, key, value, quota)
            .await
            .map_err(kv_error)
    }

    async fn kv_delete(&self, ns: &KvNamespace, key: &str) -> Result<bool, KvError> {
        self.backend
            .kv_delete(&ns.tenant, &ns.plugin, key)
            .await
            .map_err(kv_error)
    }

    async fn kv_usage(&self, tenant: &str) -> Result<(u64, u64), KvError> {
        self.backend.kv_usage(tenant).await.map_err(kv_error)
    }
}
