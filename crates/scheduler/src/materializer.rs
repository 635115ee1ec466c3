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
//! advances by compare-and-swap on its version in the same write (one
//! transaction on SQLite), so only past fires that have their record.
//!
//! A pass reads the due schedules of this node's partitions
//! ([`crate::partitions`]), up to [`SchedulerConfig::fire_horizon`](crate::SchedulerConfig::fire_horizon) ahead:
//! their executions wait in the store and the heap and start on their
//! instant. A fire decided late while the node's passes kept coming (it was
//! busy, not down) runs late and records by how much; catch-up policies
//! apply only to fires due before that coverage began (downtime).

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
    /// When the pass decided (a fire that runs later than the grace after
    /// its time records how late).
    decided_at: DateTime<Utc>,
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
        Ok(self.fire_pass(limit).await?.1)
    }

    /// Passes back to back while they come full (a burst of schedules due
    /// at once is worked through without waiting for the next interval).
    /// Returns how many schedules they read.
    pub async fn fire_passes(&self) -> Result<usize, StoreError> {
        let size = self.inner.config.pass_size;
        let mut read = 0;
        loop {
            let (n, _) = self.fire_pass(size).await?;
            read += n;
            if n < size as usize {
                return Ok(read);
            }
        }
    }

    /// One pass: the due schedules of this node's partitions (up to
    /// `limit`), each one's fires recorded and its cursor moved.
    async fn fire_pass(&self, limit: u32) -> Result<(usize, Vec<Execution>), StoreError> {
        let store = &self.inner.store;
        let partitions = self.pass_partitions();
        if partitions.as_ref().is_some_and(Vec::is_empty) {
            return Ok((0, Vec::new()));
        }
        let read_at = store.now();
        self.pass_started(read_at);
        let before = taskhost_model::time::add_saturating(read_at, self.inner.config.fire_horizon);
        let due = store
            .due_schedules(before, partitions.as_deref(), limit)
            .await?;
        let made = self.materialize(&due, read_at).await?;
        Ok((due.len(), made))
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
        let prepared = match self.prepare(work, Admission::Fires).await {
            Ok(prepared) => prepared,
            Err(IntakeError::Store(e)) => return Err(e),
            Err(other) => return Err(StoreError::backend(other.to_string())),
        };
        let moves = self.cursor_moves(&passes, &prepared.rows, &owners);
        let (decisions, moved) = match self.commit(prepared, &moves).await {
            Ok(done) => done,
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
        for ((pass, new), moved) in passes.iter().zip(made).zip(moved) {
            if pass.schedule.overlap == OverlapPolicy::CancelPrevious
                && let Some(keep) = new.last()
            {
                self.cancel_others(pass.schedule, &active, &new, &keep.id)
                    .await?;
            }
            // Changed since it was read (edited, paused, moved by another
            // node): its fires are recorded; move it the careful way.
            if !moved && let Err(e) = self.advance(pass, new.last()).await {
                self.inner.metrics.store_error("materialize");
                tracing::warn!(schedule = %pass.schedule.id, error = %e, "could not advance the schedule");
            }
            created.extend(new);
        }
        Ok(created)
    }

    /// Each schedule as it is after its pass: the cursor past its fires,
    /// the plugin its alias resolved to, version + 1 (written only if the
    /// stored version is still the one read).
    fn cursor_moves(
        &self,
        passes: &[Pass<'_>],
        rows: &[Execution],
        owners: &[usize],
    ) -> Vec<Schedule> {
        let now = self.inner.store.now();
        passes
            .iter()
            .enumerate()
            .map(|(p, pass)| {
                let mut moved = pass.schedule.clone();
                let runs = owners
                    .iter()
                    .zip(rows)
                    .filter(|(o, e)| **o == p && e.status != ExecutionStatus::Skipped);
                let last_run = runs.map(|(_, e)| e).next_back();
                pass.apply(&mut moved, last_run);
                moved.version += 1;
                moved.updated_at = now;
                moved
            })
            .collect()
    }

    /// A schedule's fires due by now (as read at `read_at`), decided by
    /// time alone; `None` if it has no cursor.
    fn plan<'a>(&self, schedule: &'a Schedule, read_at: DateTime<Utc>) -> Option<Pass<'a>> {
        let stored_next = schedule.next_fire_at?;
        let (query, paused) = self.query(schedule, stored_next, read_at);
        let plan = trigger::plan_fires(&schedule.trigger, &query).unwrap_or_else(|e| {
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
            decided_at: self.inner.store.now(),
        })
    }

    /// What this pass asks of a schedule's trigger, and whether its fires
    /// fall in a pause.
    fn query(
        &self,
        schedule: &Schedule,
        stored_next: DateTime<Utc>,
        read_at: DateTime<Utc>,
    ) -> (trigger::FireQuery, bool) {
        let config = &self.inner.config;
        let now = self.inner.store.now();
        // The fires that fell in a pause are recorded as `paused`: while the
        // schedule is paused (as read: a resume since then is not undone by
        // this pass, which stops at the read), and after a resume, those
        // before it. They are decided when due, never ahead; so are the
        // fires of a schedule whose overlap policy looks at running work.
        let pause_end = schedule.paused_until.filter(|u| stored_next < *u);
        let ahead = match schedule.overlap {
            OverlapPolicy::Allow => config.fire_horizon,
            _ => Duration::ZERO,
        };
        let (paused, until) = match (schedule.paused, pause_end) {
            (true, _) => (true, now.min(read_at)),
            (false, Some(end)) => (true, now.min(end - chrono::Duration::milliseconds(1))),
            (false, None) => (false, taskhost_model::time::add_saturating(now, ahead)),
        };
        // A record older than its retention would be born expired; records of
        // fires that did not run are kept at most the node's retention.
        let retention = schedule.policy.retention.unwrap_or(config.retention);
        let record_from = sub_saturating(now, retention.min(config.retention));
        let (catch_up, grace) = match paused {
            true => (
                CatchUp {
                    mode: CatchUpMode::Skip,
                    ..schedule.catch_up
                },
                Duration::ZERO,
            ),
            false => (schedule.catch_up, self.missed_grace(&schedule.id, until)),
        };
        let query = trigger::FireQuery {
            created_at: schedule.created_at,
            next_fire_at: stored_next,
            now: until,
            catch_up,
            grace,
            max_runs: MAX_FIRES_PER_PASS,
            record_from,
            max_entries: LEDGER_CHUNK,
        };
        (query, paused)
    }

    /// How late a fire due by `until` may be and still run on time rather
    /// than follow the catch-up policy: the grace, stretched back to the
    /// start of this node's coverage of the schedule's partition. A fire due
    /// while the passes kept coming was late because the node was busy;
    /// only one due before (downtime) was missed.
    fn missed_grace(&self, schedule_id: &str, until: DateTime<Utc>) -> Duration {
        let grace = self.inner.config.catch_up_grace;
        let covered_since = self.covered_since(schedule_id, self.inner.store.now());
        let covered = (until - covered_since).to_std().unwrap_or(Duration::ZERO);
        grace.max(covered.saturating_add(grace))
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
                            let mut info = FireInfo::run(fate, node);
                            info.late_ms = self.lateness(pass, *fire).filter(|_| !*late);
                            let w = Work::fire(s, *fire, info);
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

    /// How late the pass decides a fire, if later than the grace.
    fn lateness(&self, pass: &Pass<'_>, fire: DateTime<Utc>) -> Option<u64> {
        let late = (pass.decided_at - fire).to_std().ok()?;
        (late > self.inner.config.catch_up_grace).then_some(late.as_millis() as u64)
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
            self.cancel(&schedule.tenant, id).await?;
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
        let store = &self.inner.store;
        store
            .modify_schedule(None, &pass.schedule.id, |current| {
                pass.apply(current, last_run)
            })
            .await?;
        Ok(())
    }
}

impl Pass<'_> {
    /// The pass's move of a schedule: its cursor past the pass's fires, its
    /// last fire, the end of a pause once passed, and the plugin its alias
    /// resolved to (`last_run`'s). False, and nothing changed, if the
    /// schedule is no longer as the pass read it.
    fn apply(&self, current: &mut Schedule, last_run: Option<&Execution>) -> bool {
        let s = self.schedule;
        if current.next_fire_at != Some(self.stored_next)
            || current.paused != s.paused
            || current.paused_until != s.paused_until
        {
            return false;
        }
        let last = self
            .fires
            .iter()
            .rev()
            .find(|(t, f)| matches!(f, trigger::Planned::Run { .. }) && within_bounds(s, *t))
            .map(|(t, _)| *t)
            .filter(|_| !self.paused);
        current.next_fire_at = self.next_fire_at;
        current.last_fire_at = last.or(current.last_fire_at);
        let next = self.next_fire_at;
        if current
            .paused_until
            .is_some_and(|u| next.is_none_or(|n| n >= u))
        {
            current.paused_until = None;
        }
        if let Some(e) = last_run.filter(|_| s.plugin_alias.is_some()) {
            current.plugin_id = e.plugin_id.clone();
        }
        true
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
