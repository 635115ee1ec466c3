//! What a schedule or run asks to be told (`notify`), and the record of
//! each webhook sent about it (see the scheduler's `webhooks`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long after its end an execution with webhooks is kept at least,
/// whatever its retention: the deliveries' retry window
/// (the scheduler's `webhooks::GIVE_UP_AFTER`) and an hour to spare.
pub const KEEP_WHILE_DELIVERING: Duration = Duration::from_secs(25 * 3600);

/// A webhook a schedule or run calls when a run ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyTarget {
    /// Where the event is POSTed (https, or http where the operator allows it).
    pub url: String,
    /// The ends to report: an execution status (`succeeded`, `failed`,
    /// `dead`, `cancelled`) or an outcome status (`timed_out`,
    /// `out_of_fuel`, `memory_limit`, `trapped`, …). Empty means every end.
    #[serde(default)]
    pub on: Vec<String>,
}

/// One webhook event for one target, and how its delivery went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    /// The message id (`webhook-id`): the same on every attempt, so a
    /// receiver can drop duplicates.
    pub id: String,
    pub url: String,
    /// The event type, e.g. `execution.failed`.
    pub event: String,
    pub state: DeliveryState,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due, while pending.
    #[serde(
        default,
        with = "crate::time::option_utc",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_at: Option<DateTime<Utc>>,
    /// Every attempt so far, oldest first.
    #[serde(default)]
    pub attempts: Vec<DeliveryAttempt>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet; it will be tried (again) at `next_at`.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Given up: attempts or time ran out, or the target is not allowed.
    Failed,
}

/// One try to deliver a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryAttempt {
    #[serde(with = "crate::time::utc")]
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed: the network policy, a connection error, a timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The node that tried.
    pub node: String,
}

/// The events a target may ask for: execution statuses and the outcome
/// statuses that end an attempt.
pub const EVENTS: &[&str] = &[
    "succeeded",
    "failed",
    "dead",
    "cancelled",
    "timed_out",
    "out_of_fuel",
    "memory_limit",
    "trapped",
    "output_too_large",
    "invalid_plugin",
];
