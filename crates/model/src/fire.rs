//! The fire ledger's records: what became of each fire time of a schedule.
//!
//! A schedule's trigger produces fire times; each one gets exactly one record,
//! written by the decision itself. A fire that runs is its execution; a fire
//! that does not run is a small execution row with the final status
//! `skipped` (a tombstone) under the same unique (schedule, fire time) key.
//! So the ledger and the executions are the same rows on every store: a fire
//! cannot be both skipped and run, racing nodes cannot record it twice, and
//! the ledger is kept exactly as long as the executions are (their
//! retention). See `docs/design/fire-ledger.md`.

use super::{Execution, ExecutionStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What became of one fire time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FireFate {
    /// Run on time.
    Ran,
    /// Missed (the node was down), then run by the catch-up policy.
    CaughtUp,
    /// Run by a backfill request.
    Backfilled,
    /// Not run; the reason says why.
    Skipped,
    /// Missed and not caught up; the reason says why.
    Missed,
}

impl FireFate {
    pub const ALL: [FireFate; 5] = [
        FireFate::Ran,
        FireFate::CaughtUp,
        FireFate::Backfilled,
        FireFate::Skipped,
        FireFate::Missed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FireFate::Ran => "ran",
            FireFate::CaughtUp => "caught_up",
            FireFate::Backfilled => "backfilled",
            FireFate::Skipped => "skipped",
            FireFate::Missed => "missed",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// Whether the fire has an execution that runs (or ran).
    pub fn runs(self) -> bool {
        matches!(
            self,
            FireFate::Ran | FireFate::CaughtUp | FireFate::Backfilled
        )
    }
}

/// Why a fire did not run.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FireReason {
    /// Skipped: the previous run was still active (overlap `skip` or `buffer_one`).
    Overlap,
    /// Skipped: the schedule was paused.
    Paused,
    /// Skipped: after the schedule's `ends_at` (found due by the pass that
    /// found the schedule past its end).
    OutsideBounds,
    /// Skipped: missed during downtime, and the catch-up mode is `skip`.
    CatchUpSkip,
    /// Skipped: folded into another fire (`coalesced_into`): catch-up `once`,
    /// or overlap `buffer_one` while that fire waits in the queue.
    CoalescedInto,
    /// Skipped: the tenant's queue quota was full.
    Quota,
    /// Skipped: the node's caps refuse the schedule's policy, or its plugin
    /// alias points to no plugin (`detail`).
    Policy,
    /// Missed: older than the catch-up window.
    OutsideWindow,
    /// Missed: in the window, but past the most fires one pass catches up.
    CatchUpLimit,
}

impl FireReason {
    pub const ALL: [FireReason; 9] = [
        FireReason::Overlap,
        FireReason::Paused,
        FireReason::OutsideBounds,
        FireReason::CatchUpSkip,
        FireReason::CoalescedInto,
        FireReason::Quota,
        FireReason::Policy,
        FireReason::OutsideWindow,
        FireReason::CatchUpLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FireReason::Overlap => "overlap",
            FireReason::Paused => "paused",
            FireReason::OutsideBounds => "outside_bounds",
            FireReason::CatchUpSkip => "catch_up_skip",
            FireReason::CoalescedInto => "coalesced_into",
            FireReason::Quota => "quota",
            FireReason::Policy => "policy",
            FireReason::OutsideWindow => "outside_window",
            FireReason::CatchUpLimit => "catch_up_limit",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The fate a fire dropped for this reason has.
    pub fn fate(self) -> FireFate {
        match self {
            FireReason::OutsideWindow | FireReason::CatchUpLimit => FireFate::Missed,
            _ => FireFate::Skipped,
        }
    }
}

/// How a fire was decided: on every execution made for a fire and on every
/// tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FireInfo {
    pub fate: FireFate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<FireReason>,
    /// `coalesced_into`: the fire it was folded into.
    #[serde(
        default,
        with = "crate::time::option_utc",
        skip_serializing_if = "Option::is_none"
    )]
    pub coalesced_into: Option<DateTime<Utc>>,
    /// `overlap`: the execution that was still active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<String>,
    /// `quota`, `policy`: what refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The node that decided it.
    #[serde(default)]
    pub decided_by: String,
    /// The plugin alias the schedule followed (`name@alias`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_ref: Option<String>,
    /// A backfilled fire that had been skipped or missed: what it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was: Option<FireWas>,
    /// A fire decided late because the nodes were busy (not down), so it
    /// runs late rather than being missed: by how much, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_ms: Option<u64>,
    /// The event this fire was for (event triggers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<crate::event::EventRef>,
}

/// What a backfilled fire had been before it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FireWas {
    pub fate: FireFate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<FireReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When that was decided.
    #[serde(with = "crate::time::utc")]
    pub decided_at: DateTime<Utc>,
}

/// Longest `detail` kept on a record.
const MAX_DETAIL: usize = 1024;

impl FireInfo {
    /// A fire that runs (`ran`, `caught_up`, `backfilled`).
    pub fn run(fate: FireFate, node: &str) -> FireInfo {
        FireInfo {
            fate,
            reason: None,
            coalesced_into: None,
            blocked_by: None,
            detail: None,
            decided_by: node.to_owned(),
            plugin_ref: None,
            was: None,
            late_ms: None,
            event: None,
        }
    }

    /// A fire that does not run, for `reason`.
    pub fn dropped(reason: FireReason, node: &str) -> FireInfo {
        FireInfo {
            reason: Some(reason),
            ..FireInfo::run(reason.fate(), node)
        }
    }

    pub fn with_detail(mut self, detail: impl std::fmt::Display) -> FireInfo {
        let mut detail = detail.to_string();
        if detail.len() > MAX_DETAIL {
            let mut end = MAX_DETAIL;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
        }
        self.detail = Some(detail);
        self
    }
}

impl Execution {
    /// How its fire was decided: its own record, or `ran` for an execution
    /// of a fire made before the ledger existed. `None` for runs that are no
    /// fire (ad hoc, trigger-now, re-run).
    pub fn fire_fate(&self) -> Option<(FireFate, Option<FireReason>)> {
        self.fire_time?;
        Some(match &self.fire {
            Some(info) => (info.fate, info.reason),
            None => (FireFate::Ran, None),
        })
    }
}

/// One record of a schedule's fire ledger, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FireRecord {
    /// The fire time.
    #[serde(with = "crate::time::utc")]
    pub fire_at: DateTime<Utc>,
    pub fate: FireFate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<FireReason>,
    /// The execution that runs it (`ran`, `caught_up`, `backfilled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// That execution's status now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ExecutionStatus>,
    /// The exact plugin it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_id: Option<String>,
    #[serde(
        with = "crate::time::option_utc",
        skip_serializing_if = "Option::is_none"
    )]
    pub coalesced_into: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_ref: Option<String>,
    /// When it was decided.
    #[serde(with = "crate::time::utc")]
    pub decided_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// A backfilled fire that had been skipped or missed: what it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub was: Option<FireWas>,
    /// The event it was for (event triggers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<crate::event::EventRef>,
}

impl FireRecord {
    /// The ledger record an execution row holds; `None` if it is no fire.
    pub fn of(e: &Execution) -> Option<FireRecord> {
        let fire_at = e.fire_time?;
        let (fate, reason) = e.fire_fate()?;
        let info = e.fire.as_ref();
        let runs = fate.runs();
        Some(FireRecord {
            fire_at,
            fate,
            reason,
            execution_id: runs.then(|| e.id.clone()),
            status: runs.then_some(e.status),
            plugin_id: runs.then(|| e.plugin_id.clone()),
            coalesced_into: info.and_then(|i| i.coalesced_into),
            blocked_by: info.and_then(|i| i.blocked_by.clone()),
            detail: info.and_then(|i| i.detail.clone()),
            plugin_ref: info.and_then(|i| i.plugin_ref.clone()),
            decided_at: e.created_at,
            decided_by: info.map(|i| i.decided_by.clone()).filter(|n| !n.is_empty()),
            was: info.and_then(|i| i.was.clone()),
            event: info.and_then(|i| i.event.clone()),
        })
    }
}

/// Counts of a schedule's fires by fate (and, for those that did not run, by
/// reason).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FireCounts {
    pub ran: u64,
    pub caught_up: u64,
    pub backfilled: u64,
    pub skipped: u64,
    pub missed: u64,
    /// Skipped and missed fires by reason.
    pub by_reason: std::collections::BTreeMap<String, u64>,
}

impl FireCounts {
    pub fn add(&mut self, fate: FireFate, reason: Option<FireReason>, n: u64) {
        let slot = match fate {
            FireFate::Ran => &mut self.ran,
            FireFate::CaughtUp => &mut self.caught_up,
            FireFate::Backfilled => &mut self.backfilled,
            FireFate::Skipped => &mut self.skipped,
            FireFate::Missed => &mut self.missed,
        };
        *slot += n;
        if let Some(reason) = reason {
            *self
                .by_reason
                .entry(reason.as_str().to_owned())
                .or_default() += n;
        }
    }
}

/// A plugin alias: `name@alias` names the version it points to, until an
/// admin moves it. `name@latest` is not stored: it is always the newest upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginAlias {
    pub tenant: String,
    /// The plugin's name.
    pub name: String,
    pub alias: String,
    /// The plugin (version) it points to.
    pub plugin_id: String,
    pub version: String,
    #[serde(with = "crate::time::utc")]
    pub updated_at: DateTime<Utc>,
    /// Who moved it last (the token's subject).
    pub updated_by: String,
}

/// The alias every name has: its newest upload.
pub const LATEST: &str = "latest";
