//! The data model shared by the stores, the scheduler and the API.
//!
//! Every record belongs to a tenant. Ids are UUIDv7 strings, so they sort by
//! creation time; lists page by id. Times are UTC with millisecond precision.
//! Records that change after creation carry a `version`, bumped on every write,
//! so that stores can update them with compare-and-swap (see `store`).

use crate::policy::RunPolicy;
use crate::time::add_saturating;
use crate::{Delivery, FireInfo, Outcome, webhook};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A new time-ordered id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// An uploaded plugin version. Its wasm bytes are stored beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginRecord {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub version: String,
    /// Hex sha256 of the wasm bytes.
    pub sha256: String,
    /// Size of the wasm bytes.
    pub size: u64,
    /// The world it targets, e.g. `taskhost:plugin/task@0.1.0`.
    pub world: String,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    /// Who uploaded it (the token's subject).
    pub created_by: String,
}

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// A cron expression (5 fields, or 6 with seconds first) in an IANA time zone.
    Cron {
        expr: String,
        #[serde(default = "utc")]
        timezone: String,
    },
    /// Every fixed interval, counted from `start_at` (or from creation).
    Interval {
        #[serde(with = "crate::time::duration")]
        #[schema(value_type = String, example = "5s")]
        every: Duration,
        #[serde(
            default,
            with = "crate::time::option_utc",
            skip_serializing_if = "Option::is_none"
        )]
        start_at: Option<DateTime<Utc>>,
    },
    /// Once, at a time.
    Once {
        #[serde(with = "crate::time::utc")]
        at: DateTime<Utc>,
    },
    /// Only when triggered by hand.
    Manual {},
    /// When an event with this name arrives (`POST /v1/events` or a hook)
    /// whose data matches `filter` (see `taskhost_model::event::matches`).
    Event {
        #[schema(pattern = r"^[A-Za-z0-9_.:/-]{1,200}$", example = "github.push")]
        name: String,
        /// Fields the event's data must have; any event of the name if unset.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<serde_json::Value>,
    },
}

fn utc() -> String {
    "UTC".into()
}

/// How failed runs are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retry.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    #[serde(with = "crate::time::duration")]
    #[schema(value_type = String, example = "5s")]
    pub initial_backoff: Duration,
    /// The longest delay between attempts.
    #[serde(with = "crate::time::duration")]
    #[schema(value_type = String, example = "5s")]
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// What happens after an attempt that may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Queue attempt + 1 at this time.
    RetryAt(DateTime<Utc>),
    /// No attempt is left.
    GiveUp,
}

impl RetryPolicy {
    /// A single attempt: what ad hoc runs get unless they ask for more.
    pub const ONCE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(300),
    };

    /// The one place retries are decided: after attempt `attempt` of
    /// execution `id` failed in a way that may be retried (a retryable plugin
    /// failure, or a lease that expired under a dead node), retry after a
    /// backoff or give up. Time arithmetic saturates; no input can overflow it.
    pub fn after_attempt(&self, attempt: u32, id: &str, now: DateTime<Utc>) -> RetryDecision {
        if attempt >= self.max_attempts {
            return RetryDecision::GiveUp;
        }
        RetryDecision::RetryAt(add_saturating(now, self.backoff(attempt, id)))
    }

    /// After the host's `faults`-th failure to run or record an attempt (a
    /// store error before the plugin started, a result it could not save, a
    /// lease lost with its node): the same attempt runs again after a short
    /// backoff — host faults never use up the plugin's attempts — unless the
    /// host has failed [`MAX_HOST_FAULTS`] times (a plugin that takes its
    /// node down every time must not loop for ever).
    pub fn after_host_fault(&self, faults: u32, now: DateTime<Utc>) -> RetryDecision {
        if faults >= MAX_HOST_FAULTS {
            return RetryDecision::GiveUp;
        }
        // The first fault is retried at once (a lost lease has waited out
        // the lease already); then 1 s, doubling.
        let backoff = match faults {
            0 | 1 => Duration::ZERO,
            n => HOST_FAULT_BACKOFF
                .saturating_mul(1 << (n - 2).min(16))
                .min(MAX_HOST_FAULT_BACKOFF),
        };
        RetryDecision::RetryAt(add_saturating(now, backoff))
    }

    /// Exponential backoff with jitter: `initial * 2^(attempt-1)`, capped at
    /// `max_backoff`, then scaled into [50%, 100%) by a spread that is stable per
    /// execution and attempt (so every node computes the same retry time).
    pub fn backoff(&self, attempt: u32, id: &str) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let full = self
            .initial_backoff
            .saturating_mul(1 << exponent)
            .min(self.max_backoff);
        full.mul_f64(0.5 + 0.5 * spread(&format!("{id}#{attempt}")))
    }
}

/// How many host faults an execution survives before it is `dead`.
pub const MAX_HOST_FAULTS: u32 = 20;
/// Backoff after the second host fault (the first is retried at once); it
/// doubles with each, up to [`MAX_HOST_FAULT_BACKOFF`].
pub const HOST_FAULT_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_HOST_FAULT_BACKOFF: Duration = Duration::from_secs(60);

/// A number in [0, 1) derived from `key`: the same on every node.
pub fn spread(key: &str) -> f64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// Schedules fall into this many partitions (by a hash of their id); each
/// partition's fires are made by one node at a time (see the scheduler).
pub const PARTITIONS: u32 = 64;

/// The partition of a schedule: the same on every node and every release.
pub fn partition_of(schedule_id: &str) -> u32 {
    ((spread(schedule_id) * f64::from(PARTITIONS)) as u32).min(PARTITIONS - 1)
}

/// What to do when a schedule fires while its previous run is still going.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Run both.
    #[default]
    Allow,
    /// Drop the new fire.
    Skip,
    /// Keep at most one fire waiting behind the running one.
    BufferOne,
    /// Cancel the running one, then run the new one.
    CancelPrevious,
}

/// What to do with fires missed while no node was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CatchUp {
    pub mode: CatchUpMode,
    /// Fires older than this are never caught up.
    #[serde(with = "crate::time::duration")]
    #[schema(value_type = String, example = "5s")]
    pub window: Duration,
}

impl Default for CatchUp {
    fn default() -> Self {
        CatchUp {
            mode: CatchUpMode::Once,
            window: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUpMode {
    /// Skip every missed fire.
    Skip,
    /// Run once for all the missed fires in the window.
    #[default]
    Once,
    /// Run every missed fire in the window.
    All,
}

/// A plugin run on a trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Schedule {
    pub id: String,
    pub tenant: String,
    pub name: String,
    /// The plugin it runs: the one it is pinned to, or (with
    /// `plugin_alias`) the one its alias pointed to at its last fire.
    pub plugin_id: String,
    /// The alias it follows (`name@stable`, `name@latest`): each fire runs
    /// the version the alias points to then. None: pinned to `plugin_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_alias: Option<String>,
    pub trigger: Trigger,
    /// What its runs may do: input, limits, retries, secrets, network, …
    #[serde(flatten)]
    pub policy: RunPolicy,
    #[serde(default)]
    pub overlap: OverlapPolicy,
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Random delay added to each fire, up to this much.
    #[serde(default, with = "crate::time::duration")]
    #[schema(value_type = String, example = "0s")]
    pub jitter: Duration,
    /// No fires before this time.
    #[serde(
        default,
        with = "crate::time::option_utc",
        skip_serializing_if = "Option::is_none"
    )]
    pub starts_at: Option<DateTime<Utc>>,
    /// No fires after this time.
    #[serde(
        default,
        with = "crate::time::option_utc",
        skip_serializing_if = "Option::is_none"
    )]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub paused: bool,
    /// Set by a resume: the fires before it fell in the pause (recorded as
    /// `skipped: paused`, not caught up). Cleared once the cursor passes it.
    #[serde(
        default,
        with = "crate::time::option_utc",
        skip_serializing_if = "Option::is_none"
    )]
    pub paused_until: Option<DateTime<Utc>>,
    /// The next fire to decide (while paused: the next to record as paused).
    #[serde(default, with = "crate::time::option_utc")]
    pub next_fire_at: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::time::option_utc")]
    pub last_fire_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub version: u64,
}

/// Where an execution is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Waiting until it is due and a node claims it.
    Queued,
    /// Claimed by a node, which holds a lease on it.
    Running,
    /// The last attempt succeeded.
    Succeeded,
    /// The last attempt failed and is not retried (see the outcome).
    Failed,
    /// Cancelled before it finished.
    Cancelled,
    /// Every attempt failed.
    Dead,
    /// A fire that did not run: its record in the schedule's fire ledger
    /// (see `GET /v1/schedules/{id}/fires`). Listed only when asked for.
    Skipped,
    /// Folded into a later run of its debounce key (`debounced_into`), which
    /// runs in its place.
    Debounced,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "queued",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Cancelled => "cancelled",
            ExecutionStatus::Dead => "dead",
            ExecutionStatus::Skipped => "skipped",
            ExecutionStatus::Debounced => "debounced",
        }
    }

    /// Every status.
    pub const ALL: [ExecutionStatus; 8] = [
        ExecutionStatus::Queued,
        ExecutionStatus::Running,
        ExecutionStatus::Succeeded,
        ExecutionStatus::Failed,
        ExecutionStatus::Cancelled,
        ExecutionStatus::Dead,
        ExecutionStatus::Skipped,
        ExecutionStatus::Debounced,
    ];

    /// The status named `name` (as [`ExecutionStatus::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the execution is over.
    pub fn is_final(self) -> bool {
        !matches!(self, ExecutionStatus::Queued | ExecutionStatus::Running)
    }
}

/// One run of a plugin, with its retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Execution {
    pub id: String,
    pub tenant: String,
    /// The schedule that fired it; none for ad hoc runs.
    #[serde(default)]
    pub schedule_id: Option<String>,
    pub plugin_id: String,
    /// The schedule's fire time this execution is for; with the schedule id it
    /// is unique, so a fire materializes at most once.
    #[serde(default, with = "crate::time::option_utc")]
    pub fire_time: Option<DateTime<Utc>>,
    /// When it may run (later than the fire time for jitter and retries).
    #[serde(with = "crate::time::utc")]
    pub due_at: DateTime<Utc>,
    pub status: ExecutionStatus,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// What the run may do, copied from its schedule or request when the
    /// execution is made.
    #[serde(flatten)]
    pub policy: RunPolicy,
    /// The node holding the lease while running.
    #[serde(default)]
    pub lease_owner: Option<String>,
    /// The node that ran (or runs) its last attempt.
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default, with = "crate::time::option_utc")]
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The fencing token of the current claim. Every write of the running
    /// node names it, so a node whose lease was taken over cannot write late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<String>,
    /// Times the host failed to run or record this execution (store errors,
    /// lost leases); they do not use up attempts.
    #[serde(default)]
    pub host_faults: u32,
    /// Set when a cancel arrives while it runs; the running node stops it.
    #[serde(default)]
    pub cancel_requested: bool,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    #[serde(default, with = "crate::time::option_utc")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::time::option_utc")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The outcome of the last finished attempt.
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// When it will be removed: `finished_at + retention`, set when it ends.
    #[serde(default, with = "crate::time::option_utc")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Its webhook deliveries (see `GET /v1/executions/{id}/deliveries`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<Delivery>,
    /// When a node should next look at its webhooks: set when it ends with
    /// `notify` targets, cleared when every delivery is done.
    #[serde(
        default,
        with = "crate::time::option_utc",
        skip_serializing_if = "Option::is_none"
    )]
    pub notify_due_at: Option<DateTime<Utc>>,
    /// `debounced`: the later run of its debounce key it was folded into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounced_into: Option<String>,
    /// How its fire was decided (executions of a schedule's fires, and the
    /// `skipped` records of fires that did not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fire: Option<FireInfo>,
    /// The trace its runs join (when the node that made it traces): the
    /// request that made it, or its schedule's fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceIds>,
    /// A workflow's completed steps, in order (see [`crate::workflow`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<crate::workflow::StepRecord>,
    /// A suspended workflow's wait: for an event, or for children a join
    /// waits on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<crate::workflow::Wait>,
    /// A workflow's fuel over its suspended runs so far (see
    /// [`crate::workflow::TOTAL_FUEL_RUNS`]).
    #[serde(default, skip_serializing_if = "crate::outcome::is_zero")]
    pub workflow_fuel: u64,
    /// The workflow that spawned it, if it is a child run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<crate::workflow::Parent>,
    /// Events sent to it (`POST /v1/executions/{id}/events`) not taken yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbox: Vec<crate::event::Event>,
    #[serde(default)]
    pub version: u64,
}

/// A span's place in a trace (W3C trace context, lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TraceIds {
    /// The trace (32 hex digits), as trace viewers search for it.
    pub trace_id: String,
    /// The span its runs are children of (16 hex digits).
    pub span_id: String,
}

impl TraceIds {
    /// The ids of the current span, if it is traced.
    pub fn current() -> Option<TraceIds> {
        taskhost_net::trace::current().map(|(trace_id, span_id)| TraceIds { trace_id, span_id })
    }

    /// Makes `span` a child of this one (before it is first entered).
    pub fn parent(&self, span: &tracing::Span) {
        taskhost_net::trace::set_parent(span, &self.trace_id, &self.span_id);
    }
}

/// How long finished executions are kept unless the node or schedule says otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);

impl Execution {
    /// Leaves out its steps' results (their sizes stay): what lists show.
    pub fn without_step_results(mut self) -> Execution {
        for step in &mut self.steps {
            step.result = String::new();
        }
        self
    }

    /// A queued execution of `plugin_id`, due at `due_at`, in the trace of
    /// the current span.
    pub fn queued(
        tenant: &str,
        plugin_id: &str,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Self {
        Execution {
            id: new_id(),
            tenant: tenant.to_owned(),
            schedule_id: None,
            plugin_id: plugin_id.to_owned(),
            fire_time: None,
            due_at,
            status: ExecutionStatus::Queued,
            attempt: 1,
            policy: RunPolicy::default(),
            lease_owner: None,
            node: None,
            lease_expires_at: None,
            lease_token: None,
            host_faults: 0,
            cancel_requested: false,
            created_at: now,
            started_at: None,
            finished_at: None,
            outcome: None,
            expires_at: None,
            deliveries: Vec::new(),
            notify_due_at: None,
            trace: TraceIds::current(),
            steps: Vec::new(),
            waiting: None,
            workflow_fuel: 0,
            parent: None,
            inbox: Vec::new(),
            debounced_into: None,
            fire: None,
            version: 0,
        }
    }

    /// How long it is kept once finished.
    pub fn retention(&self) -> Duration {
        self.policy.retention.unwrap_or(DEFAULT_RETENTION)
    }

    /// Marks it finished at `now` with `status`, and sets when it expires.
    pub fn finish(&mut self, status: ExecutionStatus, now: DateTime<Utc>) {
        self.status = status;
        self.finished_at = Some(now);
        self.expires_at = Some(add_saturating(now, self.retention()));
        if self.parent.is_some() {
            // A child is kept while its parent may still join it: a
            // workflow lives at most its lifetime, and began before it.
            let parent_may_live = add_saturating(self.created_at, crate::workflow::MAX_LIFETIME);
            self.expires_at = self.expires_at.max(Some(parent_may_live));
        }
        self.lease_owner = None;
        self.lease_expires_at = None;
        if !self.policy.notify.is_empty() && self.deliveries.is_empty() {
            // Durable with the end itself: a node's deliverer plans and sends
            // the webhooks from here (`taskhost_scheduler::webhooks`); the record stays
            // while they may still be retried.
            self.notify_due_at = Some(now);
            let keep = add_saturating(now, webhook::KEEP_WHILE_DELIVERING);
            self.expires_at = self.expires_at.max(Some(keep));
        }
    }
}

/// A tenant's secret as the API shows it: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretInfo {
    pub name: String,
    /// 1 when made; one more at each new value.
    pub version: u64,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub updated_at: DateTime<Utc>,
}

/// The first answer to a request made with an `Idempotency-Key`: a retry
/// with the same key and request gets it again instead of new work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub tenant: String,
    pub key: String,
    /// What was asked: a hash of the operation and its body.
    pub request: String,
    /// The ids the first request made (executions, in order).
    pub ids: Vec<String>,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    /// When the key may be used for another request.
    #[serde(with = "crate::time::utc")]
    pub expires_at: DateTime<Utc>,
}

/// The most unexpired token revocations a tenant may keep.
pub const MAX_REVOKED_TOKENS_PER_TENANT: u64 = 10_000;

/// A revoked token: refused on every node until it would have expired
/// anyway. Kept per tenant (a tenant's admin revokes its own tokens only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Revocation {
    pub tenant: String,
    /// The token's `jti` claim.
    pub jti: String,
    /// Who revoked it (the caller's `sub`).
    pub revoked_by: String,
    #[serde(with = "crate::time::utc")]
    pub revoked_at: DateTime<Utc>,
    /// When the record may go: no token it names is valid after this.
    #[serde(with = "crate::time::utc")]
    pub expires_at: DateTime<Utc>,
}

/// A host node's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeInfo {
    pub id: String,
    /// Free-form description: host name, version, worker limit.
    #[serde(default)]
    pub description: String,
    /// What it does: `all` (API and runs), `api` (never runs anything) or
    /// `worker` (runs, and serves only health and metrics).
    #[serde(default)]
    pub role: Role,
    /// The taskhost version it runs.
    #[serde(default)]
    pub version: String,
    /// Runs it may have at once.
    #[serde(default)]
    pub workers: usize,
    /// Runs it had at its last heartbeat.
    #[serde(default)]
    pub in_flight: usize,
    /// Asked to drain: it claims nothing more and finishes its runs.
    #[serde(default)]
    pub draining: bool,
    #[serde(with = "crate::time::utc")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub last_seen: DateTime<Utc>,
    /// The node counts as dead after this.
    #[serde(with = "crate::time::utc")]
    pub expires_at: DateTime<Utc>,
}

/// What a node does.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Serves the API and runs executions.
    #[default]
    All,
    /// Serves the API; never claims or runs anything (work it accepts is
    /// stored for the workers).
    Api,
    /// Runs executions and the schedules' fires; serves only health and metrics.
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }

    /// Whether it claims and runs executions.
    pub fn runs(self) -> bool {
        self != Role::Api
    }

    /// Whether it serves the `/v1` API.
    pub fn serves_api(self) -> bool {
        self != Role::Worker
    }
}

impl Execution {
    /// Notes step `step` recorded: it joins the steps; if it took an event
    /// (its result names the event's id), that event leaves the inbox; a
    /// wait it ends is over.
    pub fn step_recorded(&mut self, step: &crate::workflow::StepRecord) {
        if self.waiting.as_ref().is_some_and(|w| w.step == step.name) {
            self.waiting = None;
        }
        let taken = serde_json::from_str::<serde_json::Value>(&step.result)
            .ok()
            .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned));
        if let Some(id) = taken {
            self.inbox.retain(|e| e.id != id);
        }
        self.steps.push(step.clone());
    }
}
