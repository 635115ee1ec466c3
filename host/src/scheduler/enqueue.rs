//! The one way an execution comes to exist.
//!
//! Ad hoc runs, cron fires, trigger-now, re-runs: each is described by an
//! [`ExecutionSpec`] and handed to [`Node::enqueue`], which checks the policy
//! and the tenant's queue quota, builds the record, writes it, and offers it
//! to this node's heap. Nothing else builds executions or wakes the
//! dispatcher, so every rule about new work is written here once.

use super::Node;
use super::policy::{self, PolicyError};
use crate::model::{
    Execution, ExecutionStatus, FireInfo, FireReason, RetryPolicy, Schedule, add_saturating,
};
use crate::quota::QuotaExceeded;
use crate::runtime::Limits;
use crate::store::{FireDecided, StoreError};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Why an execution exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Submitted by a client.
    AdHoc,
    /// A fire of a schedule at its fire time: unique per (schedule, fire time).
    Fire {
        schedule_id: String,
        fire_time: DateTime<Utc>,
    },
    /// A past fire of a schedule run by a backfill request: unique per
    /// (schedule, fire time) like a fire.
    Backfill {
        schedule_id: String,
        fire_time: DateTime<Utc>,
    },
    /// A schedule run by hand, now (with the schedule's jitter).
    TriggerNow { schedule_id: String },
    /// A finished execution run again.
    Rerun {
        of: String,
        schedule_id: Option<String>,
    },
}

/// What to run, for whom, under which policy.
#[derive(Debug, Clone)]
pub struct ExecutionSpec {
    pub tenant: String,
    pub plugin_id: String,
    pub origin: Origin,
    pub input: serde_json::Value,
    pub limits: Limits,
    pub config: BTreeMap<String, String>,
    /// Secrets the run may read.
    pub secrets: Vec<String>,
    /// Hosts the run may call.
    pub network: Option<crate::net::NetworkGrant>,
    /// Webhooks called when it ends.
    pub notify: Vec<crate::model::NotifyTarget>,
    pub priority: i32,
    pub retry: RetryPolicy,
    /// Kept this long once finished; the node's default if unset.
    pub retention: Option<Duration>,
    /// Added to the due time (a schedule's jitter for this fire).
    pub delay: Duration,
    /// When it may run; now if unset.
    pub due_at: Option<DateTime<Utc>>,
    /// How its fire was decided (fires only).
    pub fire: Option<FireInfo>,
}

impl ExecutionSpec {
    /// An ad hoc run with default limits, a single attempt, due now.
    pub fn ad_hoc(tenant: &str, plugin_id: &str) -> Self {
        ExecutionSpec {
            tenant: tenant.to_owned(),
            plugin_id: plugin_id.to_owned(),
            origin: Origin::AdHoc,
            input: serde_json::Value::Null,
            limits: Limits::default(),
            config: BTreeMap::new(),
            secrets: Vec::new(),
            network: None,
            notify: Vec::new(),
            priority: 0,
            retry: RetryPolicy::ONCE,
            retention: None,
            delay: Duration::ZERO,
            due_at: None,
            fire: None,
        }
    }

    /// The schedule's policy, for a run of `plugin_id` (the schedule's, or
    /// the one its alias points to now) at `at` (a fire time, or now).
    fn of_schedule(
        schedule: &Schedule,
        plugin_id: &str,
        origin: Origin,
        at: DateTime<Utc>,
    ) -> Self {
        ExecutionSpec {
            tenant: schedule.tenant.clone(),
            plugin_id: plugin_id.to_owned(),
            origin,
            input: schedule.input.clone(),
            limits: schedule.limits,
            config: schedule.config.clone(),
            secrets: schedule.secrets.clone(),
            network: schedule.network.clone(),
            notify: schedule.notify.clone(),
            priority: schedule.priority,
            retry: schedule.retry,
            retention: schedule.retention,
            delay: jitter(schedule, at),
            due_at: Some(at),
            fire: None,
        }
    }

    /// The run of one fire of `schedule`, with `plugin_id` (see
    /// [`Node::plugin_of`]).
    pub fn fire(schedule: &Schedule, plugin_id: &str, fire_time: DateTime<Utc>) -> Self {
        let origin = Origin::Fire {
            schedule_id: schedule.id.clone(),
            fire_time,
        };
        Self::of_schedule(schedule, plugin_id, origin, fire_time)
    }

    /// The run of a past fire of `schedule` by a backfill, due at `due_at`
    /// (no jitter).
    pub fn backfill(
        schedule: &Schedule,
        plugin_id: &str,
        fire_time: DateTime<Utc>,
        due_at: DateTime<Utc>,
    ) -> Self {
        let origin = Origin::Backfill {
            schedule_id: schedule.id.clone(),
            fire_time,
        };
        let mut spec = Self::of_schedule(schedule, plugin_id, origin, due_at);
        spec.delay = Duration::ZERO;
        spec
    }

    /// A run of `schedule` now, by hand, with `plugin_id`: the fire path,
    /// without a unique key.
    pub fn trigger_now(schedule: &Schedule, plugin_id: &str, now: DateTime<Utc>) -> Self {
        let origin = Origin::TriggerNow {
            schedule_id: schedule.id.clone(),
        };
        Self::of_schedule(schedule, plugin_id, origin, now)
    }

    /// A new run of a finished execution, with its plugin, input and policy.
    pub fn rerun(old: &Execution) -> Self {
        ExecutionSpec {
            tenant: old.tenant.clone(),
            plugin_id: old.plugin_id.clone(),
            origin: Origin::Rerun {
                of: old.id.clone(),
                schedule_id: old.schedule_id.clone(),
            },
            input: old.input.clone(),
            limits: old.limits,
            config: old.config.clone(),
            secrets: old.secrets.clone(),
            network: old.network.clone(),
            notify: old.notify.clone(),
            priority: old.priority,
            retry: old.retry,
            retention: Some(old.retention),
            delay: Duration::ZERO,
            due_at: None,
            fire: None,
        }
    }
}

/// A delay in [0, jitter) that is the same for a given fire on every node.
fn jitter(schedule: &Schedule, at: DateTime<Utc>) -> Duration {
    let span = schedule.jitter.as_millis() as u64;
    if span == 0 {
        return Duration::ZERO;
    }
    let fraction = crate::model::spread(&format!("{}@{}", schedule.id, at.timestamp_millis()));
    Duration::from_millis((fraction * span as f64) as u64)
}

/// How long this node trusts that a plugin it looked up still exists.
pub const PLUGIN_SEEN_TTL: Duration = Duration::from_secs(1);

/// How long a tenant's queued count from the store is trusted.
pub const QUEUE_COUNT_TTL: Duration = Duration::from_secs(1);

/// A tenant's queued executions as last counted, and how this node changed
/// that since (queued +1, claimed -1).
pub(super) struct QueueCount {
    queued: u64,
    delta: i64,
    counted_at: std::time::Instant,
}

/// Why a batch of executions was not made (nothing of it was).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// These specs (by index) were refused; the others were fine.
    #[error("{} of the runs were refused", .0.len())]
    Refused(Vec<(usize, EnqueueError)>),
    /// The batch as a whole failed: the quota, or the store.
    #[error(transparent)]
    Failed(EnqueueError),
}

/// Why an execution was not made.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    #[error("no plugin {0:?} in this tenant")]
    UnknownPlugin(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Node {
    /// Makes an execution: checks its policy against the node's caps and the
    /// tenant's queue quota, builds it, stores it, and queues it here. `None`
    /// when the spec is a fire that already has its execution (another node,
    /// or an earlier pass, made it).
    pub async fn enqueue(&self, spec: ExecutionSpec) -> Result<Option<Execution>, EnqueueError> {
        if matches!(spec.origin, Origin::Fire { .. } | Origin::Backfill { .. }) {
            let info = spec.fire.clone().unwrap_or_else(|| {
                FireInfo::run(crate::model::FireFate::Ran, &self.inner.config.node_id)
            });
            return Ok(match self.decide_fire(spec, info).await? {
                FireDecided::Ours(e) if e.status == ExecutionStatus::Queued => Some(*e),
                _ => None,
            });
        }
        self.check(&spec, true).await?;
        let queued = self.queued_estimate(&spec.tenant).await?;
        let quotas = self.inner.config.quotas.for_tenant(&spec.tenant);
        QuotaExceeded::check("queued_executions", quotas.queued_executions, queued, 1)?;
        let store = &self.inner.store;
        let mut e = self.build(spec, store.now());
        // Work this node can start now, with nothing waiting ahead of it, is
        // stored already claimed: no queue, no claim round trip.
        let asked = tokio::time::Instant::now();
        let slot = self.reserve_new(&mut e);
        store.create_execution(&e).await?;
        match slot {
            Some(slot) => {
                tracing::debug!(execution = %e.id, tenant = %e.tenant, due_at = %e.due_at, started = true, "execution created");
                self.start_run(e.clone(), slot, asked);
            }
            None => self.enqueued(std::slice::from_ref(&e)),
        }
        Ok(Some(e))
    }

    /// Makes many ad hoc executions of one tenant in one store transaction,
    /// all or none: every spec is checked first, and if any is refused none
    /// is written and the error of each refused one is returned with its
    /// index. The queue quota must have room for all of them.
    pub async fn enqueue_many(
        &self,
        specs: Vec<ExecutionSpec>,
    ) -> Result<Vec<Execution>, BatchError> {
        let Some(tenant) = specs.first().map(|s| s.tenant.clone()) else {
            return Ok(Vec::new());
        };
        let mut refused = Vec::new();
        let mut plugins: HashMap<String, bool> = HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            if spec.tenant != tenant || spec.origin != Origin::AdHoc {
                let why = PolicyError::new(
                    "invalid_batch",
                    "",
                    "a batch holds ad hoc runs of one tenant",
                );
                refused.push((i, EnqueueError::Policy(why)));
                continue;
            }
            // Each plugin is looked up once per batch.
            let known = match plugins.get(&spec.plugin_id) {
                Some(known) => *known,
                None => {
                    let known = self.plugin_exists(spec).await.map_err(BatchError::Failed)?;
                    plugins.insert(spec.plugin_id.clone(), known);
                    known
                }
            };
            if let Err(e) = self.check(spec, false).await {
                refused.push((i, e));
            } else if !known {
                refused.push((i, EnqueueError::UnknownPlugin(spec.plugin_id.clone())));
            }
        }
        if !refused.is_empty() {
            return Err(BatchError::Refused(refused));
        }
        let queued = self
            .queued_estimate(&tenant)
            .await
            .map_err(|e| BatchError::Failed(e.into()))?;
        let quotas = self.inner.config.quotas.for_tenant(&tenant);
        let n = specs.len() as u64;
        QuotaExceeded::check("queued_executions", quotas.queued_executions, queued, n)
            .map_err(|e| BatchError::Failed(e.into()))?;
        let now = self.inner.store.now();
        let executions: Vec<Execution> = specs.into_iter().map(|s| self.build(s, now)).collect();
        self.inner
            .store
            .create_executions(&executions)
            .await
            .map_err(|e| BatchError::Failed(e.into()))?;
        self.enqueued(&executions);
        Ok(executions)
    }

    /// Decides one fire that is to run (`info` says how: on time, caught
    /// up, backfilled): its execution if the node's caps and the tenant's
    /// queue quota allow it, else its `skipped` record (`policy`, `quota`).
    /// Either is inserted under the fire's unique key; if the fire already
    /// has a record (another node, an earlier pass), that one stands
    /// ([`FireDecided::Theirs`]). The fire's plugin exists: it was resolved
    /// for this pass, and a plugin cannot be deleted while in use.
    pub(super) async fn decide_fire(
        &self,
        spec: ExecutionSpec,
        info: FireInfo,
    ) -> Result<FireDecided, StoreError> {
        let node = &self.inner.config.node_id;
        let refused = match self.check(&spec, false).await {
            Err(EnqueueError::Store(e)) => return Err(e),
            Err(e) => Some(FireInfo::dropped(FireReason::Policy, node).with_detail(e)),
            Ok(()) => {
                let queued = self.queued_estimate(&spec.tenant).await?;
                let quotas = self.inner.config.quotas.for_tenant(&spec.tenant);
                QuotaExceeded::check("queued_executions", quotas.queued_executions, queued, 1)
                    .err()
                    .map(|e| FireInfo::dropped(FireReason::Quota, node).with_detail(e))
            }
        };
        let now = self.inner.store.now();
        let row = match refused {
            Some(skip) => {
                let mut skip = skip;
                skip.plugin_ref = info.plugin_ref.clone();
                self.skipped_record(&spec, skip, now)
            }
            None => {
                let mut e = self.build(spec, now);
                e.fire = Some(info);
                e
            }
        };
        let decided = self.inner.store.decide_fire(&row).await?;
        if let FireDecided::Ours(e) = &decided {
            if let Some((fate, reason)) = e.fire_fate() {
                self.inner.metrics.fire(fate, reason);
            }
            if e.status == ExecutionStatus::Queued {
                self.enqueued(std::slice::from_ref(e));
            } else {
                let detail = e.fire.as_ref().and_then(|f| f.detail.as_deref());
                tracing::warn!(schedule = ?e.schedule_id, fire = ?e.fire_time, why = ?detail, "fire skipped");
                self.inner.metrics.fire_skipped();
            }
        }
        Ok(decided)
    }

    /// The record of a fire (from its spec) that does not run: final
    /// (`skipped`), kept as long as the schedule's executions.
    pub(super) fn skipped_record(
        &self,
        spec: &ExecutionSpec,
        info: FireInfo,
        now: DateTime<Utc>,
    ) -> Execution {
        let fire_at = match &spec.origin {
            Origin::Fire { fire_time, .. } | Origin::Backfill { fire_time, .. } => Some(*fire_time),
            _ => None,
        };
        let mut e = Execution::queued(&spec.tenant, &spec.plugin_id, fire_at.unwrap_or(now), now);
        if let Origin::Fire { schedule_id, .. } | Origin::Backfill { schedule_id, .. } =
            &spec.origin
        {
            e.schedule_id = Some(schedule_id.clone());
        }
        e.fire_time = fire_at;
        e.priority = spec.priority;
        // Kept as long as the schedule's runs, but at most the node's
        // retention: a paused 1-second schedule cannot fill the store for a year.
        let node_retention = self.inner.config.retention;
        e.retention = spec.retention.unwrap_or(node_retention).min(node_retention);
        e.fire = Some(info);
        e.finish(ExecutionStatus::Skipped, now);
        e
    }

    /// Checks a spec against the node's caps (for backfill).
    pub(super) async fn check_spec(&self, spec: &ExecutionSpec) -> Result<(), EnqueueError> {
        self.check(spec, false).await
    }

    /// The record of a checked spec (for backfill).
    pub(super) fn build_spec(&self, spec: ExecutionSpec, now: DateTime<Utc>) -> Execution {
        self.build(spec, now)
    }

    /// New executions were stored (for backfill): count them and queue them here.
    pub(super) fn enqueued_all(&self, executions: &[Execution]) {
        self.enqueued(executions)
    }

    /// The tenant's queued executions, counted in the store now.
    pub(super) async fn queued_count_now(&self, tenant: &str) -> Result<u64, StoreError> {
        self.inner.store.queued_count(tenant).await
    }

    /// Checks a spec against the node's caps and, with `plugin`, that its
    /// plugin exists in its tenant.
    async fn check(&self, spec: &ExecutionSpec, plugin: bool) -> Result<(), EnqueueError> {
        let caps = &self.inner.config.caps;
        policy::check_run(spec.priority, &spec.retry, &spec.limits, caps)?;
        policy::check_retention(spec.retention)?;
        policy::check_secrets(&spec.secrets)?;
        let network = self.inner.config.egress.policy();
        policy::check_network(&spec.tenant, spec.network.as_ref(), network)?;
        policy::check_notify(&spec.tenant, &spec.notify, network)?;
        if plugin && !self.plugin_exists(spec).await? {
            return Err(EnqueueError::UnknownPlugin(spec.plugin_id.clone()));
        }
        Ok(())
    }

    /// Whether the spec's plugin exists in its tenant: from the store, or
    /// from this node's memory of a recent look ([`PLUGIN_SEEN_TTL`]), so a
    /// stream of submissions costs the store one plugin read a second. A
    /// plugin deleted through this node is forgotten at once; one deleted
    /// through another node may take runs for that second, which then end
    /// `invalid_plugin` ("not found").
    async fn plugin_exists(&self, spec: &ExecutionSpec) -> Result<bool, EnqueueError> {
        let now = std::time::Instant::now();
        {
            let mut seen = self.plugins_seen();
            if let Some((tenant, at)) = seen.get(&spec.plugin_id)
                && *tenant == spec.tenant
                && now.duration_since(*at) < PLUGIN_SEEN_TTL
            {
                return Ok(true);
            }
        }
        let store = &self.inner.store;
        let exists = store
            .get_plugin(&spec.tenant, &spec.plugin_id)
            .await?
            .is_some();
        if exists {
            self.plugins_seen()
                .put(spec.plugin_id.clone(), (spec.tenant.clone(), now));
        }
        Ok(exists)
    }

    fn plugins_seen(&self) -> std::sync::MutexGuard<'_, super::PluginsSeen> {
        self.inner
            .plugins_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The record of a checked spec, queued.
    fn build(&self, spec: ExecutionSpec, now: DateTime<Utc>) -> Execution {
        let due = add_saturating(spec.due_at.unwrap_or(now), spec.delay);
        let mut e = Execution::queued(&spec.tenant, &spec.plugin_id, due, now);
        e.input = spec.input;
        e.limits = spec.limits;
        e.config = spec.config;
        e.secrets = spec.secrets;
        e.network = spec.network;
        e.notify = spec.notify;
        e.priority = spec.priority;
        e.retry = spec.retry;
        e.retention = spec.retention.unwrap_or(self.inner.config.retention);
        e.fire = spec.fire;
        match spec.origin {
            Origin::Fire {
                schedule_id,
                fire_time,
            }
            | Origin::Backfill {
                schedule_id,
                fire_time,
            } => {
                e.schedule_id = Some(schedule_id);
                e.fire_time = Some(fire_time);
            }
            Origin::TriggerNow { schedule_id } => e.schedule_id = Some(schedule_id),
            Origin::Rerun { schedule_id, .. } => e.schedule_id = schedule_id,
            Origin::AdHoc => {}
        }
        e
    }

    /// New executions were stored: count them and queue them here.
    fn enqueued(&self, executions: &[Execution]) {
        for e in executions {
            self.count_enqueued(&e.tenant);
            self.offer(e);
            tracing::debug!(execution = %e.id, tenant = %e.tenant, due_at = %e.due_at, started = false, "execution created");
        }
    }

    /// The tenant's queued executions, for its quota: counted in the store at
    /// most once a second ([`QUEUE_COUNT_TTL`]), corrected by what this node
    /// queued and claimed since. Enqueueing thus costs no scan of the backlog;
    /// the count may lag by what other nodes did within that second.
    async fn queued_estimate(&self, tenant: &str) -> Result<u64, StoreError> {
        let now = std::time::Instant::now();
        if let Some(c) = self.queue_counts().get(tenant)
            && now.duration_since(c.counted_at) < QUEUE_COUNT_TTL
        {
            return Ok(c.queued.saturating_add_signed(c.delta));
        }
        let queued = self.inner.store.queued_count(tenant).await?;
        self.queue_counts().insert(
            tenant.to_owned(),
            QueueCount {
                queued,
                delta: 0,
                counted_at: now,
            },
        );
        Ok(queued)
    }

    fn count_enqueued(&self, tenant: &str) {
        if let Some(c) = self.queue_counts().get_mut(tenant) {
            c.delta += 1;
        }
    }

    /// One of the tenant's executions left the queue on this node (claimed).
    pub(super) fn count_dequeued(&self, tenant: &str) {
        if let Some(c) = self.queue_counts().get_mut(tenant) {
            c.delta -= 1;
        }
    }

    fn queue_counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, QueueCount>> {
        self.inner
            .queue_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a finished execution of `tenant` again, as a new execution due
    /// now. `None` if it is unknown (in this tenant) or not finished.
    pub async fn rerun(&self, tenant: &str, id: &str) -> Result<Option<Execution>, EnqueueError> {
        let Some(old) = self
            .inner
            .store
            .get_execution(tenant, id)
            .await?
            .filter(|e| e.status.is_final() && e.status != ExecutionStatus::Skipped)
        else {
            return Ok(None);
        };
        self.enqueue(ExecutionSpec::rerun(&old)).await
    }
}
