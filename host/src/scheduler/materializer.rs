//! Turns due schedule fires into executions.
//!
//! Any node may materialize any schedule: each fire is inserted under the
//! store's unique (schedule, fire time) key, so racing nodes create it once,
//! and the schedule's `next_fire_at` advances by compare-and-swap, so only one
//! node moves it. Missed fires after downtime follow the schedule's catch-up
//! policy ([`trigger::plan_due`]); a fire that meets a still-active previous
//! run follows its overlap policy.

use super::{EnqueueError, ExecutionSpec, Node, trigger};
use crate::model::{Execution, ExecutionStatus, OverlapPolicy, Schedule};
use crate::store::{ExecutionFilter, PageRequest, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Most fires one schedule may materialize in one pass.
const MAX_FIRES_PER_PASS: usize = 1000;

impl Node {
    /// Materializes every due fire of every due schedule (up to `limit`
    /// schedules). Returns the executions this call created.
    pub async fn materialize_due(&self, limit: u32) -> Result<Vec<Execution>, StoreError> {
        let store = &self.inner.store;
        let mut created = Vec::new();
        for schedule in store.due_schedules(limit).await? {
            match self.materialize_schedule(&schedule).await {
                Ok(mut new) => created.append(&mut new),
                Err(e) => {
                    self.inner.metrics.store_error("materialize");
                    tracing::warn!(schedule = %schedule.id, error = %e, "could not materialize")
                }
            }
        }
        Ok(created)
    }

    async fn materialize_schedule(
        &self,
        schedule: &Schedule,
    ) -> Result<Vec<Execution>, StoreError> {
        let store = &self.inner.store;
        let now = store.now();
        let Some(stored_next) = schedule.next_fire_at else {
            return Ok(Vec::new());
        };
        let grace = self.inner.config.catch_up_grace;
        let plan = match trigger::plan_due(
            &schedule.trigger,
            schedule.created_at,
            stored_next,
            now,
            schedule.catch_up,
            grace,
            MAX_FIRES_PER_PASS,
        ) {
            Ok(plan) => plan,
            Err(e) => {
                // Validated at creation; if it breaks anyway, stop firing it.
                tracing::error!(schedule = %schedule.id, error = %e, "schedule trigger is invalid; it stops firing");
                trigger::CatchUpPlan {
                    fires: Vec::new(),
                    next_fire_at: None,
                }
            }
        };
        let fires: Vec<DateTime<Utc>> = plan
            .fires
            .iter()
            .copied()
            .filter(|f| within_bounds(schedule, *f))
            .collect();
        let next_fire_at = match plan.next_fire_at {
            Some(next) if schedule.starts_at.is_some_and(|start| next < start) => {
                first_fire(schedule, schedule.starts_at.unwrap_or(next))
                    .ok()
                    .flatten()
            }
            next => next.filter(|t| within_bounds(schedule, *t)),
        };
        let mut created = Vec::new();
        for &fire in &fires {
            if !self.overlap_allows(schedule).await? {
                continue;
            }
            match self.enqueue(ExecutionSpec::fire(schedule, fire)).await {
                Ok(Some(execution)) => created.push(execution),
                Ok(None) => {} // another node (or an earlier pass) made it
                Err(EnqueueError::Store(e)) => return Err(e),
                Err(refused) => {
                    // Over the tenant's queue quota, or a policy the node no
                    // longer allows: the fire is skipped, not retried.
                    tracing::warn!(schedule = %schedule.id, fire = %fire, error = %refused, "fire skipped");
                    self.inner.metrics.fire_skipped();
                }
            }
        }
        let last = fires.last().copied();
        store
            .modify_schedule(None, &schedule.id, |current| {
                // Another node advanced it, or it was paused or edited: leave it.
                if current.next_fire_at != Some(stored_next) || current.paused {
                    return false;
                }
                current.next_fire_at = next_fire_at;
                current.last_fire_at = last.or(current.last_fire_at);
                true
            })
            .await?;
        Ok(created)
    }

    /// Applies the schedule's overlap policy before a new fire is created.
    async fn overlap_allows(&self, schedule: &Schedule) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        let active = |status| async move {
            let filter = ExecutionFilter {
                schedule_id: Some(schedule.id.clone()),
                status: Some(status),
                ..ExecutionFilter::default()
            };
            let page = PageRequest {
                cursor: None,
                limit: Some(100),
            };
            store
                .list_executions(&schedule.tenant, &filter, &page)
                .await
                .map(|p| p.items)
        };
        Ok(match schedule.overlap {
            OverlapPolicy::Allow => true,
            OverlapPolicy::Skip => {
                active(ExecutionStatus::Queued).await?.is_empty()
                    && active(ExecutionStatus::Running).await?.is_empty()
            }
            OverlapPolicy::BufferOne => active(ExecutionStatus::Queued).await?.is_empty(),
            OverlapPolicy::CancelPrevious => {
                for status in [ExecutionStatus::Queued, ExecutionStatus::Running] {
                    for e in active(status).await? {
                        store.cancel(&schedule.tenant, &e.id).await?;
                    }
                }
                true
            }
        })
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

fn within_bounds(schedule: &Schedule, t: DateTime<Utc>) -> bool {
    schedule.starts_at.is_none_or(|start| t >= start) && schedule.ends_at.is_none_or(|end| t <= end)
}

/// Grace within which a due fire counts as on time rather than missed.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
