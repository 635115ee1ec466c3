//! The queries a storage backend answers. Everything else — tenancy checks,
//! state transitions, leases, pagination — is in [`super::Store`], written once.
//!
//! A backend keeps records as documents with a few indexed fields and answers
//! simple queries. Changing a record is a compare-and-swap on its `version`:
//! `*_replace(record, expected)` writes only if the stored version is still
//! `expected`, so of several racing writers exactly one wins, on any backend.

use super::{Lease, StoreError};
use chrono::{DateTime, Utc};
use taskhost_model::kv::KvQuota;
use taskhost_model::{
    Execution, ExecutionStatus, FireFate, NodeInfo, PluginAlias, PluginRecord, Schedule, SecretInfo,
};

pub type Result<T> = std::result::Result<T, StoreError>;

/// A change to an execution, applied by [`Backend::execution_update`]; false
/// means "leave it as it is". It also bumps the version.
pub type ExecutionChange = Box<dyn FnMut(&mut Execution) -> bool + Send>;

/// A page request: records with ids before `before` (newest first), at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    pub before: Option<String>,
    pub limit: u32,
}

/// Filters for listing executions.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub schedule_id: Option<String>,
    pub plugin_id: Option<String>,
    pub status: Option<ExecutionStatus>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
}

/// Filters for listing a schedule's fire ledger.
#[derive(Debug, Clone, Default)]
pub struct FireFilter {
    /// Fire times at or after.
    pub since: Option<DateTime<Utc>>,
    /// Fire times before.
    pub until: Option<DateTime<Utc>>,
    pub fate: Option<FireFate>,
    /// Only these fire times (none: any).
    pub at: Vec<DateTime<Utc>>,
}

/// Filters for listing schedules.
#[derive(Debug, Clone, Default)]
pub struct ScheduleFilter {
    pub plugin_id: Option<String>,
    pub paused: Option<bool>,
    /// Schedules following this alias (`name@alias`).
    pub plugin_alias: Option<String>,
}

/// What a tenant keeps, for its quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub plugins: u64,
    pub plugin_bytes: u64,
    pub schedules: u64,
}

/// Filters for listing plugins.
#[derive(Debug, Clone, Default)]
pub struct PluginFilter {
    pub name: Option<String>,
    pub version: Option<String>,
}

/// What a node's in-memory queue keeps of a queued execution: enough to
/// order it and to claim it, never the whole record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: String,
    pub tenant: String,
    pub priority: i32,
    pub due_at: DateTime<Utc>,
}

impl Queued {
    pub fn of(e: &Execution) -> Queued {
        Queued {
            id: e.id.clone(),
            tenant: e.tenant.clone(),
            priority: e.policy.priority,
            due_at: e.due_at,
        }
    }
}

/// A claim of queued, due executions by one node, in one go
/// ([`Backend::executions_claim`]).
#[derive(Debug, Clone)]
pub struct ClaimOrder {
    pub owner: String,
    pub now: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
}

/// Storage queries. Implemented by `sqlite` and `mongo`; checked by one
/// conformance suite (`tests/tests/store.rs`).
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name for logs: "sqlite" or "mongodb".
    fn kind(&self) -> &'static str;

    /// Checks that the store answers (for readiness probes).
    async fn ping(&self) -> Result<()>;

    // Plugins. `plugin_insert` fails with `Conflict` on a duplicate
    // (tenant, name, version).
    async fn plugin_insert(&self, plugin: &PluginRecord, wasm: &[u8]) -> Result<()>;
    async fn plugin_get(&self, id: &str) -> Result<Option<PluginRecord>>;
    async fn plugin_wasm(&self, id: &str) -> Result<Option<Vec<u8>>>;
    async fn plugin_list(
        &self,
        tenant: &str,
        filter: &PluginFilter,
        page: &PageQuery,
    ) -> Result<Vec<PluginRecord>>;
    /// Deletes the plugin unless it is in use (`InUse`): a schedule pinned
    /// to it, an alias pointing to it, or a schedule following `name@latest`
    /// while it is the newest of its name. False if absent.
    async fn plugin_delete(&self, id: &str) -> Result<bool>;

    // Plugin aliases (`name@alias`), one per (tenant, name, alias).
    /// Creates or moves an alias, if the plugin it points to exists (false:
    /// it does not, and nothing was written). On SQLite both in one
    /// transaction; on MongoDB the plugin is looked at again after the write.
    async fn alias_put(&self, alias: &PluginAlias) -> Result<bool>;
    /// Removes an alias; false if there was none.
    async fn alias_delete(&self, tenant: &str, name: &str, alias: &str) -> Result<bool>;
    async fn alias_get(&self, tenant: &str, name: &str, alias: &str)
    -> Result<Option<PluginAlias>>;
    /// The aliases of a plugin name, by alias.
    async fn alias_list(&self, tenant: &str, name: &str) -> Result<Vec<PluginAlias>>;

    // Schedules. `schedule_insert` fails with `Conflict` on a duplicate (tenant, name).
    async fn schedule_insert(&self, schedule: &Schedule) -> Result<()>;
    async fn schedule_get(&self, id: &str) -> Result<Option<Schedule>>;
    async fn schedule_replace(&self, schedule: &Schedule, expected_version: u64) -> Result<bool>;
    async fn schedule_list(
        &self,
        tenant: &str,
        filter: &ScheduleFilter,
        page: &PageQuery,
    ) -> Result<Vec<Schedule>>;
    async fn schedule_delete(&self, id: &str) -> Result<bool>;
    /// Schedules with `next_fire_at <= now` (paused ones too: their fires
    /// are recorded as skipped), soonest first.
    async fn schedules_due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Schedule>>;

    // Executions. `execution_insert` returns false (and writes nothing) when
    // an execution with the same (schedule_id, fire_time) exists.
    async fn execution_insert(&self, execution: &Execution) -> Result<bool>;
    async fn execution_get(&self, id: &str) -> Result<Option<Execution>>;
    async fn execution_replace(&self, execution: &Execution, expected_version: u64)
    -> Result<bool>;
    /// Whether [`Backend::execution_update`] is available: read, change and
    /// write in one transaction (SQLite). Otherwise the store uses
    /// `execution_get` + `execution_replace` (compare-and-swap).
    fn atomic_updates(&self) -> bool {
        false
    }
    /// Applies `change` to an execution atomically; `None` if it is unknown or
    /// `change` refused. Only called when [`Backend::atomic_updates`].
    async fn execution_update(
        &self,
        id: &str,
        _change: ExecutionChange,
    ) -> Result<Option<Execution>> {
        Err(StoreError::backend(format!(
            "atomic update of {id} is not supported by {}",
            self.kind()
        )))
    }
    async fn execution_list(
        &self,
        tenant: &str,
        filter: &ExecutionFilter,
        page: &PageQuery,
    ) -> Result<Vec<Execution>>;
    /// Tenants with queued executions due at or before `before`.
    async fn executions_due_tenants(&self, before: DateTime<Utc>) -> Result<Vec<String>>;
    /// `tenant`'s queued executions due at or before `before`: highest
    /// priority first, then earliest due. Only what a queue keeps of them.
    async fn executions_due(
        &self,
        tenant: &str,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Queued>>;
    /// Stores new executions all or none: `Conflict` (and nothing written)
    /// if any fire key is taken. The default inserts one by one; backends
    /// with transactions override it.
    async fn execution_insert_many(&self, executions: &[Execution]) -> Result<()> {
        for e in executions {
            if !self.execution_insert(e).await? {
                return Err(StoreError::Conflict(format!("execution {}", e.id)));
            }
        }
        Ok(())
    }
    /// Inserts each record of a fire (an execution or a `skipped` record)
    /// unless its fire key is taken; per row, whether it was inserted. The
    /// default inserts one by one; SQLite overrides it with one transaction.
    async fn fires_insert(&self, rows: &[Execution]) -> Result<Vec<bool>> {
        let mut inserted = Vec::with_capacity(rows.len());
        for row in rows {
            inserted.push(self.execution_insert(row).await?);
        }
        Ok(inserted)
    }
    /// `schedule_id`'s fire records (skipped ones included), newest fire
    /// first; `page.before` is a fire time in Unix milliseconds (as text).
    async fn fires_list(
        &self,
        tenant: &str,
        schedule_id: &str,
        filter: &FireFilter,
        page: &PageQuery,
    ) -> Result<Vec<Execution>>;
    /// (fate, reason, count) of `schedule_id`'s fire records with a fire
    /// time at or after `since`.
    async fn fires_count(
        &self,
        schedule_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, Option<String>, u64)>>;
    /// Whether [`Backend::executions_claim`] and
    /// [`Backend::execution_write_fenced`] are available; otherwise the store
    /// claims and completes by compare-and-swap, one execution at a time.
    fn batch_claims(&self) -> bool {
        false
    }
    /// Claims those of `ids` that are still queued and due at `order.now`,
    /// each with a fresh fencing token, in one transaction. Returns the
    /// claimed executions.
    async fn executions_claim(
        &self,
        _ids: &[String],
        _order: &ClaimOrder,
    ) -> Result<Vec<Execution>> {
        Err(StoreError::backend(format!(
            "batch claims are not supported by {}",
            self.kind()
        )))
    }
    /// Writes `execution`, finished by the node that ran it (a final status:
    /// nothing but the status, the lease, the expiry and the document
    /// changed), if `held` is still its lease; returns its new version, or
    /// `None` if the lease was lost. Only called when [`Backend::batch_claims`].
    async fn execution_write_fenced(
        &self,
        execution: &Execution,
        _held: &Lease,
    ) -> Result<Option<u64>> {
        Err(StoreError::backend(format!(
            "fenced writes of {} are not supported by {}",
            execution.id,
            self.kind()
        )))
    }
    /// How many of `tenant`'s executions are queued.
    async fn executions_queued_count(&self, tenant: &str) -> Result<u64>;
    /// Deletes up to `limit` executions whose `expires_at` is at or before
    /// `now`; returns how many.
    async fn executions_delete_expired(&self, now: DateTime<Utc>, limit: u32) -> Result<u64>;
    /// Plugins (count and bytes) and schedules of `tenant`.
    async fn tenant_usage(&self, tenant: &str) -> Result<Usage>;
    /// Running executions whose lease expired before `now`.
    async fn executions_expired(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Execution>>;
    /// The queued and running executions of these schedules.
    async fn executions_active(&self, schedule_ids: &[String]) -> Result<Vec<Execution>>;
    /// Finished executions whose webhooks are due by `now`, soonest first.
    async fn executions_notify_due(&self, now: DateTime<Utc>, limit: u32)
    -> Result<Vec<Execution>>;

    // Locks: a named lock held by one owner until `expires_at`.
    /// Takes the lock if it is free, expired, or already `owner`'s.
    async fn lock_acquire(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool>;
    /// Extends the lock if `owner` still holds it.
    async fn lock_renew(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool>;
    /// Releases the lock if `owner` holds it.
    async fn lock_release(&self, name: &str, owner: &str) -> Result<bool>;

    // Plugin key-value state.
    async fn kv_get(&self, tenant: &str, plugin: &str, key: &str) -> Result<Option<Vec<u8>>>;
    /// Stores a value; with a quota, refuses (`Quota`) a write that would take
    /// the tenant past it, checked against its keys and bytes in the write.
    async fn kv_set(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
        value: &[u8],
        quota: Option<KvQuota>,
    ) -> Result<()>;
    async fn kv_delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<bool>;

    // Tenant secrets, sealed (see `crate::secrets`): the store never sees a value.
    /// Stores `tenant`'s secret `name`, new (version 1) or replacing the
    /// sealed value (version + 1). A new one past `max` secrets of the
    /// tenant is refused (`Quota`).
    async fn secret_put(
        &self,
        tenant: &str,
        name: &str,
        sealed: &[u8],
        now: DateTime<Utc>,
        max: u64,
    ) -> Result<SecretInfo>;
    /// `tenant`'s secrets, by name.
    async fn secret_list(&self, tenant: &str) -> Result<Vec<SecretInfo>>;
    /// A secret's sealed value.
    async fn secret_get(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>>;
    async fn secret_delete(&self, tenant: &str, name: &str) -> Result<bool>;

    // Node heartbeats.
    /// Writes a node's heartbeat, keeping its drain flag (which only
    /// `node_drain` sets); returns that flag.
    async fn node_upsert(&self, node: &NodeInfo) -> Result<bool>;
    /// Nodes whose heartbeat has not expired at `now`, with their drain flags.
    async fn nodes_alive(&self, now: DateTime<Utc>) -> Result<Vec<NodeInfo>>;
    /// Asks a node to drain; false if there is no such node.
    async fn node_drain(&self, id: &str) -> Result<bool>;
    async fn node_remove(&self, id: &str) -> Result<bool>;

    /// Starts telling `news` of every execution that becomes queued in the
    /// store, also through other processes (MongoDB change streams). Returns
    /// false where the backend or server cannot; nodes then rely on their
    /// refill interval.
    async fn watch_executions(&self, _news: std::sync::Arc<super::news::News>) -> bool {
        false
    }
}

/// The unique key of an execution's fire: `schedule-id@fire-time` for a
/// scheduled fire, the execution's own id otherwise (never a conflict).
pub(crate) fn fire_key(e: &Execution) -> String {
    match (&e.schedule_id, e.fire_time) {
        (Some(schedule), Some(fire)) => format!("{schedule}@{}", fire.timestamp_millis()),
        _ => e.id.clone(),
    }
}

/// A record as every backend stores it: the fields queries filter and sort
/// on (times as Unix milliseconds), and the whole record as a JSON document.
/// Both backends build their rows here, so they index exactly the same data.
pub(crate) struct Row {
    pub id: String,
    pub doc: String,
    pub fields: Vec<(&'static str, Field)>,
}

/// One indexed field's value.
#[derive(Debug, Clone)]
pub(crate) enum Field {
    Text(String),
    Int(i64),
    Null,
}

impl Field {
    fn time(t: Option<DateTime<Utc>>) -> Field {
        t.map_or(Field::Null, |t| Field::Int(t.timestamp_millis()))
    }
    fn text(t: Option<&str>) -> Field {
        t.map_or(Field::Null, |t| Field::Text(t.to_owned()))
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Reads a record back from its JSON document.
pub(crate) fn from_doc<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn plugin_row(p: &PluginRecord) -> Result<Row> {
    Ok(Row {
        id: p.id.clone(),
        doc: json(p)?,
        fields: vec![
            ("tenant", Field::Text(p.tenant.clone())),
            ("name", Field::Text(p.name.clone())),
            ("version", Field::Text(p.version.clone())),
        ],
    })
}

pub(crate) fn schedule_row(s: &Schedule) -> Result<Row> {
    Ok(Row {
        id: s.id.clone(),
        doc: json(s)?,
        fields: vec![
            ("tenant", Field::Text(s.tenant.clone())),
            ("name", Field::Text(s.name.clone())),
            ("plugin_id", Field::Text(s.plugin_id.clone())),
            ("plugin_alias", Field::text(s.plugin_alias.as_deref())),
            ("paused", Field::Int(s.paused as i64)),
            ("next_fire_at", Field::time(s.next_fire_at)),
            ("version", Field::Int(s.version as i64)),
        ],
    })
}

pub(crate) fn execution_row(e: &Execution) -> Result<Row> {
    let fate = e.schedule_id.as_ref().and_then(|_| e.fire_fate());
    Ok(Row {
        id: e.id.clone(),
        doc: json(e)?,
        fields: vec![
            ("tenant", Field::Text(e.tenant.clone())),
            ("fire_key", Field::Text(fire_key(e))),
            ("schedule_id", Field::text(e.schedule_id.as_deref())),
            ("plugin_id", Field::Text(e.plugin_id.clone())),
            ("status", Field::Text(e.status.as_str().to_owned())),
            ("priority", Field::Int(e.policy.priority.into())),
            ("due_at", Field::time(Some(e.due_at))),
            ("lease_expires_at", Field::time(e.lease_expires_at)),
            ("lease_owner", Field::text(e.lease_owner.as_deref())),
            ("lease_token", Field::text(e.lease_token.as_deref())),
            ("node", Field::text(e.node.as_deref())),
            ("started_at", Field::time(e.started_at)),
            ("created_at", Field::time(Some(e.created_at))),
            ("expires_at", Field::time(e.expires_at)),
            ("notify_due_at", Field::time(e.notify_due_at)),
            (
                "fire_at",
                Field::time(e.fire_time.filter(|_| e.schedule_id.is_some())),
            ),
            ("fate", Field::text(fate.map(|(f, _)| f.as_str()))),
            (
                "fire_reason",
                Field::text(fate.and_then(|(_, r)| r).map(|r| r.as_str())),
            ),
            ("version", Field::Int(e.version as i64)),
        ],
    })
}

pub(crate) fn node_row(n: &NodeInfo) -> Result<Row> {
    Ok(Row {
        id: n.id.clone(),
        doc: json(n)?,
        fields: vec![("expires_at", Field::time(Some(n.expires_at)))],
    })
}
