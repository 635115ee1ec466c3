//! Turns due schedule fires into executions, and records every fire's fate.
//!
//! Any node may materialize any schedule. Each due fire gets exactly one
//! record in the fire ledger (see [`crate::model::FireRecord`]): its
//! execution when it runs, or a `skipped` record saying why it did not
//! (paused, overlap, catch-up policy, bounds, quota, policy). Every record is
//! an insert under the store's unique (schedule, fire time) key, so racing
//! nodes record each fire once and whoever loses adopts the winner's record;
//! the schedule's `next_fire_at` then advances by compare-and-swap, and only
//! after every fire below it has its record. Missed fires after downtime
//! follow the schedule's catch-up policy ([`trigger::plan_fires`]); a fire
//! that meets a still-active previous run follows its overlap policy.

use super::{ExecutionSpec, Node, trigger};
use crate::model::{
    CatchUp, CatchUpMode, Execution, ExecutionStatus, FireFate, FireInfo, FireReason,
    OverlapPolicy, Schedule,
};
use crate::store::{ExecutionFilter, FireDecided, PageRequest, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Most fires one schedule may run in one pass.
const MAX_FIRES_PER_PASS: usize = 1000;
/// Most fires one schedule's pass records (run or not); the rest are
/// recorded by the next passes (the schedule stays due).
pub const LEDGER_CHUNK: usize = 2000;

/// The plugin a pass runs: the schedule's, or the one its alias points to.
struct PassPlugin {
    /// Err: why there is none (an alias pointing to nothing).
    id: Result<String, String>,
    follows: Option<String>,
}

impl Node {
    /// Materializes every due fire of every due schedule (up to `limit`
    /// schedules). Returns the executions this call created.
    pub async fn materialize_due(&self, limit: u32) -> Result<Vec<Execution>, StoreError> {
        let store = &self.inner.store;
        let mut created = Vec::new();
        let read_at = store.now();
        for schedule in store.due_schedules(limit).await? {
            match self.materialize_schedule(&schedule, read_at).await {
                Ok(mut new) => created.append(&mut new),
                Err(e) => {
                    self.inner.metrics.store_error("materialize");
                    tracing::warn!(schedule = %schedule.id, error = %e, "could not materialize")
                }
            }
        }
        Ok(created)
    }

    /// One pass over one schedule, as read at `read_at`: records a decision
    /// for each due fire (up to [`LEDGER_CHUNK`], besides those that run)
    /// and moves its cursor past them.
    pub(super) async fn materialize_schedule(
        &self,
        schedule: &Schedule,
        read_at: DateTime<Utc>,
    ) -> Result<Vec<Execution>, StoreError> {
        let store = &self.inner.store;
        let node = self.inner.config.node_id.as_str();
        let Some(stored_next) = schedule.next_fire_at else {
            return Ok(Vec::new());
        };
        // The fires that fell in a pause are recorded as `paused`: while the
        // schedule is paused (as read: a resume since then is not undone by
        // this pass, which stops at the read), and after a resume, those
        // before it.
        let pause_end = schedule.paused_until.filter(|u| stored_next < *u);
        let (paused, now) = match (schedule.paused, pause_end) {
            (true, _) => (true, store.now().min(read_at)),
            (false, Some(until)) => (
                true,
                store.now().min(until - chrono::Duration::milliseconds(1)),
            ),
            (false, None) => (false, store.now()),
        };
        // A record older than its retention would be born expired; records of
        // fires that did not run are kept at most the node's retention.
        let node_retention = self.inner.config.retention;
        let retention = schedule
            .retention
            .unwrap_or(node_retention)
            .min(node_retention);
        let record_from = minus(now, retention);
        let (catch_up, grace) = if paused {
            (
                CatchUp {
                    mode: CatchUpMode::Skip,
                    ..schedule.catch_up
                },
                Duration::ZERO,
            )
        } else {
            (schedule.catch_up, self.inner.config.catch_up_grace)
        };
        let plan = trigger::plan_fires(
            &schedule.trigger,
            schedule.created_at,
            stored_next,
            now,
            catch_up,
            grace,
            MAX_FIRES_PER_PASS,
            record_from,
            LEDGER_CHUNK,
        )
        .unwrap_or_else(|e| {
            // Validated at creation; if it breaks anyway, stop firing it.
            tracing::error!(schedule = %schedule.id, error = %e, "schedule trigger is invalid; it stops firing");
            trigger::FirePlan { fires: Vec::new(), next_fire_at: None }
        });
        let next_fire_at = match plan.next_fire_at {
            Some(next) if schedule.starts_at.is_some_and(|start| next < start) => {
                first_fire(schedule, schedule.starts_at.unwrap_or(next))
                    .ok()
                    .flatten()
            }
            next => next.filter(|t| within_bounds(schedule, *t)),
        };
        // Decisions made by time alone go in one round trip.
        let mut skipped = Vec::new();
        let mut runs = Vec::new();
        for (fire, planned) in plan.fires {
            let info = if !within_bounds(schedule, fire) {
                FireInfo::dropped(FireReason::OutsideBounds, node)
            } else if paused {
                FireInfo::dropped(FireReason::Paused, node)
            } else {
                match planned {
                    trigger::Planned::Run { late } => {
                        runs.push((fire, late));
                        continue;
                    }
                    trigger::Planned::Dropped(d) => dropped_info(d, node),
                }
            };
            let spec = ExecutionSpec::fire(schedule, &schedule.plugin_id, fire);
            skipped.push(self.skipped_record(&spec, info, now));
        }
        let inserted = store.decide_fires(&skipped).await?;
        for (row, ours) in skipped.iter().zip(inserted) {
            if ours && let Some((fate, reason)) = row.fire_fate() {
                self.inner.metrics.fire(fate, reason);
            }
        }
        let mut created = Vec::new();
        let mut plugin = None;
        for &(fire, late) in &runs {
            // Decided by an earlier pass (one that cut a long backlog into
            // chunks decides the runs beyond its chunk at once).
            if schedule.last_fire_at.is_some_and(|last| fire <= last) {
                continue;
            }
            let pass = match &plugin {
                Some(p) => p,
                None => plugin.insert(self.pass_plugin(schedule).await?),
            };
            let fate = if late {
                FireFate::CaughtUp
            } else {
                FireFate::Ran
            };
            let plugin_id = pass.id.as_deref().unwrap_or(&schedule.plugin_id);
            let spec = ExecutionSpec::fire(schedule, plugin_id, fire);
            let refusal = match &pass.id {
                Err(why) => Some(FireInfo::dropped(FireReason::Policy, node).with_detail(why)),
                Ok(_) => self.overlap_blocks(schedule, node).await?,
            };
            let decided = match refusal {
                Some(mut info) => {
                    info.plugin_ref = pass.follows.clone();
                    let row = self.skipped_record(&spec, info, now);
                    let decided = store.decide_fire(&row).await?;
                    if let FireDecided::Ours(e) = &decided
                        && let Some((fate, reason)) = e.fire_fate()
                    {
                        self.inner.metrics.fire(fate, reason);
                    }
                    decided
                }
                None => {
                    let mut info = FireInfo::run(fate, node);
                    info.plugin_ref = pass.follows.clone();
                    self.decide_fire(spec, info).await?
                }
            };
            if let FireDecided::Ours(e) = decided
                && e.status == ExecutionStatus::Queued
            {
                if schedule.overlap == OverlapPolicy::CancelPrevious {
                    self.cancel_others(schedule, &e.id).await?;
                }
                created.push(*e);
            }
        }
        let last = runs.last().map(|(t, _)| *t);
        let resolved = plugin.and_then(|p| p.follows.and(p.id.ok()));
        store
            .modify_schedule(None, &schedule.id, |current| {
                // Another node advanced it, or it was paused, resumed or
                // edited: leave it (its fires so far are recorded either way).
                if current.next_fire_at != Some(stored_next)
                    || current.paused != schedule.paused
                    || current.paused_until != schedule.paused_until
                {
                    return false;
                }
                current.next_fire_at = next_fire_at;
                current.last_fire_at = last.or(current.last_fire_at);
                if current
                    .paused_until
                    .is_some_and(|until| next_fire_at.is_none_or(|next| next >= until))
                {
                    current.paused_until = None;
                }
                if let Some(id) = &resolved {
                    current.plugin_id = id.clone();
                }
                true
            })
            .await?;
        Ok(created)
    }

    /// The plugin this pass of `schedule` runs: its own, or where its alias
    /// points now (one read per pass, so an alias moved on any node is
    /// followed from the next pass on every node).
    async fn pass_plugin(&self, schedule: &Schedule) -> Result<PassPlugin, StoreError> {
        let Some(alias) = &schedule.plugin_alias else {
            return Ok(PassPlugin {
                id: Ok(schedule.plugin_id.clone()),
                follows: None,
            });
        };
        let resolved = self
            .inner
            .store
            .resolve_plugin(&schedule.tenant, alias)
            .await?;
        Ok(PassPlugin {
            id: resolved
                .map(|r| r.plugin.id)
                .ok_or_else(|| format!("plugin alias {alias} points to no plugin")),
            follows: Some(alias.clone()),
        })
    }

    /// Whether the schedule's overlap policy keeps a new fire from running:
    /// the record to write instead (`overlap`, or `coalesced_into` the
    /// queued fire under `buffer_one`).
    async fn overlap_blocks(
        &self,
        schedule: &Schedule,
        node: &str,
    ) -> Result<Option<FireInfo>, StoreError> {
        let statuses: &[ExecutionStatus] = match schedule.overlap {
            OverlapPolicy::Allow | OverlapPolicy::CancelPrevious => return Ok(None),
            OverlapPolicy::Skip => &[ExecutionStatus::Queued, ExecutionStatus::Running],
            OverlapPolicy::BufferOne => &[ExecutionStatus::Queued],
        };
        for &status in statuses {
            let Some(by) = self.active_runs(schedule, status).await?.into_iter().next() else {
                continue;
            };
            let mut info = FireInfo::dropped(FireReason::Overlap, node);
            if schedule.overlap == OverlapPolicy::BufferOne && by.fire_time.is_some() {
                info = FireInfo::dropped(FireReason::CoalescedInto, node);
                info.coalesced_into = by.fire_time;
            }
            info.blocked_by = Some(by.id);
            return Ok(Some(info));
        }
        Ok(None)
    }

    /// Overlap `cancel_previous`: a new fire won its record, so the
    /// schedule's other active runs are cancelled (only then: a fire another
    /// node recorded as skipped cancels nothing).
    async fn cancel_others(&self, schedule: &Schedule, keep: &str) -> Result<(), StoreError> {
        for status in [ExecutionStatus::Queued, ExecutionStatus::Running] {
            for e in self.active_runs(schedule, status).await? {
                if e.id != keep {
                    self.inner.store.cancel(&schedule.tenant, &e.id).await?;
                }
            }
        }
        Ok(())
    }

    async fn active_runs(
        &self,
        schedule: &Schedule,
        status: ExecutionStatus,
    ) -> Result<Vec<Execution>, StoreError> {
        let filter = ExecutionFilter {
            schedule_id: Some(schedule.id.clone()),
            status: Some(status),
            ..ExecutionFilter::default()
        };
        let page = PageRequest {
            cursor: None,
            limit: Some(100),
        };
        Ok(self
            .inner
            .store
            .list_executions(&schedule.tenant, &filter, &page)
            .await?
            .items)
    }
}

fn dropped_info(d: trigger::Dropped, node: &str) -> FireInfo {
    match d {
        trigger::Dropped::CatchUpSkip => FireInfo::dropped(FireReason::CatchUpSkip, node),
        trigger::Dropped::OutsideWindow => FireInfo::dropped(FireReason::OutsideWindow, node),
        trigger::Dropped::CatchUpLimit => FireInfo::dropped(FireReason::CatchUpLimit, node),
        trigger::Dropped::CoalescedInto(into) => FireInfo {
            coalesced_into: Some(into),
            ..FireInfo::dropped(FireReason::CoalescedInto, node)
        },
    }
}

/// When a schedule created or resumed at `now` fires first, within its
/// start/end bounds.
pub fn first_fire(
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, trigger::TriggerError> {
    let from = schedule.starts_at.map_or(now, |start| start.max(now));
    // A fire exactly at `from` counts: `next_fire` is strictly after.
    let just_before = from - chrono::Duration::milliseconds(1);
    let next = trigger::next_fire(&schedule.trigger, schedule.created_at, just_before)?;
    Ok(next.filter(|t| within_bounds(schedule, *t)))
}

pub(super) fn within_bounds(schedule: &Schedule, t: DateTime<Utc>) -> bool {
    schedule.starts_at.is_none_or(|start| t >= start) && schedule.ends_at.is_none_or(|end| t <= end)
}

/// `t - d`, saturating.
pub(super) fn minus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Grace within which a due fire counts as on time rather than missed.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
