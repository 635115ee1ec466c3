//! Moves of a schedule's cursor that are not a materializer pass — resume,
//! a new trigger — and backfill, each keeping the fire ledger whole: the
//! cursor never jumps over a fire that has no record.

use super::Node;
use super::intake::{Admission, Decision, IntakeError, Work};
use super::materializer::{first_fire, within_bounds};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use taskhost_model::trigger;
use taskhost_model::{Execution, ExecutionStatus, FireInfo, FireReason, Schedule};
use taskhost_store::{FireFilter, StoreError};

/// Most fires one backfill request may cover.
pub const MAX_BACKFILL_FIRES: usize = 1000;

/// Most materializer passes a trigger change makes to record the old
/// trigger's due fires (each records up to `LEDGER_CHUNK` of them).
const SETTLE_PASSES: usize = 50;

/// What a backfill did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackfillReport {
    /// Fires of the trigger in the window (within the schedule's bounds).
    pub fires: u32,
    /// The executions it created, in fire order.
    pub created: Vec<String>,
    /// Fires that had run already (left alone).
    pub already_ran: u32,
    /// Fires that had been skipped or missed and now run.
    pub was_skipped: u32,
    /// Fires of the window outside the schedule's `starts_at`/`ends_at`.
    pub outside_bounds: u32,
}

/// Why a backfill was refused.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("the window must have 1970 <= from < to <= now")]
    InvalidWindow,
    #[error("the window holds more than {max} fires; backfill it in smaller windows")]
    TooLarge { max: usize },
    #[error(transparent)]
    Trigger(#[from] trigger::TriggerError),
    #[error(transparent)]
    Intake(#[from] IntakeError),
}

impl From<StoreError> for BackfillError {
    fn from(e: StoreError) -> Self {
        BackfillError::Intake(IntakeError::Store(e))
    }
}

impl Node {
    /// Records every due fire of a schedule (materializer passes, up to
    /// [`SETTLE_PASSES`]) so that its cursor may then move past now. Returns
    /// the schedule as it is after; its `next_fire_at` is still due if the
    /// backlog was longer than that (the materializer goes on recording it).
    pub async fn settle(&self, schedule: Schedule) -> Result<Schedule, StoreError> {
        let store = &self.inner.store;
        let mut s = schedule;
        for _ in 0..SETTLE_PASSES {
            // Read after `read_at`: the pass may trust what it read until then.
            let read_at = store.now();
            match store.get_schedule(&s.tenant, &s.id).await? {
                Some(now) => s = now,
                None => break,
            }
            if s.next_fire_at.is_none_or(|t| t > read_at) {
                break;
            }
            self.materialize(std::slice::from_ref(&s), read_at).await?;
        }
        Ok(s)
    }

    /// Pauses a schedule of `tenant`: it fires no more until resumed
    /// ([`Node::resume`]); each fire while paused is recorded as skipped,
    /// and so is each fire made ahead of its time (see
    /// [`SchedulerConfig::fire_horizon`](crate::SchedulerConfig::fire_horizon))
    /// that has not started: a pause takes effect at once.
    pub async fn pause(&self, tenant: &str, id: &str) -> Result<Option<Schedule>, StoreError> {
        let store = &self.inner.store;
        let paused = store
            .modify_schedule(Some(tenant), id, |s| {
                s.paused = true;
                true
            })
            .await?;
        if paused.is_none() {
            return Ok(None);
        }
        let now = store.now();
        let node = self.inner.config.node_id.clone();
        for e in store.active_runs(&[id.to_owned()]).await? {
            if e.status != ExecutionStatus::Queued || e.fire_time.is_none_or(|t| t <= now) {
                continue;
            }
            let node = node.clone();
            store
                .modify_execution(&e.id, move |e| {
                    if e.status != ExecutionStatus::Queued {
                        return false;
                    }
                    let mut info = FireInfo::dropped(FireReason::Paused, &node);
                    info.plugin_ref = e.fire.as_ref().and_then(|f| f.plugin_ref.clone());
                    e.fire = Some(info);
                    e.finish(ExecutionStatus::Skipped, now);
                    true
                })
                .await?;
        }
        Ok(paused)
    }

    /// Resumes a paused schedule of `tenant`: it fires again from now on.
    /// The fires that fell in the pause are not caught up; each is recorded
    /// as `skipped: paused` (by the materializer: while paused, and after
    /// this up to `paused_until`, so a resume costs one write however long
    /// the pause was).
    pub async fn resume(&self, tenant: &str, id: &str) -> Result<Option<Schedule>, StoreError> {
        let store = &self.inner.store;
        let now = store.now();
        let resumed = store
            .modify_schedule(Some(tenant), id, |s| {
                if !s.paused {
                    return false;
                }
                s.paused = false;
                match s.next_fire_at {
                    Some(_) => s.paused_until = Some(now),
                    // Paused before it had a cursor (made paused before
                    // the fire ledger): nothing to record.
                    None => s.next_fire_at = first_fire(s, now).ok().flatten(),
                }
                true
            })
            .await?;
        match resumed {
            Some(s) => Ok(Some(s)),
            // Not paused (or not there): nothing to change.
            None => store.get_schedule(tenant, id).await,
        }
    }

    /// Runs the fires of `schedule` in `[from, to)` that have not run: in
    /// fire order, at the schedule's priority, now. A fire that ran is left
    /// alone (so a backfill repeated is a no-op); one recorded as skipped or
    /// missed is run in place (its record becomes `backfilled`, and keeps
    /// what it was); one without a record gets a `backfilled` execution.
    /// All of it or none: the policy and the tenant's queue quota are checked
    /// for the whole window first.
    pub async fn backfill(
        &self,
        schedule: &Schedule,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<BackfillReport, BackfillError> {
        let store = &self.inner.store;
        let now = store.now();
        let (fires, outside) = window_fires(schedule, from, to, now)?;
        let mut report = BackfillReport {
            fires: fires.len() as u32,
            created: Vec::new(),
            already_ran: 0,
            was_skipped: 0,
            outside_bounds: outside,
        };
        if fires.is_empty() {
            return Ok(report);
        }
        // What the window's fires already have (exactly these fire times:
        // the window may hold many more records of an earlier trigger).
        let filter = FireFilter {
            since: Some(from),
            until: Some(to),
            fate: None,
            at: fires.clone(),
        };
        let records: HashMap<DateTime<Utc>, Execution> = store
            .fire_rows(
                &schedule.tenant,
                &schedule.id,
                &filter,
                MAX_BACKFILL_FIRES as u32,
            )
            .await?
            .into_iter()
            .filter_map(|e| Some((e.fire_time?, e)))
            .collect();
        let node = self.inner.config.node_id.as_str();
        let mut work = Vec::new();
        for (i, &fire) in fires.iter().enumerate() {
            // In fire order: the dispatcher orders by priority, then due time.
            let due = now + chrono::Duration::milliseconds(i as i64);
            match records.get(&fire) {
                Some(e) if e.status != ExecutionStatus::Skipped => report.already_ran += 1,
                existing => {
                    let mut w = Work::backfill(schedule, fire, due, node);
                    w.replaces = existing.map(|e| e.id.clone());
                    work.push(w);
                }
            }
        }
        let replaced: Vec<bool> = work.iter().map(|w| w.replaces.is_some()).collect();
        let decisions = self.intake(work, Admission::Backfill).await?;
        let mut created = Vec::new();
        for (decision, replaced) in decisions.into_iter().zip(replaced) {
            match decision {
                Decision::Run(e) => {
                    report.was_skipped += u32::from(replaced);
                    created.push(e);
                }
                // A racing backfill or pass got there first.
                _ => report.already_ran += 1,
            }
        }
        created.sort_by_key(|e| e.fire_time);
        report.created = created.into_iter().map(|e| e.id).collect();
        Ok(report)
    }
}

/// The fires of `schedule` in the window `[from, to)` within its bounds, and
/// how many fell outside them; refused if the window is not in the past or
/// holds more than [`MAX_BACKFILL_FIRES`].
fn window_fires(
    schedule: &Schedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(Vec<DateTime<Utc>>, u32), BackfillError> {
    // Cron fires from 1970 on; nothing before that can be backfilled.
    if from >= to || to > now || from < DateTime::<Utc>::UNIX_EPOCH {
        return Err(BackfillError::InvalidWindow);
    }
    let max = MAX_BACKFILL_FIRES;
    let all = trigger::backfill_fires(&schedule.trigger, schedule.created_at, from, to, max)?;
    if all.len() > max {
        return Err(BackfillError::TooLarge { max });
    }
    let (fires, outside): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|t| within_bounds(schedule, *t));
    Ok((fires, outside.len() as u32))
}
