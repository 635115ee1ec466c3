//! The life of an execution, as state transitions on [`Store`]:
//!
//! ```text
//!            claim              complete(Finished)
//!  queued ─────────▶ running ─────────────────────▶ succeeded | failed
//!    ▲                 │  │      complete(Dead)  ─▶ dead
//!    └─ complete(Retry)┘  └─ lease expired, release(HostFault) ─▶ queued (same attempt, host fault + 1)
//!  queued ── cancel ─▶ cancelled      running ── cancel ─▶ cancel_requested
//! ```
//!
//! Each transition is a compare-and-swap on the execution's version
//! ([`Store::modify_execution`]); only the holder of the current claim (its
//! [`Lease`]: owner and fencing token) may renew, complete or release it.

use super::{ClaimOrder, ExecutionFilter, Page, PageRequest, Queued, Store, StoreError, page};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::time::Duration;
use taskhost_model::effects::KvEffects;
use taskhost_model::time::add_saturating;
use taskhost_model::workflow::StepRecord;
use taskhost_model::{Execution, ExecutionStatus, RetryDecision};
use taskhost_model::{Outcome, Status};

/// How a running execution ended, as decided by the node that ran it.
#[derive(Debug, Clone)]
pub enum Completion {
    /// The attempt is the last one: `succeeded` or `failed` by its outcome.
    Finished(Outcome),
    /// Try again at the given time (attempt + 1).
    RetryAt(DateTime<Utc>, Outcome),
    /// A workflow's durable sleep: due again at the given time, same
    /// attempt (a suspend uses none).
    Suspend(DateTime<Utc>, Outcome),
    /// No attempts left.
    Dead(Outcome),
    /// Stopped because of a cancel request.
    Cancelled(Option<Outcome>),
}

/// A node's hold on a running execution: the node and its claim's fencing
/// token. Renewals, completions and releases must name it; one from an
/// earlier claim (a node that lost touch, then came back) is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub token: String,
}

impl Lease {
    /// The lease of a claimed execution (none if it is not running).
    pub fn of(e: &Execution) -> Option<Lease> {
        Some(Lease {
            owner: e.lease_owner.clone()?,
            token: e.lease_token.clone()?,
        })
    }
}

/// Why a running execution goes back to the queue without using an attempt.
#[derive(Debug, Clone, Copy)]
pub enum Release {
    /// Its node is shutting down: it runs again at once, elsewhere.
    Shutdown,
    /// The host could not run or record it (a store error, a failed save):
    /// it counts as a host fault and runs again after the fault backoff.
    HostFault,
}

/// The answer to a lease renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRenewal {
    /// Still ours, until the given time.
    Renewed(DateTime<Utc>),
    /// Still ours, but a cancel was requested: stop the run.
    CancelRequested,
    /// No longer ours (expired and taken over, or finished): stop and drop it.
    Lost,
}

impl Store {
    /// Applies `change` to an execution with compare-and-swap, retrying while
    /// concurrent writers win. `change` may refuse (return false): then nothing
    /// is written and the result is `None`, as it is for an unknown id.
    pub async fn modify_execution(
        &self,
        id: &str,
        change: impl FnMut(&mut Execution) -> bool + Send + 'static,
    ) -> Result<Option<Execution>, StoreError> {
        self.backend.execution_update(id, Box::new(change)).await
    }

    /// Finished executions whose webhooks are due by `now` (see
    /// the scheduler's `webhooks`), soonest first, leaving out the tenants
    /// in `skip` (so that one tenant's backlog cannot hide another's).
    pub async fn notify_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<Execution>, StoreError> {
        self.backend.executions_notify_due(now, limit, skip).await
    }

    /// Stores a new execution. Only the scheduler's enqueue path makes
    /// them (`Node::enqueue`), and it also queues them on its node.
    pub async fn create_execution(&self, execution: &Execution) -> Result<(), StoreError> {
        if !self.backend.execution_insert(execution).await? {
            return Err(StoreError::Conflict(format!(
                "an execution for fire {:?}",
                execution.fire_time
            )));
        }
        Ok(())
    }

    /// Stores new executions in one transaction, all or none (`Conflict`
    /// if one exists already).
    pub async fn create_executions(&self, executions: &[Execution]) -> Result<(), StoreError> {
        self.backend.execution_insert_many(executions).await
    }

    /// The queued and running executions of these schedules (for their
    /// overlap policies).
    pub async fn active_runs(&self, schedule_ids: &[String]) -> Result<Vec<Execution>, StoreError> {
        self.backend.executions_active(schedule_ids).await
    }

    /// Executions of `tenant` waiting in the queue (for its quota).
    pub async fn queued_count(&self, tenant: &str) -> Result<u64, StoreError> {
        self.backend.executions_queued_count(tenant).await
    }

    /// How many executions (fire records included) `tenant` keeps, and
    /// their stored bytes.
    pub async fn stored_usage(&self, tenant: &str) -> Result<(u64, u64), StoreError> {
        self.backend.executions_stored(tenant).await
    }

    /// Removes up to `limit` finished executions whose retention is over.
    /// Returns how many it removed.
    pub async fn delete_expired(&self, limit: u32) -> Result<u64, StoreError> {
        self.backend
            .executions_delete_expired(self.now(), limit)
            .await
    }

    pub async fn get_execution(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Execution>, StoreError> {
        Ok(self
            .backend
            .execution_get(id)
            .await?
            .filter(|e| e.tenant == tenant))
    }

    /// `tenant`'s executions of `ids`, in the order of `ids`: `None` for
    /// one unknown or another tenant's.
    pub async fn get_executions(
        &self,
        tenant: &str,
        ids: &[String],
    ) -> Result<Vec<Option<Execution>>, StoreError> {
        let found: std::collections::HashMap<String, Execution> = self
            .backend
            .execution_get_many(ids)
            .await?
            .into_iter()
            .filter(|e| e.tenant == tenant)
            .map(|e| (e.id.clone(), e))
            .collect();
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    pub async fn list_executions(
        &self,
        tenant: &str,
        filter: &ExecutionFilter,
        request: &PageRequest,
    ) -> Result<Page<Execution>, StoreError> {
        let query = request.query();
        let items = self.backend.execution_list(tenant, filter, &query).await?;
        Ok(page(items, &query, |e| &e.id))
    }

    /// Queued executions due within `horizon` from now, what a node's
    /// in-memory heap holds: `limit` in all, shared equally by the tenants
    /// with such work, each tenant's first in dispatch order (priority, then
    /// due time) — so one tenant's backlog cannot crowd out the others.
    pub async fn due_soon(&self, horizon: Duration, limit: u32) -> Result<Vec<Queued>, StoreError> {
        let before = add_saturating(self.now(), horizon);
        let tenants = self.backend.executions_due_tenants(before).await?;
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let share = (limit / tenants.len() as u32).max(1);
        let mut due = Vec::new();
        for tenant in tenants {
            due.extend(self.backend.executions_due(&tenant, before, share).await?);
        }
        Ok(due)
    }

    /// Claims a queued, due execution for `owner` with a lease of `lease`.
    /// Of any number of racing claimants exactly one gets `Some`.
    pub async fn claim(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Execution>, StoreError> {
        // One rule for every claim (due, queued, its concurrency key's slot).
        let ids = [id.to_owned()];
        Ok(self
            .claim_many(&ids, owner, lease)
            .await?
            .into_iter()
            .next())
    }

    /// Claims those of `ids` that are queued and due, for `owner`, in one
    /// call (see [`ExecutionStore::executions_claim`](crate::ExecutionStore::executions_claim)).
    /// Returns the claimed ones; an error only if none could be claimed
    /// because of it.
    pub async fn claim_many(
        &self,
        ids: &[String],
        owner: &str,
        lease: Duration,
    ) -> Result<Vec<Execution>, StoreError> {
        self.faults.check(super::faults::Op::Claim)?;
        let now = self.now();
        let order = ClaimOrder {
            owner: owner.to_owned(),
            now,
            lease_until: add_saturating(now, lease),
        };
        let claimed = self.backend.executions_claim(ids, &order).await;
        if let Some(delay) = self.faults.delay(super::faults::Op::Claim) {
            tokio::time::sleep(delay).await;
        }
        claimed
    }

    /// Extends `held`'s lease on a running execution by `lease`.
    pub async fn renew_lease(
        &self,
        id: &str,
        held: &Lease,
        lease: Duration,
    ) -> Result<LeaseRenewal, StoreError> {
        self.faults.check(super::faults::Op::Renew)?;
        let until = add_saturating(self.now(), lease);
        let held = held.clone();
        let renewed = self
            .modify_execution(id, move |e| {
                if !holds_lease(e, &held) {
                    return false;
                }
                e.lease_expires_at = Some(until);
                true
            })
            .await?;
        Ok(match renewed {
            Some(e) if e.cancel_requested => LeaseRenewal::CancelRequested,
            Some(_) => LeaseRenewal::Renewed(until),
            None => LeaseRenewal::Lost,
        })
    }

    /// Records how `held`'s run ended. `None` if that lease is no longer
    /// held (another claim took the execution over): the result is dropped,
    /// so an execution never completes twice.
    pub async fn complete(
        &self,
        id: &str,
        held: &Lease,
        completion: Completion,
    ) -> Result<Option<Execution>, StoreError> {
        self.faults.check(super::faults::Op::Complete)?;
        self.complete_by_cas(id, held, completion).await
    }

    /// [`Store::complete`] for the node that ran `claimed` (its copy as
    /// claimed): the finished record is built from that copy and written
    /// fenced by the lease (with no read first on SQLite). A retry
    /// goes the compare-and-swap way, which keeps a cancel that arrived
    /// during the run.
    pub async fn complete_claimed(
        &self,
        claimed: &Execution,
        held: &Lease,
        completion: Completion,
    ) -> Result<Option<Execution>, StoreError> {
        self.faults.check(super::faults::Op::Complete)?;
        if matches!(
            completion,
            Completion::RetryAt(..) | Completion::Suspend(..)
        ) {
            return self.complete_by_cas(&claimed.id, held, completion).await;
        }
        if !holds_lease(claimed, held) {
            return Ok(None);
        }
        let mut e = claimed.clone();
        drop_lease(&mut e);
        apply(&mut e, completion, self.now());
        Ok(self
            .backend
            .execution_write_fenced(&e, held)
            .await?
            .map(|version| {
                e.version = version;
                e
            }))
    }

    /// [`Store::complete_claimed`] with the run's held kv writes, written
    /// with its result and fenced by the lease (see `taskhost_model::effects`):
    /// in one transaction on SQLite, where a quota the writes now break is
    /// `Quota` and nothing is written; right after the record on MongoDB.
    pub async fn complete_committing(
        &self,
        claimed: &Execution,
        held: &Lease,
        completion: Completion,
        effects: &KvEffects,
    ) -> Result<Option<Execution>, StoreError> {
        // A workflow's record changed while it ran (its steps, events sent
        // to it): written from the stored record, not from the claimed copy.
        // (A cancel, too: the run may have recorded steps before it.)
        let workflow = !claimed.steps.is_empty()
            || claimed.waiting.is_some()
            || !claimed.inbox.is_empty()
            || matches!(completion, Completion::Cancelled(_));
        if effects.is_empty() && !workflow {
            return self.complete_claimed(claimed, held, completion).await;
        }
        self.faults.check(super::faults::Op::Complete)?;
        let (now, held) = (self.now(), held.clone());
        let change = move |e: &mut Execution| {
            if !holds_lease(e, &held) {
                return false;
            }
            drop_lease(e);
            apply(e, completion.clone(), now);
            true
        };
        self.backend
            .execution_update_committing(&claimed.id, Box::new(change), effects)
            .await
    }

    /// Records a workflow's completed step on its running execution, with
    /// the run's kv writes since the last one, fenced by the lease (as in
    /// [`Store::complete_committing`]) (see `taskhost_model::workflow`). `false` if the lease
    /// is no longer `held`.
    pub async fn record_step(
        &self,
        id: &str,
        held: &Lease,
        step: &StepRecord,
        effects: &KvEffects,
    ) -> Result<bool, StoreError> {
        self.faults.check(super::faults::Op::Complete)?;
        let (held, step) = (held.clone(), step.clone());
        let change = move |e: &mut Execution| {
            if !holds_lease(e, &held) {
                return false;
            }
            e.step_recorded(&step);
            true
        };
        let written = self
            .backend
            .execution_update_committing(id, Box::new(change), effects)
            .await?;
        Ok(written.is_some())
    }

    async fn complete_by_cas(
        &self,
        id: &str,
        held: &Lease,
        completion: Completion,
    ) -> Result<Option<Execution>, StoreError> {
        let (now, held) = (self.now(), held.clone());
        self.modify_execution(id, move |e| {
            if !holds_lease(e, &held) {
                return false;
            }
            drop_lease(e);
            apply(e, completion.clone(), now);
            true
        })
        .await
    }

    /// Gives a running execution back to the queue without using up an
    /// attempt. `None` if `held` is no longer its lease. A host fault past
    /// [`MAX_HOST_FAULTS`](taskhost_model::MAX_HOST_FAULTS) ends it `dead`.
    pub async fn release(
        &self,
        id: &str,
        held: &Lease,
        why: Release,
    ) -> Result<Option<Execution>, StoreError> {
        self.faults.check(super::faults::Op::Release)?;
        let (now, held) = (self.now(), held.clone());
        self.modify_execution(id, move |e| {
            if !holds_lease(e, &held) {
                return false;
            }
            drop_lease(e);
            e.started_at = None;
            match why {
                Release::Shutdown => requeue(e, now),
                Release::HostFault => host_fault(e, now),
            }
            true
        })
        .await
    }

    /// Puts running executions whose lease expired (their node died or lost
    /// touch with the store) back in the queue. That is a host fault: the
    /// same attempt runs again after the fault backoff, and an execution past
    /// [`MAX_HOST_FAULTS`](taskhost_model::MAX_HOST_FAULTS) ends `dead`. The
    /// executions in `alive` (the caller's own runs, which it knows to be
    /// going) are left alone. Returns the executions it changed.
    pub async fn requeue_expired(
        &self,
        limit: u32,
        alive: &HashSet<String>,
    ) -> Result<Vec<Execution>, StoreError> {
        let now = self.now();
        let mut changed = Vec::new();
        for expired in self.backend.executions_expired(now, limit).await? {
            if alive.contains(&expired.id) {
                continue;
            }
            let requeued = self
                .modify_execution(&expired.id, move |e| {
                    if e.status != ExecutionStatus::Running
                        || e.lease_expires_at.is_none_or(|t| t >= now)
                    {
                        return false;
                    }
                    drop_lease(e);
                    host_fault(e, now);
                    true
                })
                .await?;
            changed.extend(requeued);
        }
        Ok(changed)
    }

    /// Cancels an execution of `tenant`: a queued one at once, a running one by
    /// request (its node stops it at the next lease renewal). `None` if the
    /// execution is unknown, another tenant's, or already finished.
    pub async fn cancel(&self, tenant: &str, id: &str) -> Result<Option<Execution>, StoreError> {
        let (now, tenant) = (self.now(), tenant.to_owned());
        self.modify_execution(id, move |e| {
            if e.tenant != tenant || e.status.is_final() {
                return false;
            }
            if e.status == ExecutionStatus::Queued {
                e.finish(ExecutionStatus::Cancelled, now);
            } else {
                e.cancel_requested = true;
            }
            true
        })
        .await
    }
}

/// A claim of a queued, due execution by `order.owner`, on the record (the
/// SQLite backend makes the same change with columns alone, see
/// `sqlite::executions`).
/// Whether `e` may be claimed now (queued and due).
pub(crate) fn claimable(e: &Execution, order: &ClaimOrder) -> bool {
    e.status == ExecutionStatus::Queued && e.due_at <= order.now
}

/// Whether `e` runs only with a slot of a concurrency or rate-limit key.
pub(crate) fn has_key(e: &Execution) -> bool {
    let p = &e.policy;
    p.concurrency.as_ref().is_some_and(|c| c.key.is_some())
        || p.rate_limit.as_ref().is_some_and(|r| r.key.is_some())
}

pub(crate) fn claim(e: &mut Execution, order: &ClaimOrder) -> bool {
    if !claimable(e, order) {
        return false;
    }
    e.status = ExecutionStatus::Running;
    e.lease_owner = Some(order.owner.clone());
    e.node = Some(order.owner.clone());
    e.lease_expires_at = Some(order.lease_until);
    e.lease_token = Some(taskhost_model::new_id());
    e.started_at = Some(order.now);
    true
}

/// The end of a run, on the record: outcome, status, and the next attempt.
fn apply(e: &mut Execution, completion: Completion, now: DateTime<Utc>) {
    match completion {
        Completion::Finished(outcome) => {
            let status = if outcome.status == Status::Succeeded {
                ExecutionStatus::Succeeded
            } else {
                ExecutionStatus::Failed
            };
            e.outcome = Some(outcome);
            e.finish(status, now);
        }
        Completion::RetryAt(at, outcome) => {
            e.status = ExecutionStatus::Queued;
            e.attempt += 1;
            e.due_at = at;
            e.outcome = Some(outcome);
        }
        Completion::Suspend(at, mut outcome) => {
            e.status = ExecutionStatus::Queued;
            e.workflow_fuel = e.workflow_fuel.saturating_add(outcome.fuel_used);
            // Kept once, on the execution (the outcome only carried it here).
            e.waiting = outcome.waiting.take();
            // An event sent while it ran, that it waits for: due at once.
            let sent = e
                .waiting
                .as_ref()
                .is_some_and(|w| e.inbox.iter().any(|ev| w.takes(ev)));
            e.due_at = if sent { now } else { at };
            e.outcome = Some(outcome);
        }
        Completion::Dead(outcome) => {
            e.outcome = Some(outcome);
            e.finish(ExecutionStatus::Dead, now);
        }
        Completion::Cancelled(outcome) => {
            e.outcome = outcome.or(e.outcome.take());
            e.finish(ExecutionStatus::Cancelled, now);
        }
    }
}

pub(crate) fn holds_lease(e: &Execution, held: &Lease) -> bool {
    e.status == ExecutionStatus::Running
        && e.lease_owner.as_deref() == Some(held.owner.as_str())
        && e.lease_token.as_deref() == Some(held.token.as_str())
}

fn drop_lease(e: &mut Execution) {
    e.lease_owner = None;
    e.lease_expires_at = None;
    e.lease_token = None;
}

/// Back to the queue, due at `at`, same attempt.
fn requeue(e: &mut Execution, at: DateTime<Utc>) {
    e.status = ExecutionStatus::Queued;
    e.due_at = at;
}

/// One more host fault: the same attempt again after the fault backoff, or
/// `dead` past the limit.
fn host_fault(e: &mut Execution, now: DateTime<Utc>) {
    e.host_faults = e.host_faults.saturating_add(1);
    match e.policy.retry().after_host_fault(e.host_faults, now) {
        RetryDecision::RetryAt(at) => requeue(e, at),
        RetryDecision::GiveUp => e.finish(ExecutionStatus::Dead, now),
    }
}
