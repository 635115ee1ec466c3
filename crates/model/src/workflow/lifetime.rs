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
        "the workflow reached its lifetime of {} (since {created}) and would wait on",
        spelled(*lifetime)
    )]
    Lifetime {
        created: DateTime<Utc>,
        lifetime: std::time::Duration,
    },
    #[error(
        "the workflow used {used} fuel over its runs; it may use {runs} times its fuel limit, {limit}"
    )]
    TotalFuel { used: u64, limit: u64, runs: u64 },
}

/// A lifetime as its error names it: "30 days", "1 hour", else as a
/// duration is written ("90m").
fn spelled(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match s {
        _ if s > 0 && s.is_multiple_of(86_400) => plural(s / 86_400, "day"),
        _ if s > 0 && s.is_multiple_of(3_600) => plural(s / 3_600, "hour"),
        _ => crate::time::human(d),
    }
}

/// When a workflow that suspends wakes — `until`, or its lifetime's end if
/// sooner — or why it ends instead: it has lived its lifetime, or its runs
/// used more than `bounds.fuel_runs` times its fuel limit with this one's
/// `fuel`.
pub fn suspension(
    e: &crate::Execution,
    fuel: u64,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
    bounds: &super::WorkflowBounds,
) -> Result<DateTime<Utc>, WorkflowBound> {
    let used = e.workflow_fuel.saturating_add(fuel);
    let runs = bounds.fuel_runs;
    let limit = e.policy.limits.fuel.saturating_mul(runs);
    if used > limit {
        return Err(WorkflowBound::TotalFuel { used, limit, runs });
    }
    let end = crate::time::add_saturating(e.created_at, bounds.max_lifetime);
    if now >= end {
        return Err(WorkflowBound::Lifetime {
            created: e.created_at,
            lifetime: bounds.max_lifetime,
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
        let bounds = crate::workflow::WorkflowBounds::default();
        assert_eq!(
            suspension(&e, 1, later, created, &bounds),
            Ok(end),
            "woken at its end"
        );
        assert!(matches!(
            suspension(&e, 1, later, end, &bounds),
            Err(WorkflowBound::Lifetime { .. })
        ));
        e.workflow_fuel = fuel * TOTAL_FUEL_RUNS - 10;
        assert_eq!(suspension(&e, 10, created, created, &bounds), Ok(created));
        let err = suspension(&e, 11, created, created, &bounds).expect_err("past the total");
        assert!(
            err.to_string().contains("100 times its fuel limit"),
            "{err}"
        );
    }

    #[test]
    fn a_node_s_tighter_bounds_hold() {
        let created = Utc::now();
        let mut e = crate::Execution::queued("acme", "p", created, created);
        let bounds = crate::workflow::WorkflowBounds {
            max_lifetime: std::time::Duration::from_secs(3600),
            fuel_runs: 2,
            ..Default::default()
        };
        let hour = created + chrono::Duration::hours(1);
        let day = created + chrono::Duration::days(1);
        assert_eq!(suspension(&e, 1, day, created, &bounds), Ok(hour));
        let err = suspension(&e, 1, day, hour, &bounds).expect_err("lived");
        assert!(err.to_string().contains("lifetime of 1 hour"), "{err}");
        e.workflow_fuel = e.policy.limits.fuel * 2;
        let err = suspension(&e, 1, day, created, &bounds).expect_err("fuel");
        assert!(err.to_string().contains("2 times its fuel limit"), "{err}");
    }
}
