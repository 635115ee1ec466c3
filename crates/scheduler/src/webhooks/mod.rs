//! Webhooks: telling a team when its runs end.
//!
//! A schedule or run names `notify` targets (`{"url", "on": [...]}`). When
//! an execution ends, [`taskhost_model::Execution::finish`] marks it
//! (`notify_due_at`) in the same write as its end, so no end is lost to a
//! crash. A node's [`deliver`] loop then finds marked executions, plans one
//! [`Delivery`] per matching target (once), and sends them, at least once,
//! following the Standard Webhooks conventions (<https://www.standardwebhooks.com>):
//!
//! - `webhook-id`: the delivery's id, the same on every attempt;
//! - `webhook-timestamp`: Unix seconds of the attempt;
//! - `webhook-signature`: `v1,` + base64 of HMAC-SHA256 over
//!   `{id}.{timestamp}.{body}` under the tenant's signing secret
//!   (`GET /v1/webhooks/secret`, shown as `whsec_` + base64).
//!
//! A failed attempt (no answer, not 2xx, or refused by the network policy)
//! is retried on the [`BACKOFF`] steps, for at most [`GIVE_UP_AFTER`]; then
//! the delivery is `failed`. Every attempt is recorded on the execution
//! (`GET /v1/executions/{id}/deliveries`). Targets pass the same network
//! policy as plugins' requests: the tenant's and the node's host patterns,
//! and no private addresses unless opened.

pub mod deliver;
pub mod slots;

use chrono::{DateTime, Utc};
use std::time::Duration;
use taskhost_model::{Delivery, DeliveryState, Execution};

pub use taskhost_model::EVENTS;

/// Waits between attempts; the last repeats until [`GIVE_UP_AFTER`].
pub const BACKOFF: &[Duration] = &[
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
];
/// A delivery not done this long after its execution ended is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Attempts kept on a delivery's record (the first and the latest ones).
pub const MAX_ATTEMPTS_KEPT: usize = 32;

/// Whether `target_on` (a target's `on` list) asks for how `e` ended.
fn wanted(target_on: &[String], e: &Execution) -> bool {
    if target_on.is_empty() {
        return true;
    }
    let status = e.status.as_str();
    // A cancelled run's outcome (if any) is an earlier attempt's.
    let outcome = e
        .outcome
        .as_ref()
        .filter(|_| e.status != taskhost_model::ExecutionStatus::Cancelled)
        .map(|o| o.status.as_str());
    target_on
        .iter()
        .any(|on| on == status || Some(on.as_str()) == outcome)
}

/// The event type of how `e` ended, e.g. `execution.failed`.
pub fn event_type(e: &Execution) -> String {
    format!("execution.{}", e.status.as_str())
}

/// Plans `e`'s deliveries (once): one per target that wants its end.
pub fn plan(e: &mut Execution, now: DateTime<Utc>) {
    if !e.deliveries.is_empty() {
        return;
    }
    let event = event_type(e);
    e.deliveries = e
        .policy
        .notify
        .iter()
        .filter(|t| wanted(&t.on, e))
        .map(|t| Delivery {
            id: format!("msg_{}", taskhost_model::new_id()),
            url: t.url.clone(),
            event: event.clone(),
            state: DeliveryState::Pending,
            created_at: now,
            next_at: Some(now),
            attempts: Vec::new(),
        })
        .collect();
}

/// When `e`'s webhooks next need a node: the soonest pending attempt.
pub fn next_due(e: &Execution) -> Option<DateTime<Utc>> {
    e.deliveries
        .iter()
        .filter(|d| d.state == DeliveryState::Pending)
        .filter_map(|d| d.next_at)
        .min()
}

/// The JSON body of `e`'s event.
pub fn payload(e: &Execution, event: &str, now: DateTime<Utc>) -> Vec<u8> {
    let outcome = e.outcome.as_ref();
    let body = serde_json::json!({
        "type": event,
        "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": {
            "execution_id": e.id,
            "schedule_id": e.schedule_id,
            "plugin_id": e.plugin_id,
            "status": e.status.as_str(),
            "outcome_status": outcome.map(|o| o.status.as_str()),
            "error": outcome.and_then(|o| o.error.as_ref()).map(|err| &err.message),
            "attempt": e.attempt,
            "fire_time": e.fire_time.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            "finished_at": e.finished_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        },
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

// Signed as hooks' senders sign (one implementation of the standard).
pub use taskhost_model::hook::{show_secret, signature};
