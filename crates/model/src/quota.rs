//! Per-tenant quotas: how much a tenant may keep and ask for.
//!
//! A node has defaults for every quota ([`Quotas::default`], changed in the
//! config file's `[quotas.default]`), and per-tenant overrides
//! (`[quotas.tenants.NAME]`). Whatever would take a tenant past a quota is
//! refused with [`QuotaExceeded`], which names the quota and its value;
//! nothing already stored is touched. The checks are made where the thing is
//! created: uploads and schedules by the API, executions by the scheduler's
//! one enqueue path, kv writes by the store inside the write, API requests by
//! the auth extractor (a token bucket per tenant).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Every quota of one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quotas {
    /// Plugin versions kept.
    pub plugins: u64,
    /// Bytes of wasm kept over all plugin versions.
    pub plugin_bytes: u64,
    /// Schedules kept.
    pub schedules: u64,
    /// The shortest period between two fires of a schedule.
    #[serde(with = "crate::time::duration")]
    pub min_schedule_period: Duration,
    /// Executions waiting in the queue at once.
    pub queued_executions: u64,
    /// Keys in the tenant's plugin kv state, over all its plugins.
    pub kv_keys: u64,
    /// Bytes (keys and values) of kv state.
    pub kv_bytes: u64,
    /// API requests per second (sustained).
    pub requests_per_second: u32,
    /// API requests in a burst above the sustained rate.
    pub request_burst: u32,
    /// CPU-seconds of compiling uploads per hour (a bucket refilled
    /// continuously; refused compiles count too).
    pub compile_seconds_per_hour: u64,
    /// Executions kept (fire records included), until their retention ends.
    pub stored_executions: u64,
    /// Bytes of kept executions: inputs, outputs, logs, all of each record.
    pub stored_bytes: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            plugins: 100,
            plugin_bytes: 1 << 30,
            schedules: 1000,
            min_schedule_period: Duration::from_secs(1),
            queued_executions: 100_000,
            kv_keys: 100_000,
            kv_bytes: 256 << 20,
            requests_per_second: 1000,
            request_burst: 2000,
            compile_seconds_per_hour: 600,
            stored_executions: 1_000_000,
            stored_bytes: 10 << 30,
        }
    }
}

/// Quotas as the config file gives them: any subset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverrides {
    pub plugins: Option<u64>,
    pub plugin_bytes: Option<u64>,
    pub schedules: Option<u64>,
    #[serde(default, with = "crate::time::option_duration")]
    pub min_schedule_period: Option<Duration>,
    pub queued_executions: Option<u64>,
    pub kv_keys: Option<u64>,
    pub kv_bytes: Option<u64>,
    pub requests_per_second: Option<u32>,
    pub request_burst: Option<u32>,
    pub compile_seconds_per_hour: Option<u64>,
    pub stored_executions: Option<u64>,
    pub stored_bytes: Option<u64>,
}

impl QuotaOverrides {
    fn apply(&self, q: &mut Quotas) {
        let QuotaOverrides {
            plugins,
            plugin_bytes,
            schedules,
            min_schedule_period,
            queued_executions,
            kv_keys,
            kv_bytes,
            requests_per_second,
            request_burst,
            compile_seconds_per_hour,
            stored_executions,
            stored_bytes,
        } = self;
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = $f { q.$f = *v; } )* };
        }
        set!(
            plugins,
            plugin_bytes,
            schedules,
            min_schedule_period,
            queued_executions,
            kv_keys,
            kv_bytes,
            requests_per_second,
            request_burst,
            compile_seconds_per_hour,
            stored_executions,
            stored_bytes
        );
    }
}

/// The `[quotas]` section of the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Changes to the built-in defaults, for every tenant.
    pub default: QuotaOverrides,
    /// Per-tenant changes on top of those.
    pub tenants: BTreeMap<String, QuotaOverrides>,
}

impl QuotaConfig {
    /// The quotas of `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> Quotas {
        let mut q = Quotas::default();
        self.default.apply(&mut q);
        if let Some(o) = self.tenants.get(tenant) {
            o.apply(&mut q);
        }
        q
    }
}

/// Every quota by name, as the config file and error details spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaKind {
    Plugins,
    PluginBytes,
    Schedules,
    MinSchedulePeriod,
    QueuedExecutions,
    KvKeys,
    KvBytes,
    Secrets,
    RevokedTokens,
    CompileSecondsPerHour,
    StoredExecutions,
    StoredBytes,
    Hooks,
    ApiKeys,
}

impl QuotaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaKind::Plugins => "plugins",
            QuotaKind::PluginBytes => "plugin_bytes",
            QuotaKind::Schedules => "schedules",
            QuotaKind::MinSchedulePeriod => "min_schedule_period",
            QuotaKind::QueuedExecutions => "queued_executions",
            QuotaKind::KvKeys => "kv_keys",
            QuotaKind::KvBytes => "kv_bytes",
            QuotaKind::Secrets => "secrets",
            QuotaKind::RevokedTokens => "revoked_tokens",
            QuotaKind::CompileSecondsPerHour => "compile_seconds_per_hour",
            QuotaKind::StoredExecutions => "stored_executions",
            QuotaKind::StoredBytes => "stored_bytes",
            QuotaKind::Hooks => "hooks",
            QuotaKind::ApiKeys => "api_keys",
        }
    }

    /// Whether it counts bytes (its values are shown with " bytes").
    pub fn counts_bytes(self) -> bool {
        matches!(
            self,
            QuotaKind::PluginBytes | QuotaKind::KvBytes | QuotaKind::StoredBytes
        )
    }

    /// Whether it drains by itself (so a refusal is "try again later").
    pub fn drains(self) -> bool {
        matches!(
            self,
            QuotaKind::QueuedExecutions | QuotaKind::CompileSecondsPerHour
        )
    }
}

impl std::fmt::Display for QuotaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A quota that a request would exceed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct QuotaExceeded {
    pub quota: QuotaKind,
    pub limit: u64,
    /// What the tenant would have after the request.
    pub wanted: u64,
}

impl std::fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = if self.quota.counts_bytes() {
            " bytes"
        } else {
            ""
        };
        write!(
            f,
            "quota {} is {}{unit}; this would make it {}{unit}",
            self.quota, self.limit, self.wanted
        )
    }
}

impl QuotaExceeded {
    /// Checks `current + adding` against `limit`.
    pub fn check(
        quota: QuotaKind,
        limit: u64,
        current: u64,
        adding: u64,
    ) -> Result<(), QuotaExceeded> {
        let wanted = current.saturating_add(adding);
        if wanted <= limit {
            return Ok(());
        }
        Err(QuotaExceeded {
            quota,
            limit,
            wanted,
        })
    }
}
