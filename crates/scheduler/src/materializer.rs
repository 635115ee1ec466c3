//! Turns due schedule fires into executions, and records every fire's fate,
//! many schedules in one pass.
//!
//! Any node may materialize any schedule. Each due fire gets exactly one
//! record in the fire ledger (see [`taskhost_model::FireRecord`]): its
//! execution when it runs, or a `skipped` record saying why it did not
//! (paused, overlap, catch-up policy, bounds, quota, policy). A pass plans
//! each due schedule's fires by time ([`trigger::plan_fires`]: missed fires
//! after downtime follow the catch-up policy), applies overlap policies
//! from one read of the schedules' active runs, and hands every fire to the
//! intake in one call, which writes each record under the store's unique
//! (schedule, fire time) key: racing nodes record each fire once, and
//! whoever loses adopts the winner's record. Each schedule's `next_fire_at`
//! then advances by compare-and-swap, and only past fires that have their
//! record.

use super::Node;
use super::intake::{Admission, Decision, IntakeError, Work};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Duration;
use taskhost_model::time::sub_saturating;
use taskhost_model::trigger;
use taskhost_model::{
    CatchUp, CatchUpMode, Execution, ExecutionStatus, FireFate, FireInfo, FireReason,
    OverlapPolicy, Schedule,
};
use taskhost_store::StoreError;

/// Most fires one schedule may run in one pass.
const MAX_FIRES_PER_PASS: usize = 1000;
/// Most fires one schedule's pass records (run or not); the rest are
/// recorded by the next passes (the schedule stays due).
pub const LEDGER_CHUNK: usize = 2000;
/// Grace within which a due fire counts as on time rather than missed.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// One schedule's part of a pass: its fires, decided by time, and where its
/// cursor goes.
struct Pass<'a> {
    schedule: &'a Schedule,
    /// The cursor as read: the pass moves it only if it is still there.
    stored_next: DateTime<Utc>,
    fires: Vec<(DateTime<Utc>, trigger::Planned)>,
    next_fire_at: Option<DateTime<Utc>>,
    paused: bool,
}

/// A schedule's queued and running executions, newest first, as the pass
/// found them (and as its own new runs change them).
#[derive(Default)]
struct Active {
    queued: Vec<(String, Option<DateTime<Utc>>)>,
    running: Vec<String>,
}

impl Node {
    /// Materializes every due fire of every due schedule (up to `limit`
    /// schedules). Returns the executions this call created.
    pub async fn materialize_due(&self, limit: u32) -> Result<Vec<Execution>, StoreError> {
        let store = &self.inner.store;
        let read_at = store.now();
        let due = store.due_schedules(limit).await?;
        self.materialize(&due, read_at).await
    }

    /// One pass over `schedules`, as read at `read_at`: records a decision
    /// for each due fire (up to [`LEDGER_CHUNK`] a schedule, besides those
    /// that run) and moves each cursor past them.
    pub(super) async fn materialize(
        &self,
        schedules: &[Schedule],
        read_at: DateTime<Utc>,
    ) -> Result<Vec<Execution>, StoreError> {
        let passes: Vec<Pass<'_>> = schedules
            .iter()
            .filter_map(|s| self.plan(s, read_at))
            .collect();
        let mut active = self.active_runs(&passes).await?;
        let mut work = Vec::new();
        let mut owners = Vec::new();
        for (p, pass) in passes.iter().enumerate() {
            let runs = active.entry(pass.schedule.id.clone()).or_default();
            for w in self.pass_work(pass, runs) {
                work.push(w);
                owners.push(p);
            }
        }
        let decisions = match self.intake(work, Admission::Fires).await {
            Ok(decisions) => decisions,
            Err(IntakeError::Store(e)) => return Err(e),
            Err(other) => return Err(StoreError::backend(other.to_string())),
        };
        let mut made: Vec<Vec<Execution>> = vec![Vec::new(); passes.len()];
        for (decision, p) in decisions.into_iter().zip(owners) {
            if let Decision::Run(e) = decision {
                made[p].push(e);
            }
        }
        let mut created = Vec::new();
        for (pass, new) in passes.iter().zip(made) {
            if pass.schedule.overlap == OverlapPolicy::CancelPrevious
                && let Some(keep) = new.last()
            {
                self.cancel_others(pass.schedule, &active, &new, &keep.id)
                    .await?;
            }
            if let Err(e) = self.advance(pass, new.last()).await {
                self.inner.metrics.store_error("materialize");
                tracing::warn!(schedule = %pass.schedule.id, error = %e, "could not advance the schedule");
            }
            created.extend(new);
        }
        Ok(created)
    }

    /// A schedule's fires due by now (as read at `read_at`), decided by
    /// time alone; `None` if it has no cursor.
    fn plan<'a>(&self, schedule: &'a Schedule, read_at: DateTime<Utc>) -> Option<Pass<'a>> {
        let stored_next = schedule.next_fire_at?;
        let now = self.inner.store.now();
        // The fires that fell in a pause are recorded as `paused`: while the
        // schedule is paused (as read: a resume since then is not undone by
        // this pass, which stops at the read), and after a resume, those
        // before it.
        let pause_end = schedule.paused_until.filter(|u| stored_next < *u);
        let (paused, now) = match (schedule.paused, pause_end) {
            (true, _) => (true, now.min(read_at)),
            (false, Some(until)) => (true, now.min(until - chrono::Duration::milliseconds(1))),
            (false, None) => (false, now),
        };
        // A record older than its retention would be born expired; records of
        // fires that did not run are kept at most the node's retention.
        let node_retention = self.inner.config.retention;
        let retention = schedule.policy.retention.unwrap_or(node_retention);
        let record_from = sub_saturating(now, retention.min(node_retention));
        let (catch_up, grace) = match paused {
            true => (
                CatchUp {
                    mode: CatchUpMode::Skip,
                    ..schedule.catch_up
                },
                Duration::ZERO,
            ),
            false => (schedule.catch_up, self.inner.config.catch_up_grace),
        };
        let query = trigger::FireQuery {
            created_at: schedule.created_at,
            next_fire_at: stored_next,
            now,
            catch_up,
            grace,
            max_runs: MAX_FIRES_PER_PASS,
            record_from,
            max_entries: LEDGER_CHUNK,
        };
        let plan = trigger::plan_fires(&schedule.trigger, &query)
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
        Some(Pass {
            schedule,
            stored_next,
            fires: plan.fires,
            next_fire_at,
            paused,
        })
    }

    /// The work of one schedule's pass, in fire order: each fire decided by
    /// time, bounds and overlap; `active` follows the runs it adds.
    fn pass_work(&self, pass: &Pass<'_>, active: &mut Active) -> Vec<Work> {
        let node = self.inner.config.node_id.as_str();
        let s = pass.schedule;
        let mut work = Vec::new();
        for (fire, planned) in &pass.fires {
            let info = if !within_bounds(s, *fire) {
                FireInfo::dropped(FireReason::OutsideBounds, node)
            } else if pass.paused {
                FireInfo::dropped(FireReason::Paused, node)
            } else {
                match planned {
                    trigger::Planned::Dropped(d) => dropped_info(*d, node),
                    // Decided by an earlier pass (one that cut a long
                    // backlog into chunks decides the runs beyond its
                    // chunk at once).
                    trigger::Planned::Run { .. } if s.last_fire_at.is_some_and(|l| *fire <= l) => {
                        continue;
                    }
                    trigger::Planned::Run { late } => match overlap_blocks(s, active, node) {
                        Some(mut info) => {
                            info.plugin_ref = s.plugin_alias.clone();
                            info
                        }
                        None => {
                            let fate = if *late {
                                FireFate::CaughtUp
                            } else {
                                FireFate::Ran
                            };
                            let w = Work::fire(s, *fire, FireInfo::run(fate, node));
                            active.queued.insert(0, (w.id.clone(), Some(*fire)));
                            work.push(w);
                            continue;
                        }
                    },
                }
            };
            work.push(Work::fire(s, *fire, info));
        }
        work
    }

    /// The queued and running executions of the schedules whose overlap
    /// policy looks at them, in one read.
    async fn active_runs(
        &self,
        passes: &[Pass<'_>],
    ) -> Result<HashMap<String, Active>, StoreError> {
        let ids: Vec<String> = passes
            .iter()
            .filter(|p| p.schedule.overlap != OverlapPolicy::Allow)
            .filter(|p| {
                p.fires
                    .iter()
                    .any(|(_, f)| matches!(f, trigger::Planned::Run { .. }))
            })
            .map(|p| p.schedule.id.clone())
            .collect();
        let mut active: HashMap<String, Active> = HashMap::new();
        if ids.is_empty() {
            return Ok(active);
        }
        let mut found = self.inner.store.active_runs(&ids).await?;
        found.sort_by(|a, b| b.id.cmp(&a.id));
        for e in found {
            let Some(schedule) = e.schedule_id.clone() else {
                continue;
            };
            let runs = active.entry(schedule).or_default();
            match e.status {
                ExecutionStatus::Queued => runs.queued.push((e.id, e.fire_time)),
                ExecutionStatus::Running => runs.running.push(e.id),
                _ => {}
            }
        }
        Ok(active)
    }

    /// Overlap `cancel_previous`: new fires won their records, so the
    /// schedule's other active runs are cancelled (only then: a fire another
    /// node recorded as skipped cancels nothing).
    async fn cancel_others(
        &self,
        schedule: &Schedule,
        active: &HashMap<String, Active>,
        new: &[Execution],
        keep: &str,
    ) -> Result<(), StoreError> {
        let found = active.get(&schedule.id);
        let before = found
            .into_iter()
            .flat_map(|a| a.queued.iter().map(|(id, _)| id).chain(a.running.iter()));
        let ids: Vec<&String> = before.chain(new.iter().map(|e| &e.id)).collect();
        for id in ids.into_iter().filter(|id| *id != keep) {
            self.inner.store.cancel(&schedule.tenant, id).await?;
        }
        Ok(())
    }

    /// Moves the schedule's cursor past the pass's fires, unless another
    /// node advanced it or it was paused, resumed or edited meanwhile (its
    /// fires so far are recorded either way).
    async fn advance(
        &self,
        pass: &Pass<'_>,
        last_run: Option<&Execution>,
    ) -> Result<(), StoreError> {
        let s = pass.schedule;
        let last = pass
            .fires
            .iter()
            .rev()
            .find(|(t, f)| matches!(f, trigger::Planned::Run { .. }) && within_bounds(s, *t))
            .map(|(t, _)| *t);
        let last = last.filter(|_| !pass.paused);
        let follows = s.plugin_alias.is_some();
        let resolved = last_run.filter(|_| follows).map(|e| e.plugin_id.clone());
        self.inner
            .store
            .modify_schedule(None, &s.id, |current| {
                if current.next_fire_at != Some(pass.stored_next)
                    || current.paused != s.paused
                    || current.paused_until != s.paused_until
                {
                    return false;
                }
                current.next_fire_at = pass.next_fire_at;
                current.last_fire_at = last.or(current.last_fire_at);
                let next = pass.next_fire_at;
                if current
                    .paused_until
                    .is_some_and(|u| next.is_none_or(|n| n >= u))
                {
                    current.paused_until = None;
                }
                if let Some(id) = &resolved {
                    current.plugin_id = id.clone();
                }
                true
            })
            .await?;
        Ok(())
    }
}

/// Whether the schedule's overlap policy keeps a new fire from running:
/// the record to write instead (`overlap`, or `coalesced_into` the queued
/// fire under `buffer_one`).
fn overlap_blocks(schedule: &Schedule, active: &Active, node: &str) -> Option<FireInfo> {
    let queued = active.queued.first();
    let (by, into) = match schedule.overlap {
        OverlapPolicy::Allow | OverlapPolicy::CancelPrevious => return None,
        OverlapPolicy::Skip => match (queued, active.running.first()) {
            (Some((id, _)), _) => (id.clone(), None),
            (None, Some(id)) => (id.clone(), None),
            (None, None) => return None,
        },
        OverlapPolicy::BufferOne => {
            let (id, fire) = queued?;
            (id.clone(), *fire)
        }
    };
    let mut info = match into {
        Some(fire) => FireInfo {
            coalesced_into: Some(fire),
            ..FireInfo::dropped(FireReason::CoalescedInto, node)
        },
        None => FireInfo::dropped(FireReason::Overlap, node),
    };
    info.blocked_by = Some(by);
    Some(info)
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
