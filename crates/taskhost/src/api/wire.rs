//! The request bodies of the API, typed once for the server (which reads
//! them) and the CLI (which sends them). The run policy is
//! [`RunPolicy`], flattened in, so a new setting is a new field there.

use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use taskhost_model::time::{option_duration, option_utc};
use taskhost_model::{CatchUp, OverlapPolicy, RunPolicy, Trigger};
use utoipa::ToSchema;

/// Refuses every field its type does not know. Serde's
/// `deny_unknown_fields` does not work beside `flatten`; flattened last,
/// this sees exactly the fields no other field took.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NoOtherFields;

impl<'de> Deserialize<'de> for NoOtherFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = NoOtherFields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("no other fields")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoOtherFields, A::Error> {
                match map.next_key::<String>()? {
                    Some(key) => Err(A::Error::custom(format!("unknown field `{key}`"))),
                    None => Ok(NoOtherFields),
                }
            }
        }
        d.deserialize_map(Fields)
    }
}

/// An ad hoc run of a plugin.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewExecution {
    pub plugin_id: String,
    /// Wait up to this long (e.g. "10s") for the run to finish and return it.
    #[serde(
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "10s")]
    pub wait: Option<Duration>,
    #[serde(flatten)]
    pub policy: RunPolicy,
    #[serde(flatten, skip_serializing)]
    #[schema(ignore)]
    pub other: NoOtherFields,
}

/// A run of a batch, as the document shows it: as for
/// `POST /v1/executions`, without `wait` (a run in a batch cannot wait; one
/// that asks is refused with the batch).
#[derive(ToSchema)]
#[allow(dead_code)] // documents the JSON shape only
pub struct BatchRun {
    plugin_id: String,
    #[serde(flatten)]
    policy: RunPolicy,
}

/// Many ad hoc runs, queued together.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExecutions {
    /// 1 to 1,000 runs.
    #[schema(min_items = 1, max_items = 1000, value_type = Vec<BatchRun>)]
    pub runs: Vec<NewExecution>,
}

/// The runs of a batch, queued.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchAccepted {
    /// The executions' ids, in the order of the runs.
    pub ids: Vec<String>,
}

/// A new schedule. Only `name`, `trigger` and one of `plugin_id` and
/// `plugin` are required.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewSchedule {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// The plugin (version) to run, by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_id: Option<String>,
    /// The plugin by reference instead: `name@version` (pinned to that
    /// version), or `name@latest` / `name@ALIAS` (follows the alias: each
    /// fire runs the version it points to then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    pub trigger: Trigger,
    #[serde(default)]
    pub overlap: OverlapPolicy,
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Random delay added to each fire, up to this much (at most 24 h).
    #[serde(
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "0s")]
    pub jitter: Option<Duration>,
    #[serde(default)]
    pub paused: bool,
    /// No fires before this time.
    #[serde(default, with = "option_utc", skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<chrono::DateTime<chrono::Utc>>,
    /// No fires after this time.
    #[serde(default, with = "option_utc", skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(flatten)]
    pub policy: RunPolicy,
    #[serde(flatten, skip_serializing)]
    #[schema(ignore)]
    pub other: NoOtherFields,
}

/// Changes to a schedule: only the fields given change. The run policy's
/// fields (`input`, `limits`, `retry`, …) replace the schedule's as given.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct SchedulePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<OverlapPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
    #[serde(
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub jitter: Option<Duration>,
    #[serde(flatten)]
    #[schema(value_type = RunPolicy)]
    pub policy: PolicyPatch,
}

/// The run-policy fields of a patch, as given: each replaces the
/// schedule's. Checked on arrival to be fields of [`RunPolicy`] with the
/// right types, so adding a policy field needs nothing here.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct PolicyPatch(pub serde_json::Map<String, serde_json::Value>);

impl<'de> Deserialize<'de> for PolicyPatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Strict {
            #[serde(flatten)]
            _policy: RunPolicy,
            #[serde(flatten)]
            _other: NoOtherFields,
        }
        let fields = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        serde_json::from_value::<Strict>(serde_json::Value::Object(fields.clone()))
            .map_err(D::Error::custom)?;
        Ok(PolicyPatch(fields))
    }
}

impl PolicyPatch {
    /// `policy` with the given fields replaced.
    pub fn apply(&self, policy: &RunPolicy) -> Result<RunPolicy, serde_json::Error> {
        let mut merged = serde_json::to_value(policy)?;
        if let Some(fields) = merged.as_object_mut() {
            fields.extend(self.0.clone());
        }
        serde_json::from_value(merged)
    }
}

/// A past window `[from, to)` whose fires should run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// The window's start (included).
    pub from: chrono::DateTime<chrono::Utc>,
    /// The window's end (excluded); at most now.
    pub to: chrono::DateTime<chrono::Utc>,
    /// How the window's runs may overlap: only `allow` (all queued at once,
    /// started in fire order) for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<String>,
}

/// A page size: 1 to [`MAX_PAGE`](taskhost_store::MAX_PAGE), refused
/// outside it (never silently clamped).
pub fn page_limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let max = taskhost_store::MAX_PAGE;
    match Option::<u32>::deserialize(d)? {
        Some(n) if !(1..=max).contains(&n) => Err(D::Error::custom(format!(
            "limit is {n}; it must be 1-{max}"
        ))),
        limit => Ok(limit),
    }
}
