//! The one way work comes to exist: [`Node::intake`].
//!
//! Every origin — an ad hoc run, a batch, a schedule's fire, an event's
//! fire, trigger-now, a backfill, a re-run — is described as [`Work`] and handed to the intake,
//! which for the whole call, once:
//!
//! 1. resolves each distinct plugin reference (an id, `name@version`,
//!    `name@alias`) ([`plugins`]);
//! 2. validates each run policy ([`RunPolicy::validate`]);
//! 3. checks the tenant's queue quota from one count ([`memory`]);
//! 4. builds the records: an execution for work that runs, a `skipped`
//!    ledger record for a fire that does not ([`records`]);
//! 5. writes them, all or none (submissions) or each fire unless it has a
//!    record already (the fire path, backfill);
//! 6. offers what it made to this node's heap;
//! 7. makes each run with a debounce key its key's pending run ([`debounce`]).
//!
//! Its answer for each piece of work is a [`Decision`]: run, skip (with the
//! ledger's reason), or theirs (the fire had a record). API handlers, the
//! materializer and the store never build executions or wake the
//! dispatcher themselves, so every rule about new work is written here once.

mod debounce;
pub(crate) mod memory;
mod plugins;
mod records;

pub use plugins::{PluginRef, Resolved};

use super::Node;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Duration;
use taskhost_model::event::Event;
use taskhost_model::policy::{PolicyContext, PolicyError};
use taskhost_model::quota::{QuotaExceeded, QuotaKind};
use taskhost_model::{
    Execution, ExecutionStatus, FireFate, FireInfo, FireReason, RetryPolicy, RunPolicy, Schedule,
};
use taskhost_store::StoreError;

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

impl Origin {
    /// The schedule it belongs to, if any.
    pub fn schedule_id(&self) -> Option<&str> {
        match self {
            Origin::Fire { schedule_id, .. }
            | Origin::Backfill { schedule_id, .. }
            | Origin::TriggerNow { schedule_id } => Some(schedule_id),
            Origin::Rerun { schedule_id, .. } => schedule_id.as_deref(),
            Origin::AdHoc => None,
        }
    }

    /// The fire time of a fire (its unique key with the schedule).
    pub fn fire_time(&self) -> Option<DateTime<Utc>> {
        match self {
            Origin::Fire { fire_time, .. } | Origin::Backfill { fire_time, .. } => Some(*fire_time),
            _ => None,
        }
    }
}

/// One piece of new work: what to run, for whom, under which policy.
#[derive(Debug, Clone)]
pub struct Work {
    /// The id its record will have.
    pub id: String,
    pub tenant: String,
    pub origin: Origin,
    pub plugin: PluginRef,
    pub policy: RunPolicy,
    /// When it may run; now if unset.
    pub due_at: Option<DateTime<Utc>>,
    /// Added to the due time (a schedule's jitter for this fire).
    pub delay: Duration,
    /// How its fire was decided (fires only). A fate of `skipped` or
    /// `missed` means it does not run: the intake records it.
    pub fire: Option<FireInfo>,
    /// The id of the `skipped` record of this fire, which runs in its place
    /// (a backfill of a fire that did not run).
    pub replaces: Option<String>,
    /// The workflow that spawns it (a child run).
    pub parent: Option<taskhost_model::workflow::Parent>,
}

impl Work {
    /// An ad hoc run with default limits, a single attempt, due now.
    pub fn ad_hoc(tenant: &str, plugin_id: &str) -> Self {
        Work {
            id: taskhost_model::new_id(),
            tenant: tenant.to_owned(),
            origin: Origin::AdHoc,
            plugin: PluginRef::Id(plugin_id.to_owned()),
            policy: RunPolicy {
                retry: Some(RetryPolicy::ONCE),
                ..RunPolicy::default()
            },
            due_at: None,
            delay: Duration::ZERO,
            fire: None,
            replaces: None,
            parent: None,
        }
    }

    /// The schedule's policy, for a run at `at` (a fire time, or now).
    fn of_schedule(schedule: &Schedule, origin: Origin, at: DateTime<Utc>) -> Self {
        let mut policy = schedule.policy.clone();
        policy.retry.get_or_insert_default();
        Work {
            id: taskhost_model::new_id(),
            tenant: schedule.tenant.clone(),
            origin,
            plugin: PluginRef::of_schedule(schedule),
            policy,
            due_at: Some(at),
            delay: jitter(schedule, at),
            fire: None,
            replaces: None,
            parent: None,
        }
    }

    /// One fire of `schedule`, decided by time as `fire` says (to run, or
    /// recorded as skipped or missed).
    pub fn fire(schedule: &Schedule, fire_time: DateTime<Utc>, fire: FireInfo) -> Self {
        let origin = Origin::Fire {
            schedule_id: schedule.id.clone(),
            fire_time,
        };
        let mut work = Self::of_schedule(schedule, origin, fire_time);
        work.fire = Some(fire);
        work
    }

    /// A past fire of `schedule` run by a backfill, due at `due_at` (no jitter).
    pub fn backfill(
        schedule: &Schedule,
        fire_time: DateTime<Utc>,
        due_at: DateTime<Utc>,
        node: &str,
    ) -> Self {
        let origin = Origin::Backfill {
            schedule_id: schedule.id.clone(),
            fire_time,
        };
        let mut work = Self::of_schedule(schedule, origin, due_at);
        work.delay = Duration::ZERO;
        work.fire = Some(FireInfo::run(FireFate::Backfilled, node));
        work
    }

    /// The fire of `schedule` for `event` (its trigger names the event and
    /// the data matched): unique per (schedule, event id), at the time the
    /// event arrived, with the event as its input. A paused schedule's is
    /// recorded `skipped: paused`.
    pub fn event(schedule: &Schedule, event: &Event, node: &str) -> Self {
        let origin = Origin::Fire {
            schedule_id: schedule.id.clone(),
            fire_time: event.received_at,
        };
        let mut work = Self::of_schedule(schedule, origin, event.received_at);
        work.policy.input = event.input();
        let fire = match schedule.paused {
            true => FireInfo::dropped(FireReason::Paused, node),
            false => FireInfo::run(FireFate::Ran, node),
        };
        work.fire = Some(FireInfo {
            event: Some(event.reference()),
            ..fire
        });
        work
    }

    /// A run of `schedule` now, by hand: the fire path, without a unique key.
    pub fn trigger_now(schedule: &Schedule, now: DateTime<Utc>) -> Self {
        let origin = Origin::TriggerNow {
            schedule_id: schedule.id.clone(),
        };
        Self::of_schedule(schedule, origin, now)
    }

    /// A new run of a finished execution, with its plugin, input and policy.
    pub fn rerun(old: &Execution) -> Self {
        Work {
            id: taskhost_model::new_id(),
            tenant: old.tenant.clone(),
            origin: Origin::Rerun {
                of: old.id.clone(),
                schedule_id: old.schedule_id.clone(),
            },
            plugin: PluginRef::Id(old.plugin_id.clone()),
            policy: old.policy.clone(),
            due_at: None,
            delay: Duration::ZERO,
            fire: None,
            replaces: None,
            parent: None,
        }
    }

    /// The `skipped` record of a fire the intake refuses for `reason`; it
    /// keeps the fire's alias and event (its unique key).
    fn refused(&self, reason: FireReason, detail: impl std::fmt::Display, node: &str) -> Checked {
        let mut info = FireInfo::dropped(reason, node).with_detail(detail);
        info.plugin_ref = self.plugin.follows().map(str::to_owned);
        info.event = self.fire.as_ref().and_then(|f| f.event.clone());
        let plugin_id = self.plugin.fallback_id().to_owned();
        Checked::Skip {
            info: Box::new(info),
            plugin_id,
        }
    }

    /// Whether the work was decided by time not to run (paused, catch-up,
    /// bounds, overlap): it is recorded, never checked or run.
    fn decided_skip(&self) -> bool {
        self.fire
            .as_ref()
            .is_some_and(|f| matches!(f.fate, FireFate::Skipped | FireFate::Missed))
    }
}

/// A delay in [0, jitter) that is the same for a given fire on every node.
fn jitter(schedule: &Schedule, at: DateTime<Utc>) -> Duration {
    let span = schedule.jitter.as_millis() as u64;
    if span == 0 {
        return Duration::ZERO;
    }
    let key = format!("{}@{}", schedule.id, at.timestamp_millis());
    Duration::from_millis((taskhost_model::spread(&key) * span as f64) as u64)
}

/// How the intake treats refusals and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A client's submission: any refused item refuses all of it, and all
    /// of it is written in one transaction, or none.
    Submit,
    /// A backfill: any refused item refuses all of it; then each fire is
    /// written unless it has a record already (a racing backfill or pass).
    Backfill,
    /// The fire path: each fire on its own. A refused fire is recorded
    /// `skipped` (`policy`, `quota`); a fire with a record is left alone.
    Fires,
}

impl Admission {
    fn refusals_skip(self) -> bool {
        self == Admission::Fires
    }
}

/// What the intake decided for one piece of work.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Its execution, written (queued, or started on this node).
    Run(Execution),
    /// A fire that does not run: its `skipped` ledger record, written.
    Skip(Execution),
    /// The fire had a record already (another node, an earlier pass): that
    /// record stands.
    Theirs,
}

impl Decision {
    /// The execution this call made, if it made one that runs.
    pub fn run(self) -> Option<Execution> {
        match self {
            Decision::Run(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a piece of work was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("no plugin {0:?} in this tenant")]
    UnknownPlugin(String),
}

/// Why the intake made nothing.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// These items (by index) were refused; nothing was written.
    #[error("{} of the runs were refused", .0.len())]
    Refused(Vec<(usize, Refusal)>),
    /// The tenant's queue has no room for all of it.
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Work checked and its records built, to be written by [`Node::commit`].
pub(crate) struct Prepared {
    pub(crate) work: Vec<Work>,
    /// One record per piece of work: its execution, or its `skipped` record.
    pub(crate) rows: Vec<Execution>,
    admission: Admission,
}

/// A piece of work after its checks: to run with its plugin, or to record.
enum Checked {
    Run {
        plugin: Resolved,
    },
    Skip {
        info: Box<FireInfo>,
        plugin_id: String,
    },
}

impl Node {
    /// Takes in new work (see the module's documentation): one decision per
    /// piece, in order. Work of several tenants may come together (the fire
    /// path); each tenant's queue quota is counted once. Its span, `enqueue`,
    /// is the trace parent of the runs it makes.
    #[tracing::instrument(name = "enqueue", skip_all, fields(items = work.len()))]
    pub async fn intake(
        &self,
        work: Vec<Work>,
        admission: Admission,
    ) -> Result<Vec<Decision>, IntakeError> {
        let prepared = self.prepare(work, admission).await?;
        let decided = self.commit(prepared, &[]).await?.0;
        let made: Vec<Execution> = decided
            .iter()
            .filter_map(|d| match d {
                Decision::Run(e) if e.policy.debounce.is_some() => Some(e.clone()),
                _ => None,
            })
            .collect();
        self.debounce(&made).await?;
        Ok(decided)
    }

    /// Steps 1-4 of the intake: the records of `work`, checked, not yet
    /// written (the fire path writes them with its cursor moves).
    pub(crate) async fn prepare(
        &self,
        work: Vec<Work>,
        admission: Admission,
    ) -> Result<Prepared, IntakeError> {
        let mut checked = self.check(&work, admission).await?;
        self.admit_quota(&work, &mut checked, admission).await?;
        let now = self.inner.store.now();
        let rows = work
            .iter()
            .zip(&checked)
            .map(|(w, c)| self.record(w, c, now))
            .collect();
        Ok(Prepared {
            work,
            rows,
            admission,
        })
    }

    /// One submission: its execution, or why it was refused.
    pub async fn submit(&self, work: Work) -> Result<Execution, IntakeError> {
        let decided = self.intake(vec![work], Admission::Submit).await?;
        match decided.into_iter().next() {
            Some(Decision::Run(e)) => Ok(e),
            _ => Err(StoreError::backend("a submission made no execution").into()),
        }
    }

    /// Runs a finished execution of `tenant` again, as a new execution due
    /// now. `None` if it is unknown (in this tenant), not finished, or a
    /// fire that did not run.
    pub async fn rerun(&self, tenant: &str, id: &str) -> Result<Option<Execution>, IntakeError> {
        let old = self.inner.store.get_execution(tenant, id).await?;
        match old.filter(|e| e.status.is_final() && e.status != ExecutionStatus::Skipped) {
            Some(old) => Ok(Some(self.submit(Work::rerun(&old)).await?)),
            None => Ok(None),
        }
    }

    /// Resolves plugins and validates policies: each distinct plugin
    /// reference and each schedule's policy once per call.
    async fn check(
        &self,
        work: &[Work],
        admission: Admission,
    ) -> Result<Vec<Checked>, IntakeError> {
        let config = &self.inner.config;
        let node = config.node_id.as_str();
        let mut resolved: HashMap<(String, PluginRef), Option<Resolved>> = HashMap::new();
        let mut validated: HashMap<&str, Result<(), PolicyError>> = HashMap::new();
        let (mut checked, mut refused) = (Vec::with_capacity(work.len()), Vec::new());
        for (i, w) in work.iter().enumerate() {
            if w.decided_skip() {
                let info = w
                    .fire
                    .clone()
                    .unwrap_or_else(|| FireInfo::run(FireFate::Ran, node));
                let plugin_id = w.plugin.fallback_id().to_owned();
                checked.push(Checked::Skip {
                    info: Box::new(info),
                    plugin_id,
                });
                continue;
            }
            let key = (w.tenant.clone(), w.plugin.clone());
            let plugin = match resolved.get(&key) {
                Some(found) => found.clone(),
                None => {
                    let found = self.resolve_plugin(&w.tenant, &w.plugin).await?;
                    resolved.entry(key).or_insert(found).clone()
                }
            };
            let ctx = PolicyContext {
                tenant: &w.tenant,
                caps: &config.caps,
                network: config.egress.policy(),
            };
            let valid = match w.origin.schedule_id() {
                // A schedule's fires share its policy: checked once.
                Some(id) if w.fire.is_some() => validated
                    .entry(id)
                    .or_insert_with(|| w.policy.validate(&ctx))
                    .clone(),
                _ => w.policy.validate(&ctx),
            };
            // Its flow-control keys may come from its own input.
            let valid = valid.and_then(|()| w.policy.check_keys());
            let refusal = match (plugin, valid) {
                (_, Err(e)) => Refusal::Policy(e),
                (None, _) => Refusal::UnknownPlugin(w.plugin.text().to_owned()),
                (Some(plugin), Ok(())) => {
                    checked.push(Checked::Run { plugin });
                    continue;
                }
            };
            if !admission.refusals_skip() {
                refused.push((i, refusal));
                continue;
            }
            checked.push(w.refused(FireReason::Policy, &refusal, node));
        }
        if !refused.is_empty() {
            return Err(IntakeError::Refused(refused));
        }
        Ok(checked)
    }

    /// The queue and storage quotas, from one count per tenant: a
    /// submission or backfill fits whole or is refused; fires are admitted
    /// in order while there is room, and the rest recorded `skipped: quota`.
    async fn admit_quota(
        &self,
        work: &[Work],
        checked: &mut [Checked],
        admission: Admission,
    ) -> Result<(), IntakeError> {
        let mut wanted: HashMap<&str, u64> = HashMap::new();
        for (w, c) in work.iter().zip(checked.iter()) {
            if matches!(c, Checked::Run { .. }) {
                *wanted.entry(w.tenant.as_str()).or_default() += 1;
            }
        }
        let node = self.inner.config.node_id.as_str();
        for (tenant, n) in wanted {
            let (room, refusal) = self.room(tenant, n, admission).await?;
            if !admission.refusals_skip() {
                if n > room {
                    return Err(refusal.into());
                }
                continue;
            }
            let mut room = room;
            for (w, c) in work.iter().zip(checked.iter_mut()) {
                if w.tenant != tenant || !matches!(c, Checked::Run { .. }) {
                    continue;
                }
                if room > 0 {
                    room -= 1;
                    continue;
                }
                *c = w.refused(FireReason::Quota, &refusal, node);
            }
        }
        Ok(())
    }

    /// How many of `n` new executions `tenant` has room for, by its
    /// tightest quota — queued, stored, stored bytes — and the refusal that
    /// quota gives the ones past it.
    async fn room(
        &self,
        tenant: &str,
        n: u64,
        admission: Admission,
    ) -> Result<(u64, QuotaExceeded), IntakeError> {
        let quotas = self.inner.config.quotas.for_tenant(tenant);
        let queued = self.queued_estimate(tenant).await?;
        // A fire pass does not wait on the storage count (see `memory`).
        let wait = !admission.refusals_skip();
        let (stored, bytes) = self.stored_estimate(tenant, wait).await?;
        let over = |quota, limit, used: u64, adding: u64| QuotaExceeded {
            quota,
            limit,
            wanted: used.saturating_add(adding),
        };
        // Bytes are known once stored: a tenant at its bytes has no room.
        let bytes_room = if bytes >= quotas.stored_bytes {
            0
        } else {
            u64::MAX
        };
        let [first, rest @ ..] = [
            (
                quotas.queued_executions.saturating_sub(queued),
                over(
                    QuotaKind::QueuedExecutions,
                    quotas.queued_executions,
                    queued,
                    n,
                ),
            ),
            (
                quotas.stored_executions.saturating_sub(stored),
                over(
                    QuotaKind::StoredExecutions,
                    quotas.stored_executions,
                    stored,
                    n,
                ),
            ),
            (
                bytes_room,
                over(QuotaKind::StoredBytes, quotas.stored_bytes, bytes, 1),
            ),
        ];
        Ok(rest.into_iter().fold(
            first,
            |tightest, q| if q.0 < tightest.0 { q } else { tightest },
        ))
    }
}
