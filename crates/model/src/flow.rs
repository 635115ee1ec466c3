//! Flow control on a run policy: concurrency keys, rate-limit keys and
//! debounce.
//!
//! `concurrency: {"key": "customer-42", "limit": 2}` lets at most `limit`
//! runs with that key (per tenant) run at once across the cluster. The key
//! may instead come from the run's input: `{"key_from": "/customer_id",
//! "limit": 1}` takes the string or number at that JSON pointer when the run
//! is made (an event's runs: the event's fields, `/data/...`).
//!
//! A run holds its key's slot while it runs: a claim of a keyed run
//! succeeds only while fewer than `limit` runs of the key hold one (checked
//! in the claim itself on SQLite; on MongoDB, slot documents taken by
//! compare-and-swap). The others stay queued, in their order, and are
//! claimed when a slot frees — when a run ends, or when a reaper re-queues a
//! dead node's run after its lease expired (a lapsed lease alone frees
//! nothing: a node whose claim came back late may still start the run, after
//! confirming its lease). Nothing is dropped.
//!
//! `rate_limit: {"key": "partner-api", "limit": 5, "per": "1s"}` lets at
//! most `limit` runs with that key start within any `per`, across the
//! cluster: a claim counts the key's runs started within `per` before it
//! (on MongoDB, `limit` slot documents each remembering its last start).
//! The others wait queued, like a concurrency key's.
//!
//! `debounce: {"key": "sync-42", "period": "5s"}` folds a burst into one
//! run: a run with the key is due `period` after it is made, and a later
//! run with the key made while it still waits takes its place (it ends
//! `debounced` into the later one). So the burst runs once, a period after
//! its last submission, with that submission's input.

use crate::error::ErrorCode;
use crate::policy::PolicyError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest key, and the longest pointer, in characters.
pub const MAX_KEY_CHARS: usize = 200;
/// The largest limit.
pub const MAX_LIMIT: u32 = 1000;

/// How many runs with one key may run at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// The key (1-200 characters, no control characters), e.g.
    /// `customer-42`. On a made run: the key it holds, taken from its input
    /// if `key_from` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub key: Option<String>,
    /// Or: a JSON pointer into the run's input (e.g. `/customer_id`) whose
    /// string or number is the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200)]
    pub key_from: Option<String>,
    /// Runs with the key at once across the cluster: 1 to 1,000.
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: u32,
}

/// Checks a key's source: `key`, or `key_from` (a JSON pointer).
fn check_source(
    key: Option<&str>,
    key_from: Option<&str>,
    code: ErrorCode,
    what: &str,
) -> Result<(), PolicyError> {
    match (key, key_from) {
        (None, None) => Err(PolicyError::new(
            code,
            &format!("{what}.key"),
            format!(
                "{what} needs a key (e.g. \"customer-42\") or key_from (a JSON pointer into the input, e.g. \"/customer_id\")"
            ),
        )),
        (_, Some(p))
            if !(p.is_empty() || p.starts_with('/')) || p.chars().count() > MAX_KEY_CHARS =>
        {
            Err(PolicyError::new(
                code,
                &format!("{what}.key_from"),
                format!(
                    "{what}.key_from {p:?} is not a JSON pointer: use \"/field\" or \"/field/sub\" (at most {MAX_KEY_CHARS} characters)"
                ),
            ))
        }
        (Some(k), _) => check_key(k, code, &format!("{what}.key")),
        (None, Some(_)) => Ok(()),
    }
}

/// The key a run with `input` has: `key_from` read from the input, or `key`.
fn key_in(
    key: Option<&str>,
    key_from: Option<&str>,
    input: &Value,
    code: ErrorCode,
    what: &str,
) -> Result<String, PolicyError> {
    let field = format!("{what}.key_from");
    let Some(pointer) = key_from else {
        return key.map(str::to_owned).ok_or_else(|| {
            PolicyError::new(code, &format!("{what}.key"), format!("{what} needs a key"))
        });
    };
    let key = match input.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            let message = format!(
                "the run's input has no string or number at {pointer:?} for its {what} key"
            );
            return Err(PolicyError::new(code, &field, message));
        }
    };
    check_key(&key, code, &field)?;
    Ok(key)
}

fn check_limit(limit: u32, code: ErrorCode, what: &str) -> Result<(), PolicyError> {
    if limit == 0 || limit > MAX_LIMIT {
        let message = format!("{what}.limit is 1 to {MAX_LIMIT}; got {limit}");
        return Err(PolicyError::new(code, &format!("{what}.limit"), message));
    }
    Ok(())
}

impl Concurrency {
    /// Checks the fields (not yet the input a `key_from` reads).
    pub fn check(&self) -> Result<(), PolicyError> {
        const CODE: ErrorCode = ErrorCode::InvalidConcurrency;
        check_limit(self.limit, CODE, "concurrency")?;
        check_source(
            self.key.as_deref(),
            self.key_from.as_deref(),
            CODE,
            "concurrency",
        )
    }

    /// The key a run with `input` holds: `key_from` read from the input,
    /// or `key`.
    pub fn key_for(&self, input: &Value) -> Result<String, PolicyError> {
        let (key, from) = (self.key.as_deref(), self.key_from.as_deref());
        key_in(
            key,
            from,
            input,
            ErrorCode::InvalidConcurrency,
            "concurrency",
        )
    }
}

/// How many runs with one key may start within a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// The key (1-200 characters, no control characters), e.g.
    /// `partner-api`. On a made run: the key it counts against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub key: Option<String>,
    /// Or: a JSON pointer into the run's input whose string or number is the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200)]
    pub key_from: Option<String>,
    /// Starts with the key within any `per`: 1 to 1,000.
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: u32,
    /// The period: 1 second to 24 hours.
    #[serde(with = "crate::time::duration")]
    #[schema(value_type = String, example = "1s")]
    pub per: std::time::Duration,
}

impl RateLimit {
    /// Checks the fields (not yet the input a `key_from` reads).
    pub fn check(&self) -> Result<(), PolicyError> {
        const CODE: ErrorCode = ErrorCode::InvalidRateLimit;
        check_limit(self.limit, CODE, "rate_limit")?;
        let per = self.per;
        if per < std::time::Duration::from_secs(1) || per > std::time::Duration::from_secs(86_400) {
            let message = format!("rate_limit.per is 1s to 24h; got {per:?}");
            return Err(PolicyError::new(CODE, "rate_limit.per", message));
        }
        check_source(
            self.key.as_deref(),
            self.key_from.as_deref(),
            CODE,
            "rate_limit",
        )
    }

    /// The key a run with `input` counts against.
    pub fn key_for(&self, input: &Value) -> Result<String, PolicyError> {
        let (key, from) = (self.key.as_deref(), self.key_from.as_deref());
        key_in(key, from, input, ErrorCode::InvalidRateLimit, "rate_limit")
    }
}

fn check_key(key: &str, code: ErrorCode, field: &str) -> Result<(), PolicyError> {
    let n = key.chars().count();
    if n == 0 || n > MAX_KEY_CHARS || key.chars().any(char::is_control) {
        let message = format!(
            "a key has 1 to {MAX_KEY_CHARS} characters and no control characters; got {key:?}"
        );
        return Err(PolicyError::new(code, field, message));
    }
    Ok(())
}

/// Folds a burst of runs with one key into its last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Debounce {
    /// The key (1-200 characters, no control characters). On a made run:
    /// its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub key: Option<String>,
    /// Or: a JSON pointer into the run's input whose string or number is the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200)]
    pub key_from: Option<String>,
    /// How long a run waits for a later one: 100 ms to 24 hours.
    #[serde(with = "crate::time::duration")]
    #[schema(value_type = String, example = "5s")]
    pub period: std::time::Duration,
}

impl Debounce {
    /// Checks the fields (not yet the input a `key_from` reads).
    pub fn check(&self) -> Result<(), PolicyError> {
        const CODE: ErrorCode = ErrorCode::InvalidDebounce;
        let period = self.period;
        let (low, high) = (
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(86_400),
        );
        if period < low || period > high {
            let message = format!("debounce.period is 100ms to 24h; got {period:?}");
            return Err(PolicyError::new(CODE, "debounce.period", message));
        }
        check_source(
            self.key.as_deref(),
            self.key_from.as_deref(),
            CODE,
            "debounce",
        )
    }

    /// The key of a run with `input`.
    pub fn key_for(&self, input: &Value) -> Result<String, PolicyError> {
        let (key, from) = (self.key.as_deref(), self.key_from.as_deref());
        key_in(key, from, input, ErrorCode::InvalidDebounce, "debounce")
    }
}

impl crate::RunPolicy {
    /// Checks that the input has every key the policy's flow control reads
    /// from it (`key_from`).
    pub fn check_keys(&self) -> Result<(), PolicyError> {
        let input = &self.input;
        if let Some(c) = &self.concurrency {
            c.key_for(input)?;
        }
        if let Some(r) = &self.rate_limit {
            r.key_for(input)?;
        }
        if let Some(d) = &self.debounce {
            d.key_for(input)?;
        }
        Ok(())
    }

    /// Sets each flow-control key to the one the input gives: a made run's
    /// keys (after [`check_keys`](Self::check_keys)).
    pub fn resolve_keys(&mut self) {
        let input = &self.input;
        if let Some(c) = &mut self.concurrency {
            c.key = c.key_for(input).ok();
        }
        if let Some(r) = &mut self.rate_limit {
            r.key = r.key_for(input).ok();
        }
        if let Some(d) = &mut self.debounce {
            d.key = d.key_for(input).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(key: Option<&str>, key_from: Option<&str>, limit: u32) -> Concurrency {
        Concurrency {
            key: key.map(str::to_owned),
            key_from: key_from.map(str::to_owned),
            limit,
        }
    }

    #[test]
    fn keys_are_checked_and_read_from_the_input() {
        assert!(c(Some("customer-42"), None, 2).check().is_ok());
        assert!(c(None, Some("/customer"), 1).check().is_ok());
        assert!(c(None, None, 1).check().is_err());
        assert!(c(Some("k"), None, 0).check().is_err());
        assert!(c(Some("k"), None, 1001).check().is_err());
        assert!(c(Some("a\nb"), None, 1).check().is_err());
        assert!(c(None, Some("customer"), 1).check().is_err());

        let input = json!({"customer": {"id": 42}, "name": "ada"});
        let by_id = c(None, Some("/customer/id"), 1);
        assert_eq!(by_id.key_for(&input), Ok("42".to_owned()));
        assert_eq!(
            c(None, Some("/name"), 1).key_for(&input),
            Ok("ada".to_owned())
        );
        assert!(c(None, Some("/missing"), 1).key_for(&input).is_err());
        assert!(c(None, Some("/customer"), 1).key_for(&input).is_err());
        assert_eq!(c(Some("k"), None, 1).key_for(&input), Ok("k".to_owned()));
    }

    #[test]
    fn rate_limits_are_checked() {
        let r = |limit, per| RateLimit {
            key: Some("partner".into()),
            key_from: None,
            limit,
            per: std::time::Duration::from_secs(per),
        };
        assert!(r(5, 1).check().is_ok());
        assert!(r(0, 1).check().is_err());
        assert!(r(5, 0).check().is_err());
        assert!(r(5, 86_401).check().is_err());
    }
}
