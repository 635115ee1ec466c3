//! What a run may do, in one type: [`RunPolicy`]. It is flattened (serde)
//! into every type that carries it — a new run on the wire, a new schedule,
//! the stored schedule and execution — so their JSON is one shape, and it
//! is checked here, once, by [`RunPolicy::validate`], before anything is
//! stored. Adding a setting means adding a field here, its check in
//! `validate`, and its line in the README.
//!
//! Each refusal names the field (`retry.max_backoff`, `limits.timeout`, …) so
//! that a client can show it next to the input. The ranges are the documented
//! ones (README, "Limits, quotas and fairness"); they keep every later time
//! computation finite, so no input can make the scheduler overflow. What only
//! a schedule carries (its trigger, overlap, catch-up, jitter, bounds) is
//! checked by [`check_schedule`].

use crate::error::ErrorCode;
use crate::time::human;
use crate::{CatchUp, Limits, NotifyTarget, RetryPolicy, Schedule, Trigger, trigger};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Duration;
use taskhost_net::{NetworkGrant, NetworkPolicy};

/// Priorities a schedule or run may have. Higher runs first within a tenant,
/// and across tenants at different priorities; at equal priority tenants take
/// turns.
pub const PRIORITY_RANGE: RangeInclusive<i32> = -100..=100;
/// Most attempts a retry policy may ask for.
pub const MAX_ATTEMPTS: u32 = 100;
/// Longest backoff between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(86_400);
/// Longest jitter a schedule may add to its fires.
pub const MAX_JITTER: Duration = Duration::from_secs(86_400);
/// Longest catch-up window.
pub const MAX_CATCH_UP_WINDOW: Duration = Duration::from_secs(7 * 86_400);
/// Shortest and longest retention of finished executions.
pub const RETENTION_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(366 * 86_400);
/// Longest schedule name.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest description of a run.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
/// Most webhooks one schedule or run may name.
pub const MAX_NOTIFY_TARGETS: usize = 8;
/// Longest webhook URL.
pub const MAX_URL_BYTES: usize = 2048;

/// What a run may do and how it is treated: its input, limits, config,
/// secrets, network grant, webhooks, priority, retries and retention.
/// Schedules give theirs to every run they fire.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunPolicy {
    /// What the run is for, in words (at most 1,000 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    /// Input given to the run (JSON).
    #[serde(default)]
    pub input: serde_json::Value,
    /// Higher runs first when several are due.
    #[serde(default)]
    #[schema(minimum = -100, maximum = 100)]
    pub priority: i32,
    /// Hard limits of each run, up to the node's caps.
    #[serde(default)]
    pub limits: Limits,
    /// Attempts and backoff. Unset: one attempt for an ad hoc run, the
    /// defaults (3 attempts) for a schedule's runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Read-only config given to the run.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Names of the tenant's secrets the run may read (at most 32).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 32)]
    pub secrets: Vec<String>,
    /// The hosts its plugin may call over HTTP; none if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkGrant>,
    /// Webhooks to call when the run ends (at most 8).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 8)]
    pub notify: Vec<NotifyTarget>,
    /// How long a finished execution is kept (1 minute to 366 days; unset:
    /// the node's default, 7 days).
    #[serde(
        default,
        with = "crate::time::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "7d")]
    pub retention: Option<Duration>,
    /// At most `limit` runs with its key run at once across the cluster
    /// (see "Flow control").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<crate::flow::Concurrency>,
    /// At most `limit` runs with its key start within any `per`, across
    /// the cluster (see "Flow control").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<crate::flow::RateLimit>,
    /// A burst of runs with its key runs once, `period` after the last,
    /// with the last's input (see "Flow control").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<crate::flow::Debounce>,
}

impl RunPolicy {
    /// The retry policy of a run that was made with this policy (made runs
    /// always have one; records older than the field get the default).
    pub fn retry(&self) -> RetryPolicy {
        self.retry.unwrap_or_default()
    }

    /// Checks every field against its range and the node's caps and
    /// network policy: the one check of a run's policy, whatever made it.
    pub fn validate(&self, ctx: &PolicyContext<'_>) -> Result<(), PolicyError> {
        check_description(self.description.as_deref())?;
        check_priority(self.priority)?;
        if let Some(retry) = &self.retry {
            check_retry(retry)?;
        }
        check_limits(&self.limits, ctx.caps)?;
        check_retention(self.retention)?;
        check_secrets(&self.secrets)?;
        check_network(ctx.tenant, self.network.as_ref(), ctx.network)?;
        check_notify(ctx.tenant, &self.notify, ctx.network)?;
        if let Some(c) = &self.concurrency {
            c.check()?;
        }
        if let Some(r) = &self.rate_limit {
            r.check()?;
        }
        match &self.debounce {
            Some(d) => d.check(),
            None => Ok(()),
        }
    }
}

/// What a policy is checked against: the tenant, the node's per-run caps and
/// its network policy.
#[derive(Clone, Copy)]
pub struct PolicyContext<'a> {
    pub tenant: &'a str,
    pub caps: &'a Limits,
    pub network: &'a NetworkPolicy,
}

/// A policy value out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    pub code: ErrorCode,
    /// The field, as a JSON path: `retry.max_attempts`, `limits.fuel`.
    pub field: String,
    pub message: String,
}

impl PolicyError {
    pub fn new(code: ErrorCode, field: &str, message: impl Into<String>) -> Self {
        PolicyError {
            code,
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

fn check_description(description: Option<&str>) -> Result<(), PolicyError> {
    match description {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_CHARS => Err(PolicyError::new(
            ErrorCode::InvalidDescription,
            "description",
            format!("description may be at most {MAX_DESCRIPTION_CHARS} characters"),
        )),
        _ => Ok(()),
    }
}

/// Retry attempts within 1..=100, backoffs within 0..=24h, initial ≤ max.
fn check_retry(r: &RetryPolicy) -> Result<(), PolicyError> {
    let invalid = |field: &str, message: String| {
        Err(PolicyError::new(ErrorCode::InvalidRetry, field, message))
    };
    if r.max_attempts == 0 || r.max_attempts > MAX_ATTEMPTS {
        let n = r.max_attempts;
        return invalid(
            "retry.max_attempts",
            format!("retry.max_attempts is {n}; it must be 1-{MAX_ATTEMPTS}"),
        );
    }
    for (field, value) in [
        ("retry.initial_backoff", r.initial_backoff),
        ("retry.max_backoff", r.max_backoff),
    ] {
        if value > MAX_BACKOFF {
            let (value, max) = (human(value), human(MAX_BACKOFF));
            return invalid(
                field,
                format!("{field} is {value}; it may be at most {max}"),
            );
        }
    }
    if r.initial_backoff > r.max_backoff {
        return invalid(
            "retry.initial_backoff",
            "retry.initial_backoff is longer than retry.max_backoff".into(),
        );
    }
    Ok(())
}

fn check_priority(priority: i32) -> Result<(), PolicyError> {
    if PRIORITY_RANGE.contains(&priority) {
        return Ok(());
    }
    let (min, max) = (PRIORITY_RANGE.start(), PRIORITY_RANGE.end());
    Err(PolicyError::new(
        ErrorCode::InvalidPriority,
        "priority",
        format!("priority is {priority}; it must be {min}-{max}"),
    ))
}

/// Per-run limits: each above zero and at most the node's cap.
fn check_limits(limits: &Limits, cap: &Limits) -> Result<(), PolicyError> {
    let over = |name: &str, value: String, max: String| {
        Err(PolicyError::new(
            ErrorCode::LimitExceedsCap,
            &format!("limits.{name}"),
            format!("limits.{name} is {value}; this server allows at most {max}"),
        ))
    };
    let counts: [(&str, u64, u64); 7] = [
        ("fuel", limits.fuel, cap.fuel),
        ("memory_bytes", limits.memory_bytes, cap.memory_bytes),
        ("output_bytes", limits.output_bytes, cap.output_bytes),
        ("log_bytes", limits.log_bytes, cap.log_bytes),
        (
            "http_requests",
            limits.http_requests.into(),
            cap.http_requests.into(),
        ),
        (
            "http_sent_bytes",
            limits.http_sent_bytes,
            cap.http_sent_bytes,
        ),
        (
            "http_received_bytes",
            limits.http_received_bytes,
            cap.http_received_bytes,
        ),
    ];
    for (name, value, max) in counts {
        if value > max {
            return over(name, value.to_string(), max.to_string());
        }
    }
    let times = [
        ("timeout", limits.timeout, cap.timeout),
        ("http_timeout", limits.http_timeout, cap.http_timeout),
    ];
    for (name, value, max) in times {
        if value > max {
            return over(name, human(value), human(max));
        }
    }
    for (name, zero) in [
        ("fuel", limits.fuel == 0),
        ("memory_bytes", limits.memory_bytes == 0),
        ("timeout", limits.timeout.is_zero()),
    ] {
        if zero {
            return Err(PolicyError::new(
                ErrorCode::InvalidLimits,
                &format!("limits.{name}"),
                format!("limits.{name} must be above zero"),
            ));
        }
    }
    Ok(())
}

/// The secrets a run names: valid names, at most
/// [`MAX_SECRETS_PER_RUN`](crate::secrets::MAX_SECRETS_PER_RUN).
fn check_secrets(names: &[String]) -> Result<(), PolicyError> {
    let max = crate::secrets::MAX_SECRETS_PER_RUN;
    let invalid = |message: String| PolicyError::new(ErrorCode::InvalidSecrets, "secrets", message);
    if names.len() > max {
        return Err(invalid(format!("a run may name at most {max} secrets")));
    }
    for name in names {
        crate::secrets::check_name(name).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(())
}

pub fn check_retention(retention: Option<Duration>) -> Result<(), PolicyError> {
    match retention {
        Some(r) if !RETENTION_RANGE.contains(&r) => {
            let (min, max) = (
                human(*RETENTION_RANGE.start()),
                human(*RETENTION_RANGE.end()),
            );
            Err(PolicyError::new(
                ErrorCode::InvalidRetention,
                "retention",
                format!("retention is {}; it must be {min}-{max}", human(r)),
            ))
        }
        _ => Ok(()),
    }
}

/// A network grant: valid patterns, each within the tenant's and the node's
/// policy.
fn check_network(
    tenant: &str,
    grant: Option<&NetworkGrant>,
    policy: &NetworkPolicy,
) -> Result<(), PolicyError> {
    let Some(grant) = grant else { return Ok(()) };
    let field = "network.allow";
    let patterns = taskhost_net::pattern::parse_all(&grant.allow)
        .map_err(|e| PolicyError::new(ErrorCode::InvalidNetwork, field, e.to_string()))?;
    policy
        .check_grant(tenant, &patterns)
        .map_err(|e| PolicyError::new(ErrorCode::NetworkNotAllowed, field, e))
}

/// Webhook targets: at most [`MAX_NOTIFY_TARGETS`], each URL allowed by the
/// tenant's and the node's network policy, each event a status name.
fn check_notify(
    tenant: &str,
    targets: &[NotifyTarget],
    policy: &NetworkPolicy,
) -> Result<(), PolicyError> {
    let invalid =
        |field: &str, message: String| PolicyError::new(ErrorCode::InvalidNotify, field, message);
    if targets.len() > MAX_NOTIFY_TARGETS {
        let message = format!("at most {MAX_NOTIFY_TARGETS} webhooks");
        return Err(invalid("notify", message));
    }
    for (i, t) in targets.iter().enumerate() {
        let field = format!("notify[{i}].url");
        let url = url::Url::parse(&t.url)
            .ok()
            .filter(|_| t.url.len() <= MAX_URL_BYTES)
            .ok_or_else(|| {
                let what = format!("an absolute http(s) URL of at most {MAX_URL_BYTES} bytes");
                invalid(&field, format!("{field} must be {what}"))
            })?;
        policy
            .check_url(tenant, None, &url)
            .map_err(|e| PolicyError::new(ErrorCode::NetworkNotAllowed, &field, e.to_string()))?;
        if let Some(event) = t.on.iter().find(|e| !crate::EVENTS.contains(&e.as_str())) {
            let known = crate::EVENTS.join(", ");
            let message = format!("unknown event {event:?}; use {known}");
            return Err(invalid(&format!("notify[{i}].on"), message));
        }
    }
    Ok(())
}

fn check_catch_up(c: &CatchUp) -> Result<(), PolicyError> {
    if c.window <= MAX_CATCH_UP_WINDOW {
        return Ok(());
    }
    let (window, max) = (human(c.window), human(MAX_CATCH_UP_WINDOW));
    Err(PolicyError::new(
        ErrorCode::InvalidCatchUp,
        "catch_up.window",
        format!("catch_up.window is {window}; it may be at most {max}"),
    ))
}

/// Everything a schedule carries: its name, trigger, catch-up, jitter and
/// bounds, its run policy, and its trigger's shortest period against the
/// tenant's `min_period`.
pub fn check_schedule(
    s: &Schedule,
    ctx: &PolicyContext<'_>,
    min_period: Duration,
) -> Result<(), PolicyError> {
    if s.name.trim().is_empty() || s.name.chars().count() > MAX_NAME_CHARS {
        return Err(PolicyError::new(
            ErrorCode::InvalidName,
            "name",
            format!("name must be 1-{MAX_NAME_CHARS} characters"),
        ));
    }
    trigger::validate(&s.trigger)
        .map_err(|e| PolicyError::new(ErrorCode::InvalidTrigger, "trigger", e.to_string()))?;
    s.policy.validate(ctx)?;
    check_catch_up(&s.catch_up)?;
    if s.jitter > MAX_JITTER {
        return Err(PolicyError::new(
            ErrorCode::InvalidJitter,
            "jitter",
            format!("jitter must be at most {}", human(MAX_JITTER)),
        ));
    }
    if let (Some(start), Some(end)) = (s.starts_at, s.ends_at)
        && end < start
    {
        let message = "ends_at is before starts_at";
        return Err(PolicyError::new(
            ErrorCode::InvalidBounds,
            "ends_at",
            message,
        ));
    }
    check_period(&s.trigger, s.created_at, min_period)
}

/// The trigger fires at most once every `min_period` (the tenant's quota).
fn check_period(
    t: &Trigger,
    created_at: chrono::DateTime<chrono::Utc>,
    min_period: Duration,
) -> Result<(), PolicyError> {
    match shortest_period(t, created_at) {
        Some(period) if period < min_period => Err(PolicyError::new(
            ErrorCode::QuotaExceeded,
            "trigger",
            format!(
                "the trigger fires every {}; quota min_schedule_period allows at most one fire every {}",
                human(period),
                human(min_period)
            ),
        )),
        _ => Ok(()),
    }
}

/// The shortest gap between consecutive fires of a trigger, looking at its
/// next 64 fires (none for one-shot and manual triggers).
pub fn shortest_period(t: &Trigger, created_at: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    match t {
        Trigger::Interval { every, .. } => Some(*every),
        Trigger::Once { .. } | Trigger::Manual {} | Trigger::Event { .. } => None,
        Trigger::Cron { .. } => {
            let end = chrono::DateTime::<chrono::Utc>::MAX_UTC;
            let fires = trigger::fires_between(t, created_at, created_at, end, 64).ok()?;
            fires
                .windows(2)
                .filter_map(|w| (w[1] - w[0]).to_std().ok())
                .min()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_is_kept_and_bounded() {
        let policy: RunPolicy =
            serde_json::from_value(serde_json::json!({"description": "nightly export"}))
                .expect("policy");
        assert_eq!(policy.description.as_deref(), Some("nightly export"));
        let caps = Limits::default();
        let network = NetworkPolicy::from_config(&Default::default()).expect("policy");
        let ctx = PolicyContext {
            tenant: "acme",
            caps: &caps,
            network: &network,
        };
        assert_eq!(policy.validate(&ctx), Ok(()));
        let long = RunPolicy {
            description: Some("x".repeat(MAX_DESCRIPTION_CHARS + 1)),
            ..policy
        };
        let refused = long.validate(&ctx).expect_err("too long");
        assert_eq!(refused.code, ErrorCode::InvalidDescription);
        assert_eq!(refused.field, "description");
    }
}
