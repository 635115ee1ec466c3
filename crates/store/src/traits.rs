//! The store's contract: one trait per concern, each implemented by both
//! backends ([`crate::sqlite`], [`crate::mongo`]) and checked by its part of
//! the conformance suite (`tests/tests/store/`). A backend implements all of
//! them; nothing is optional, so a backend that cannot do a thing does not
//! compile rather than answering "not supported" at run time.
//!
//! The rules written once for both backends — tenancy, execution state
//! transitions, leases, the fire ledger's rules, paging — are in
//! [`crate::Store`], which speaks to a [`Backend`].

use crate::Lease;
use crate::backend::{
    ClaimOrder, ExecutionChange, ExecutionFilter, FireFilter, PageQuery, PassWritten, PluginFilter,
    Queued, Result, ScheduleFilter, Usage,
};
use chrono::{DateTime, Utc};
use taskhost_model::apikey::ApiKeyRecord;
use taskhost_model::audit::AuditRecord;
use taskhost_model::effects::KvEffects;
use taskhost_model::kv::KvQuota;
use taskhost_model::quota::Quotas;
use taskhost_model::{
    Execution, HookRecord, IdempotencyRecord, NodeInfo, PluginAlias, PluginRecord, Revocation,
    Schedule, SecretInfo,
};

/// Plugins, their wasm, and their aliases (`name@alias`). A changed record
/// is written only whole; `plugin_insert` fails with `Conflict` on a
/// duplicate (tenant, name, version).
#[async_trait::async_trait]
pub trait PluginStore: Send + Sync {
    /// Inserts a plugin version and its wasm, within the tenant's `plugins`
    /// and `plugin_bytes` quotas (`Quota` otherwise), checked inside the
    /// write so that racing uploads cannot pass them.
    async fn plugin_insert(
        &self,
        plugin: &PluginRecord,
        wasm: &[u8],
        quota: Option<&Quotas>,
    ) -> Result<()>;
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
    /// Plugins (count and bytes) and schedules of `tenant`.
    async fn tenant_usage(&self, tenant: &str) -> Result<Usage>;
}

/// Schedules and their fire ledger. A schedule changes by compare-and-swap
/// on its `version` (`schedule_replace`); `schedule_insert` fails with
/// `Conflict` on a duplicate (tenant, name).
#[async_trait::async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Inserts a schedule, if the tenant keeps fewer than `max` (`Quota`
    /// otherwise; checked inside the write).
    async fn schedule_insert(&self, schedule: &Schedule, max: Option<u64>) -> Result<()>;
    async fn schedule_get(&self, id: &str) -> Result<Option<Schedule>>;
    async fn schedule_replace(&self, schedule: &Schedule, expected_version: u64) -> Result<bool>;
    async fn schedule_list(
        &self,
        tenant: &str,
        filter: &ScheduleFilter,
        page: &PageQuery,
    ) -> Result<Vec<Schedule>>;
    async fn schedule_delete(&self, id: &str) -> Result<bool>;
    /// Schedules with `next_fire_at <= before` (paused ones too: their
    /// fires are recorded as skipped), soonest first; only those of
    /// `partitions` when given.
    async fn schedules_due(
        &self,
        before: DateTime<Utc>,
        partitions: Option<&[u32]>,
        limit: u32,
    ) -> Result<Vec<Schedule>>;
    /// Records a pass of the fire path: each fire's row (an execution or a
    /// `skipped` record) unless its fire key is taken, then each schedule's
    /// new state (its cursor moved) if its stored version is still the one
    /// before (`version - 1`). One transaction on SQLite; on MongoDB one
    /// unordered `insertMany`, then the moves, each by `_id` and version.
    async fn fires_record(&self, rows: &[Execution], moves: &[Schedule]) -> Result<PassWritten>;
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
}

/// Executions and the queue: inserts (a fire's unique key makes it
/// materialize once), atomic updates, batched claims, fenced completions,
/// and what nodes load into their heaps.
#[async_trait::async_trait]
pub trait ExecutionStore: Send + Sync {
    async fn execution_insert(&self, execution: &Execution) -> Result<bool>;
    async fn execution_get(&self, id: &str) -> Result<Option<Execution>>;
    /// The executions of `ids` that exist, in any order (one store call).
    async fn execution_get_many(&self, ids: &[String]) -> Result<Vec<Execution>>;
    /// Applies `change` to an execution atomically (read, change and
    /// write as one: a transaction on SQLite, a compare-and-swap on the
    /// version on MongoDB); `None` if it is unknown or `change` refused.
    async fn execution_update(
        &self,
        id: &str,
        change: ExecutionChange,
    ) -> Result<Option<Execution>>;
    /// [`ExecutionStore::execution_update`] that also writes a run's held
    /// kv writes (see `taskhost_model::effects`), in one transaction:
    /// neither is written if `change` refuses, and a quota the writes now
    /// break (`Quota`) undoes both.
    async fn execution_update_committing(
        &self,
        id: &str,
        change: ExecutionChange,
        effects: &KvEffects,
    ) -> Result<Option<Execution>>;
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
    /// Stores new executions all or none (one transaction on SQLite; one
    /// `insertMany` of unique ids on MongoDB): `Conflict` if any is taken.
    async fn execution_insert_many(&self, executions: &[Execution]) -> Result<()>;
    /// Claims those of `ids` that are still queued and due at `order.now`,
    /// each with a fresh fencing token (one transaction on SQLite; one
    /// conditional update by `_id` each, at once, on MongoDB). Returns the
    /// claimed executions; an error only if none could be claimed for it.
    async fn executions_claim(&self, ids: &[String], order: &ClaimOrder) -> Result<Vec<Execution>>;
    /// Writes `execution`, finished by the node that ran it (a final status:
    /// nothing but the status, the lease, the expiry and the document
    /// changed), if `held` is still its lease; returns its new version, or
    /// `None` if the lease was lost.
    async fn execution_write_fenced(
        &self,
        execution: &Execution,
        held: &Lease,
    ) -> Result<Option<u64>>;
    /// How many of `tenant`'s executions are queued.
    async fn executions_queued_count(&self, tenant: &str) -> Result<u64>;
    /// How many executions (fire records included) `tenant` keeps, and the
    /// bytes of their stored documents (input, output, logs and all).
    async fn executions_stored(&self, tenant: &str) -> Result<(u64, u64)>;
    /// Deletes up to `limit` executions whose `expires_at` is at or before
    /// `now`; returns how many.
    async fn executions_delete_expired(&self, now: DateTime<Utc>, limit: u32) -> Result<u64>;
    /// Running executions whose lease expired before `now`.
    async fn executions_expired(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Execution>>;
    /// The queued and running executions of these schedules.
    async fn executions_active(&self, schedule_ids: &[String]) -> Result<Vec<Execution>>;
    /// Finished executions whose webhooks are due by `now`, soonest first,
    /// of tenants other than `skip` (those whose delivery slots are full).
    async fn executions_notify_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<Execution>>;

    /// Starts telling `news` of every execution that becomes queued in the
    /// store, also through other processes (MongoDB change streams). Returns
    /// false where the backend or server cannot; nodes then rely on their
    /// refill interval.
    async fn watch_executions(&self, _news: std::sync::Arc<crate::news::News>) -> bool {
        false
    }
}

/// Plugins' key-value state, scoped to tenant and plugin.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync {
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
    /// The tenant's kv keys and bytes.
    async fn kv_usage(&self, tenant: &str) -> Result<(u64, u64)>;
}

/// Tenant secrets, sealed (see `taskhost_model::secrets`): the store never
/// sees a value.
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync {
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
}

/// Revoked tokens, by (tenant, `jti`), kept until the tokens would have
/// expired anyway. Every node reads them all into its cache.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync {
    /// Records a revocation; false if the tenant had revoked that `jti`
    /// already. Forgets the tenant's expired ones; a tenant keeping `max`
    /// unexpired is refused (`Quota`).
    async fn token_revoke(
        &self,
        revocation: &Revocation,
        now: DateTime<Utc>,
        max: u64,
    ) -> Result<bool>;
    /// The revocations not expired at `now`, of one tenant or all, oldest first.
    async fn tokens_revoked(
        &self,
        tenant: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Revocation>>;
}

/// API keys (see [`taskhost_model::apikey`]), by id; their secrets only as
/// hashes. Every node reads them through a short-lived cache.
#[async_trait::async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key unless its tenant has `max` already (`Quota`).
    async fn api_key_insert(&self, key: &ApiKeyRecord, max: u64) -> Result<()>;
    async fn api_key_get(&self, id: &str) -> Result<Option<ApiKeyRecord>>;
    /// `tenant`'s keys, newest first.
    async fn api_key_list(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>>;
    /// Deletes (revokes) a key; false if the tenant has no such key.
    async fn api_key_delete(&self, tenant: &str, id: &str) -> Result<bool>;
    /// Writes a key's `last_used_at`, if the key still exists.
    async fn api_key_touch(&self, key: &ApiKeyRecord) -> Result<()>;
}

/// Idempotency keys: the first answer to a request, by (tenant, key),
/// under a unique index so that nodes racing with one key agree.
#[async_trait::async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Stores `record` unless an unexpired one of its (tenant, key) exists
    /// at `now`; returns that one instead (an expired one is replaced).
    async fn idempotency_put(
        &self,
        record: &IdempotencyRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>>;
}

/// Hooks (see `taskhost_model::hook`), by id: a hook's request names only
/// its id, so ids are unique across tenants.
#[async_trait::async_trait]
pub trait HookStore: Send + Sync {
    /// Stores a new hook if its tenant has fewer than `max` (`Quota` otherwise).
    async fn hook_insert(&self, hook: &HookRecord, max: u64) -> Result<()>;
    async fn hook_get(&self, id: &str) -> Result<Option<HookRecord>>;
    /// `tenant`'s hooks, newest first.
    async fn hook_list(&self, tenant: &str) -> Result<Vec<HookRecord>>;
    /// Replaces a hook if its stored version is `expected`.
    async fn hook_replace(&self, hook: &HookRecord, expected: u64) -> Result<bool>;
    async fn hook_delete(&self, tenant: &str, id: &str) -> Result<bool>;
}

/// Debounce keys (see `taskhost_model::flow`): each key's pending run, by
/// (tenant, key), changed only by compare-and-swap so that racing nodes
/// agree on which run is the burst's last.
#[async_trait::async_trait]
pub trait DebounceStore: Send + Sync {
    /// The key's pending run, if its record has not expired at `now`.
    async fn debounce_pending(
        &self,
        tenant: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>>;
    /// Makes `new` the key's pending run, kept until `expires_at`, if the
    /// pending one is still `expected` (`None`: none, or expired at `now`).
    async fn debounce_swap(
        &self,
        tenant: &str,
        key: &str,
        expected: Option<&str>,
        new: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool>;
}

/// The audit log (see `taskhost_model::audit`): records by id, per tenant.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync {
    /// Stores a record; forgets some expired ones at `now`.
    async fn audit_append(&self, record: &AuditRecord, now: DateTime<Utc>) -> Result<()>;
    /// Records newest first: of one tenant, or of all.
    async fn audit_list(&self, tenant: Option<&str>, page: &PageQuery) -> Result<Vec<AuditRecord>>;
}

/// Coordination of the nodes sharing a store: named locks held by one
/// owner until they expire, and the nodes' heartbeats.
#[async_trait::async_trait]
pub trait ClusterStore: Send + Sync {
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

    /// Writes a node's heartbeat, keeping its drain flag (which only
    /// `node_drain` sets); returns that flag.
    async fn node_upsert(&self, node: &NodeInfo) -> Result<bool>;
    /// Nodes whose heartbeat has not expired at `now`, with their drain flags.
    async fn nodes_alive(&self, now: DateTime<Utc>) -> Result<Vec<NodeInfo>>;
    /// Asks a node to drain; false if there is no such node.
    async fn node_drain(&self, id: &str) -> Result<bool>;
    async fn node_remove(&self, id: &str) -> Result<bool>;
}

/// A storage backend: every concern, and what identifies and checks it.
#[async_trait::async_trait]
pub trait Backend:
    PluginStore
    + ScheduleStore
    + ExecutionStore
    + StateStore
    + SecretStore
    + TokenStore
    + ApiKeyStore
    + IdempotencyStore
    + HookStore
    + DebounceStore
    + AuditStore
    + ClusterStore
    + 'static
{
    /// Short name for logs: "sqlite" or "mongodb".
    fn kind(&self) -> &'static str;

    /// Checks that the store answers (for readiness probes).
    async fn ping(&self) -> Result<()>;
}
