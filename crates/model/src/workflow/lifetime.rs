//! What bounds a workflow over all its runs: its lifetime from creation,
//! and its fuel over its suspended runs. Each run is bounded by its own
//! limits as any run; these bound a workflow that sleeps and wakes forever.

use chrono::{DateTime, Utc};

/// The longest a workflow lives, from its creation: a sleep or wait past it
/// wakes at it, and a run that would suspend again then ends `failed`.
pub const MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);
/// A workflow's fuel over all its runs, as a multiple of its per-run fuel
/// limit (`limits.fuel`): a suspension past it ends the execution `failed`.
pub const TOTAL_FUEL_RUNS: u64 = 100;

/// Why a workflow that would suspend ends instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowBound {
    #[error(
        "the workflow reached its lifetime of {} days (since {created}) and would wait on",
        MAX_LIFETIME.as_secs() / 86_400
    )]
    Lifetime { created: DateTime<Utc> },
    #[error(
        "the workflow used {used} fuel over its runs; it may use {TOTAL_FUEL_RUNS} times its fuel limit, {limit}"
    )]
    TotalFuel { used: u64, limit: u64 },
}

/// When a workflow that suspends wakes — `until`, or its lifetime's end if
/// sooner — or why it ends instead: it has lived its lifetime, or its runs
/// used more than [`TOTAL_FUEL_RUNS`] times its fuel limit with this one's
/// `fuel`.
pub fn suspension(
    e: &crate::Execution,
    fuel: u64,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, WorkflowBound> {
    let used = e.workflow_fuel.saturating_add(fuel);
    let limit = e.policy.limits.fuel.saturating_mul(TOTAL_FUEL_RUNS);
    if used > limit {
        return Err(WorkflowBound::TotalFuel { used, limit });
    }
    let end = crate::time::add_saturating(e.created_at, MAX_LIFETIME);
    if now >= end {
        return Err(WorkflowBound::Lifetime {
            created: e.created_at,
        });
    }
    Ok(until.min(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suspension_is_bounded_by_lifetime_and_total_fuel() {
        let created = Utc::now();
        let mut e = crate::Execution::queued("acme", "p", created, created);
        let fuel = e.policy.limits.fuel;
        let later = created + chrono::Duration::days(40);
        let end = created + chrono::Duration::days(30);
        assert_eq!(
            suspension(&e, 1, later, created),
            Ok(end),
            "woken at its end"
        );
        assert!(matches!(
            suspension(&e, 1, later, end),
            Err(WorkflowBound::Lifetime { .. })
        ));
        e.workflow_fuel = fuel * TOTAL_FUEL_RUNS - 10;
        assert_eq!(suspension(&e, 10, created, created), Ok(created));
        let err = suspension(&e, 11, created, created).expect_err("past the total");
        assert!(
            err.to_string().contains("100 times its fuel limit"),
            "{err}"
        );
    }
}
