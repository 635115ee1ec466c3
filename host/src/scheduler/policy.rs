//! What a tenant may ask for. Every policy a schedule or a run carries —
//! retries, priority, limits, jitter, catch-up, retention, the trigger's
//! period — is checked here, once, before anything is stored; the API, the
//! CLI and the scheduler all call these checks.
//!
//! Each refusal names the field (`retry.max_backoff`, `limits.timeout`, …) so
//! that a client can show it next to the input. The ranges are the documented
//! ones (README, "Limits, quotas and fairness"); they keep every later time
//! computation finite, so no input can make the scheduler overflow.

use crate::model::{CatchUp, RetryPolicy, Schedule, Trigger};
use crate::runtime::Limits;
use crate::scheduler::trigger;
use std::ops::RangeInclusive;
use std::time::Duration;

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

/// A policy value out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    /// A stable code, e.g. `invalid_retry`, `limit_exceeds_cap`.
    pub code: &'static str,
    /// The field, as a JSON path: `retry.max_attempts`, `limits.fuel`.
    pub field: String,
    pub message: String,
}

impl PolicyError {
    pub fn new(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        PolicyError {
            code,
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Retry attempts within 1..=100, backoffs within 0..=24h, initial ≤ max.
pub fn check_retry(r: &RetryPolicy) -> Result<(), PolicyError> {
    if r.max_attempts == 0 || r.max_attempts > MAX_ATTEMPTS {
        return Err(PolicyError::new(
            "invalid_retry",
            "retry.max_attempts",
            format!(
                "retry.max_attempts is {}; it must be 1-{MAX_ATTEMPTS}",
                r.max_attempts
            ),
        ));
    }
    for (field, value) in [
        ("retry.initial_backoff", r.initial_backoff),
        ("retry.max_backoff", r.max_backoff),
    ] {
        if value > MAX_BACKOFF {
            return Err(PolicyError::new(
                "invalid_retry",
                field,
                format!(
                    "{field} is {}; it may be at most {}",
                    human(value),
                    human(MAX_BACKOFF)
                ),
            ));
        }
    }
    if r.initial_backoff > r.max_backoff {
        return Err(PolicyError::new(
            "invalid_retry",
            "retry.initial_backoff",
            "retry.initial_backoff is longer than retry.max_backoff",
        ));
    }
    Ok(())
}

pub fn check_priority(priority: i32) -> Result<(), PolicyError> {
    if PRIORITY_RANGE.contains(&priority) {
        return Ok(());
    }
    Err(PolicyError::new(
        "invalid_priority",
        "priority",
        format!(
            "priority is {priority}; it must be {}-{}",
            PRIORITY_RANGE.start(),
            PRIORITY_RANGE.end()
        ),
    ))
}

/// Per-run limits: each above zero and at most the node's cap.
pub fn check_limits(limits: &Limits, cap: &Limits) -> Result<(), PolicyError> {
    let over = |name: &str, value: String, max: String| {
        Err(PolicyError::new(
            "limit_exceeds_cap",
            &format!("limits.{name}"),
            format!("limits.{name} is {value}; this server allows at most {max}"),
        ))
    };
    let checks: [(&str, u64, u64); 7] = [
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
    for (name, value, max) in checks {
        if value > max {
            return over(name, value.to_string(), max.to_string());
        }
    }
    if limits.timeout > cap.timeout {
        return over("timeout", human(limits.timeout), human(cap.timeout));
    }
    if limits.http_timeout > cap.http_timeout {
        return over(
            "http_timeout",
            human(limits.http_timeout),
            human(cap.http_timeout),
        );
    }
    for (name, zero) in [
        ("fuel", limits.fuel == 0),
        ("memory_bytes", limits.memory_bytes == 0),
        ("timeout", limits.timeout.is_zero()),
    ] {
        if zero {
            return Err(PolicyError::new(
                "invalid_limits",
                &format!("limits.{name}"),
                format!("limits.{name} must be above zero"),
            ));
        }
    }
    Ok(())
}

/// The secrets a run names: valid names, at most
/// [`MAX_SECRETS_PER_RUN`](crate::secrets::MAX_SECRETS_PER_RUN).
pub fn check_secrets(names: &[String]) -> Result<(), PolicyError> {
    let max = crate::secrets::MAX_SECRETS_PER_RUN;
    if names.len() > max {
        return Err(PolicyError::new(
            "invalid_secrets",
            "secrets",
            format!("a run may name at most {max} secrets"),
        ));
    }
    for name in names {
        crate::secrets::check_name(name)
            .map_err(|e| PolicyError::new("invalid_secrets", "secrets", e.to_string()))?;
    }
    Ok(())
}

pub fn check_retention(retention: Option<Duration>) -> Result<(), PolicyError> {
    match retention {
        Some(r) if !RETENTION_RANGE.contains(&r) => Err(PolicyError::new(
            "invalid_retention",
            "retention",
            format!(
                "retention is {}; it must be {}-{}",
                human(r),
                human(*RETENTION_RANGE.start()),
                human(*RETENTION_RANGE.end())
            ),
        )),
        _ => Ok(()),
    }
}

fn check_catch_up(c: &CatchUp) -> Result<(), PolicyError> {
    if c.window > MAX_CATCH_UP_WINDOW {
        return Err(PolicyError::new(
            "invalid_catch_up",
            "catch_up.window",
            format!(
                "catch_up.window is {}; it may be at most {}",
                human(c.window),
                human(MAX_CATCH_UP_WINDOW)
            ),
        ));
    }
    Ok(())
}

/// Most webhooks one schedule or run may name.
pub const MAX_NOTIFY_TARGETS: usize = 8;
/// Longest webhook URL.
pub const MAX_URL_BYTES: usize = 2048;

/// A network grant: valid patterns, each within the tenant's and the node's
/// policy.
pub fn check_network(
    tenant: &str,
    grant: Option<&crate::net::NetworkGrant>,
    policy: &crate::net::NetworkPolicy,
) -> Result<(), PolicyError> {
    let Some(grant) = grant else { return Ok(()) };
    let patterns = crate::net::pattern::parse_all(&grant.allow)
        .map_err(|e| PolicyError::new("invalid_network", "network.allow", e.to_string()))?;
    policy
        .check_grant(tenant, &patterns)
        .map_err(|e| PolicyError::new("network_not_allowed", "network.allow", e))
}

/// Webhook targets: at most [`MAX_NOTIFY_TARGETS`], each URL allowed by the
/// tenant's and the node's network policy, each event a status name.
pub fn check_notify(
    tenant: &str,
    targets: &[crate::model::NotifyTarget],
    policy: &crate::net::NetworkPolicy,
) -> Result<(), PolicyError> {
    if targets.len() > MAX_NOTIFY_TARGETS {
        return Err(PolicyError::new(
            "invalid_notify",
            "notify",
            format!("at most {MAX_NOTIFY_TARGETS} webhooks"),
        ));
    }
    for (i, t) in targets.iter().enumerate() {
        let field = format!("notify[{i}].url");
        let url = reqwest::Url::parse(&t.url)
            .ok()
            .filter(|_| t.url.len() <= MAX_URL_BYTES)
            .ok_or_else(|| {
                PolicyError::new(
                    "invalid_notify",
                    &field,
                    format!(
                        "{field} must be an absolute http(s) URL of at most {MAX_URL_BYTES} bytes"
                    ),
                )
            })?;
        policy
            .check_url(tenant, None, &url)
            .map_err(|e| PolicyError::new("network_not_allowed", &field, e.to_string()))?;
        for event in &t.on {
            if !crate::webhooks::EVENTS.contains(&event.as_str()) {
                return Err(PolicyError::new(
                    "invalid_notify",
                    &format!("notify[{i}].on"),
                    format!(
                        "unknown event {event:?}; use {}",
                        crate::webhooks::EVENTS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Everything a run carries: priority, retry and limits.
pub fn check_run(
    priority: i32,
    retry: &RetryPolicy,
    limits: &Limits,
    cap: &Limits,
) -> Result<(), PolicyError> {
    check_priority(priority)?;
    check_retry(retry)?;
    check_limits(limits, cap)
}

/// Everything a schedule carries, and its trigger's shortest period against
/// the tenant's `min_period`.
pub fn check_schedule(s: &Schedule, cap: &Limits, min_period: Duration) -> Result<(), PolicyError> {
    if s.name.trim().is_empty() || s.name.chars().count() > MAX_NAME_CHARS {
        return Err(PolicyError::new(
            "invalid_name",
            "name",
            format!("name must be 1-{MAX_NAME_CHARS} characters"),
        ));
    }
    trigger::validate(&s.trigger)
        .map_err(|e| PolicyError::new("invalid_trigger", "trigger", e.to_string()))?;
    check_run(s.priority, &s.retry, &s.limits, cap)?;
    check_catch_up(&s.catch_up)?;
    check_retention(s.retention)?;
    check_secrets(&s.secrets)?;
    if s.jitter > MAX_JITTER {
        return Err(PolicyError::new(
            "invalid_jitter",
            "jitter",
            format!("jitter must be at most {}", human(MAX_JITTER)),
        ));
    }
    if let (Some(start), Some(end)) = (s.starts_at, s.ends_at)
        && end < start
    {
        return Err(PolicyError::new(
            "invalid_bounds",
            "ends_at",
            "ends_at is before starts_at",
        ));
    }
    if let Some(period) = shortest_period(&s.trigger, s.created_at)
        && period < min_period
    {
        return Err(PolicyError::new(
            "quota_exceeded",
            "trigger",
            format!(
                "the trigger fires every {}; quota min_schedule_period allows at most one fire every {}",
                human(period),
                human(min_period)
            ),
        ));
    }
    Ok(())
}

/// The shortest gap between consecutive fires of a trigger, looking at its
/// next 64 fires (none for one-shot and manual triggers).
pub fn shortest_period(t: &Trigger, created_at: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    match t {
        Trigger::Interval { every, .. } => Some(*every),
        Trigger::Once { .. } | Trigger::Manual => None,
        Trigger::Cron { .. } => {
            let fires = trigger::fires_between(
                t,
                created_at,
                created_at,
                chrono::DateTime::<chrono::Utc>::MAX_UTC,
                64,
            )
            .ok()?;
            fires
                .windows(2)
                .filter_map(|w| (w[1] - w[0]).to_std().ok())
                .min()
        }
    }
}
