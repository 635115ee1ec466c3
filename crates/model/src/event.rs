//! Events: what starts the schedules whose trigger is `event`.
//!
//! An event has a name (`github.push`), JSON data, and an id. It comes from
//! `POST /v1/events` or from a hook (`POST /hooks/{id}`, see [`crate::hook`]).
//! Every schedule of the tenant whose trigger names the event, and whose
//! `filter` the data matches ([`matches`]), fires once for it: one ledger
//! record per match, under the unique key (schedule, event id). So an event
//! sent again with the same id fires nothing again, on any node.
//!
//! The run's input is the event itself ([`Event::input`]): `id`, `name`,
//! `data`, `received_at` and, from a hook, `hook`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest event name, in bytes.
pub const MAX_NAME: usize = 200;
/// The longest event id, in bytes.
pub const MAX_ID: usize = 255;
/// The largest filter, as JSON bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// What [`check_name`] allows, as the API document declares it.
pub const NAME_PATTERN: &str = r"^[A-Za-z0-9_.:/-]{1,200}$";
/// What [`check_id`] allows, as the API document declares it.
pub const ID_PATTERN: &str = r"^[!-~]{1,255}$";

/// Why an event, or an event trigger, cannot be used. Shown to users as-is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error(
        "invalid event name {0:?}: use 1 to 200 letters, digits, '_', '.', ':', '/' or '-' \
         (e.g. \"github.push\")"
    )]
    BadName(String),
    #[error("invalid event id {0:?}: use 1 to 255 visible ASCII characters (e.g. a UUID)")]
    BadId(String),
    #[error(
        "an event filter is a JSON object of at most {MAX_FILTER_BYTES} bytes whose fields \
         the event's data must have (e.g. {{\"ref\": \"refs/heads/main\"}})"
    )]
    BadFilter,
}

/// Checks an event name.
pub fn check_name(name: &str) -> Result<(), EventError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.:/-".contains(c);
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(allowed) {
        return Err(EventError::BadName(name.to_owned()));
    }
    Ok(())
}

/// Checks an event id (a client's, or a hook sender's `webhook-id`).
pub fn check_id(id: &str) -> Result<(), EventError> {
    if id.is_empty() || id.len() > MAX_ID || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(EventError::BadId(id.to_owned()));
    }
    Ok(())
}

/// Checks an event trigger's filter.
pub fn check_filter(filter: &Value) -> Result<(), EventError> {
    let size = serde_json::to_vec(filter).map_or(usize::MAX, |v| v.len());
    if !filter.is_object() || size > MAX_FILTER_BYTES {
        return Err(EventError::BadFilter);
    }
    Ok(())
}

/// Whether `data` matches `filter`:
/// - an object matches if `data` is an object with each of its fields,
///   each matching (fields the filter does not name are ignored);
/// - an array matches if `data` matches any of its items (one of several
///   values), or, if `data` is an array too, equals it;
/// - any other value matches an equal value.
pub fn matches(filter: &Value, data: &Value) -> bool {
    match (filter, data) {
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .all(|(k, w)| have.get(k).is_some_and(|h| matches(w, h))),
        (Value::Object(_), _) => false,
        (Value::Array(_), Value::Array(_)) => filter == data,
        (Value::Array(any), _) => any.iter().any(|w| matches(w, data)),
        _ => filter == data,
    }
}

/// One event, as the schedules it fires receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: String,
    pub name: String,
    pub tenant: String,
    #[serde(default)]
    pub data: Value,
    #[serde(with = "crate::time::utc")]
    pub received_at: DateTime<Utc>,
    /// The hook it came through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
}

impl Event {
    /// The input of the runs it starts.
    pub fn input(&self) -> Value {
        let mut input = serde_json::json!({
            "id": self.id,
            "name": self.name,
            "data": self.data,
            "received_at": self.received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        if let Some(hook) = &self.hook {
            input["hook"] = Value::String(hook.clone());
        }
        input
    }

    /// What a fire's record keeps of it.
    pub fn reference(&self) -> EventRef {
        EventRef {
            id: self.id.clone(),
            name: self.name.clone(),
            hook: self.hook.clone(),
        }
    }
}

/// The event a fire was for (on its ledger record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventRef {
    pub id: String,
    pub name: String,
    /// The hook it came through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_match_fields_they_name() {
        let data = json!({"ref": "refs/heads/main", "repo": {"name": "a", "private": true}});
        assert!(matches(&json!({}), &data));
        assert!(matches(&json!({"ref": "refs/heads/main"}), &data));
        assert!(matches(&json!({"repo": {"name": "a"}}), &data));
        assert!(matches(
            &json!({"ref": ["refs/heads/dev", "refs/heads/main"]}),
            &data
        ));
        assert!(!matches(&json!({"ref": "refs/heads/dev"}), &data));
        assert!(!matches(&json!({"missing": null}), &data));
        assert!(!matches(&json!({"repo": {"private": false}}), &data));
        assert!(!matches(&json!({"ref": "x"}), &json!("not an object")));
        assert!(matches(&json!({"tags": [1, 2]}), &json!({"tags": [1, 2]})));
        assert!(!matches(&json!({"tags": [1, 2]}), &json!({"tags": [2, 1]})));
    }

    #[test]
    fn names_ids_and_filters_are_checked() {
        assert!(check_name("github.push").is_ok());
        assert!(check_name("orders/created:v2").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("has space").is_err());
        assert!(check_name(&"a".repeat(MAX_NAME + 1)).is_err());
        assert!(check_id("msg_2x").is_ok());
        assert!(check_id("a b").is_err());
        assert!(check_filter(&json!({"a": 1})).is_ok());
        assert!(check_filter(&json!([1])).is_err());
        let big = json!({ "a": "x".repeat(MAX_FILTER_BYTES) });
        assert!(check_filter(&big).is_err());
    }
}
