//! Child runs: a workflow spawns executions linked to it (`spawn`) and
//! suspends until they end (`join`).
//!
//! A spawn is a step: its record keeps the children's ids, so a replay
//! returns them and never spawns twice. The ids themselves are derived from
//! the parent, the step's position and name, and the child's index
//! ([`child_id`]): a node killed after making the children but before
//! recording the step makes the same ids again on the next run, and finds
//! them made.
//!
//! A join is a step too. While one of its children has not ended, the run
//! ends suspended, waiting for the children still running; each child's end
//! makes the parent due (within [`WAKE_COALESCE`], so a thousand children
//! ending together replay the parent a few times, not a thousand), and the
//! parent checks again after [`JOIN_RECHECK`] in any case. Once all have
//! ended, the join's record keeps their outcomes.

use super::{StepError, StepKind, StepLog, StepRecord};
use crate::RunPolicy;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Most children one execution may spawn, over all its spawns.
pub const MAX_CHILDREN: usize = 1_000;
/// How deep children may nest: a top-level run is at depth 0, its children
/// at 1; a run at this depth may not spawn.
pub const MAX_DEPTH: u32 = 4;
/// The most bytes of one child's input and options: an API request's
/// default body.
pub const MAX_CHILD_BYTES: usize = 1 << 20;
/// The most bytes of one spawn's children in all (plugins, inputs,
/// options): an API batch's default body.
pub const MAX_SPAWN_BYTES: usize = 16 << 20;
/// A waiting join checks its children again after this, even if no child's
/// end woke it (the node that ran the last child may have died before it
/// could).
pub const JOIN_RECHECK: Duration = Duration::from_secs(60);
/// A child's end makes its waiting parent due at most this late: the ends
/// of many children coalesce into one replay.
pub const WAKE_COALESCE: Duration = Duration::from_secs(1);

/// What a child execution knows of its parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Parent {
    /// The parent execution.
    pub id: String,
    /// 1 for a top-level run's child, 2 for its grandchild…
    pub depth: u32,
    /// Not cancelled with its parent (spawned with `"detach": true`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detached: bool,
}

/// One child run to spawn, as the plugin asked for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildRun {
    /// A plugin id, `name@version`, `name@alias`, or a name (its latest).
    pub plugin: String,
    /// Its run policy (priority, retry, limits, config, secrets, network…),
    /// as `POST /v1/executions` takes it, and its input (the plugin gave
    /// JSON, or nothing: `null`).
    pub policy: RunPolicy,
    /// Not cancelled with its parent.
    pub detach: bool,
}

/// Why a spawn's children cannot be made; the plugin gets the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpawnError {
    #[error("child {index}: its input is not JSON ({why})")]
    Input { index: usize, why: String },
    #[error(
        "child {index}: its options are not a run policy ({why}); they take the fields of POST /v1/executions and `detach`"
    )]
    Options { index: usize, why: String },
    #[error("a spawn needs at least one child")]
    Empty,
    #[error("the execution would pass {max} children ({spawned} spawned, {asked} more asked)")]
    TooMany {
        spawned: usize,
        asked: usize,
        max: usize,
    },
    #[error("children may nest {max} deep; this run is at depth {depth}")]
    TooDeep { depth: u32, max: u32 },
    #[error(
        "child {index}: its input and options are {bytes} bytes; a child's may be {MAX_CHILD_BYTES}"
    )]
    ChildTooLarge { index: usize, bytes: usize },
    #[error("the spawn's children are {0} bytes; one spawn's may be {MAX_SPAWN_BYTES}")]
    TooLarge(usize),
}

impl ChildRun {
    /// A child from the plugin's call: `input` JSON (empty: `null`),
    /// `options` a JSON object of run policy fields and `detach` (empty:
    /// defaults).
    pub fn parse(
        index: usize,
        plugin: String,
        input: &[u8],
        options: &str,
    ) -> Result<ChildRun, SpawnError> {
        let bytes = input.len() + options.len();
        if bytes > MAX_CHILD_BYTES {
            return Err(SpawnError::ChildTooLarge { index, bytes });
        }
        let input = match input {
            [] => Value::Null,
            bytes => serde_json::from_slice(bytes).map_err(|e| SpawnError::Input {
                index,
                why: e.to_string(),
            })?,
        };
        let options_error = |why: String| SpawnError::Options { index, why };
        let mut options: serde_json::Map<String, Value> = match options.trim() {
            "" => serde_json::Map::new(),
            text => serde_json::from_str(text).map_err(|e| options_error(e.to_string()))?,
        };
        let detach = match options.remove("detach") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(options_error("`detach` must be true or false".into())),
        };
        let mut policy: RunPolicy = serde_json::from_value(Value::Object(options))
            .map_err(|e| options_error(e.to_string()))?;
        policy.input = input;
        Ok(ChildRun {
            plugin,
            policy,
            detach,
        })
    }
}

/// The id of child `index` of the spawn at step `position` named `step`
/// of execution `parent`: the same on every run (see the module docs).
pub fn child_id(parent: &str, position: usize, step: &str, index: usize) -> String {
    let mut hash = Sha256::new();
    for part in [parent, &position.to_string(), step, &index.to_string()] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// How a joined child ended, as the join returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildOutcome {
    pub id: String,
    /// `succeeded`, `failed`, `dead`, `cancelled`; or `queued`/`running`
    /// while it runs; `missing` if it no longer exists (retention).
    pub status: String,
    /// Its output (JSON if it gave JSON, else text), when it succeeded.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub output: Value,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ChildOutcome {
    /// Whether the child has ended (a missing child counts as ended).
    pub fn ended(&self) -> bool {
        !matches!(self.status.as_str(), "queued" | "running")
    }
}

/// What a spawn step comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spawn {
    /// A replay: the children the record names.
    Recorded(Vec<String>),
    /// Make them, as the step at this position.
    At(usize),
    /// They may not be made (the plugin gets why).
    Refused(SpawnError),
}

impl StepLog {
    /// Spawn step `name` of `asked` children (see [`Spawn`]); an error
    /// ends the run (a replay that departs from the record, or a record
    /// that would not fit the step bounds).
    pub fn spawn(&mut self, name: &str, asked: usize) -> Result<Spawn, StepError> {
        if let Some(ids) = self.get(name)? {
            self.replayed_as(StepKind::Spawn)?;
            return Ok(Spawn::Recorded(
                serde_json::from_str(&ids).unwrap_or_default(),
            ));
        }
        let spawned = self.children().len();
        if asked == 0 {
            return Ok(Spawn::Refused(SpawnError::Empty));
        }
        let max = self.bounds().max_children;
        if spawned + asked > max {
            return Ok(Spawn::Refused(SpawnError::TooMany {
                spawned,
                asked,
                max,
            }));
        }
        // The step bounds its record must fit, checked before any child is
        // made: a UUID of 36 characters, quoted, and a comma each.
        self.has_room(name, asked * 39 + 2)?;
        Ok(Spawn::At(self.position))
    }

    /// The record of spawn step `name`, which made children `ids`.
    pub fn spawned(
        &mut self,
        name: &str,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<StepRecord, StepError> {
        let result = serde_json::to_vec(ids).unwrap_or_default();
        self.done_kind(StepKind::Spawn, name, result, now)
    }

    /// Every child the execution's recorded spawns made, in order.
    pub fn children(&self) -> Vec<String> {
        spawned_by(&self.recorded)
    }

    /// Join step `name` of children `ids`: its recorded outcomes on a
    /// replay; `None`: look at them, then [`StepLog::joined`] once all
    /// have ended. Each id must be a child this execution spawned.
    pub fn join(&mut self, name: &str, ids: &[String]) -> Result<Option<String>, StepError> {
        let max = self.bounds().max_children;
        if ids.len() > max {
            return Err(StepError::JoinTooLarge {
                names: ids.len(),
                max,
            });
        }
        let ours: std::collections::HashSet<String> = self.children().into_iter().collect();
        if let Some(stranger) = ids.iter().find(|id| !ours.contains(*id)) {
            return Err(StepError::NotAChild {
                step: name.to_owned(),
                id: stranger.chars().take(64).collect(),
            });
        }
        let found = self.get(name)?;
        if found.is_some() {
            self.replayed_as(StepKind::Join)?;
        }
        Ok(found)
    }

    /// The children a join named `name` found still running when it last
    /// looked (this execution's wait), if that is where the replay is.
    pub fn still_running(&self, name: &str) -> Option<&[String]> {
        let wait = self.waiting.as_ref()?;
        (wait.step == name && !wait.children.is_empty()).then_some(wait.children.as_slice())
    }

    /// The record of join step `name`, whose children all ended so.
    pub fn joined(
        &mut self,
        name: &str,
        outcomes: &[ChildOutcome],
        now: DateTime<Utc>,
    ) -> Result<StepRecord, StepError> {
        let result = serde_json::to_vec(outcomes).unwrap_or_default();
        self.done_kind(StepKind::Join, name, result, now)
    }
}

/// The children `steps`' spawns made, in order.
pub fn spawned_by(steps: &[StepRecord]) -> Vec<String> {
    steps
        .iter()
        .filter(|s| s.kind == StepKind::Spawn)
        .flat_map(|s| serde_json::from_str::<Vec<String>>(&s.result).unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_ids_are_stable_and_distinct() {
        let a = child_id("p", 0, "fan", 0);
        assert_eq!(a, child_id("p", 0, "fan", 0));
        assert_ne!(a, child_id("p", 0, "fan", 1));
        assert_ne!(a, child_id("p", 1, "fan", 0));
        assert_ne!(a, child_id("q", 0, "fan", 0));
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
    }

    #[test]
    fn a_spawn_is_recorded_once_and_a_join_takes_only_its_children() {
        let now = Utc::now();
        let mut log = StepLog::new(Vec::new(), 1);
        let position = log.spawn("fan", 2).expect("spawn");
        assert_eq!(position, Spawn::At(0));
        let ids = vec![child_id("p", 0, "fan", 0), child_id("p", 0, "fan", 1)];
        let record = log.spawned("fan", &ids, now).expect("record");
        log.recorded(record.clone());
        assert!(matches!(
            log.join("all", &["other".to_owned()]),
            Err(StepError::NotAChild { .. })
        ));
        assert_eq!(log.join("all", &ids).expect("join"), None);

        let mut replay = StepLog::new(vec![record], 1);
        assert_eq!(
            replay.spawn("fan", 2).expect("replay"),
            Spawn::Recorded(ids.clone())
        );
        assert_eq!(replay.children(), ids);
        assert!(matches!(
            replay.spawn("more", MAX_CHILDREN - 1).expect("checked"),
            Spawn::Refused(SpawnError::TooMany { spawned: 2, .. })
        ));
        assert!(matches!(
            replay.spawn("none", 0).expect("checked"),
            Spawn::Refused(SpawnError::Empty)
        ));
    }

    #[test]
    fn a_replay_that_changes_a_step_into_a_spawn_or_a_join_fails() {
        let now = Utc::now();
        let mut log = StepLog::new(Vec::new(), 1);
        assert_eq!(log.get("fan").expect("get"), None);
        let plain = log.done("fan", b"[]".to_vec(), now).expect("done");
        let mut replay = StepLog::new(vec![plain.clone()], 1);
        assert!(matches!(
            replay.spawn("fan", 1),
            Err(StepError::KindChanged { .. })
        ));
        let mut replay = StepLog::new(vec![plain], 1);
        assert!(matches!(
            replay.join("fan", &[]),
            Err(StepError::KindChanged { .. })
        ));
        let many = vec![String::new(); MAX_CHILDREN + 1];
        assert!(matches!(
            log.join("all", &many),
            Err(StepError::JoinTooLarge { .. })
        ));
    }

    #[test]
    fn a_spawn_whose_record_would_not_fit_makes_no_child() {
        let now = Utc::now();
        let full: Vec<StepRecord> = (0..super::super::MAX_STEPS)
            .map(|i| StepRecord {
                name: format!("s{i}"),
                kind: StepKind::Step,
                bytes: 1,
                result: "1".into(),
                completed_at: now,
                attempt: 1,
            })
            .collect();
        let mut log = StepLog::new(full, 1);
        for i in 0..super::super::MAX_STEPS {
            log.get(&format!("s{i}")).expect("replay");
        }
        assert!(matches!(
            log.spawn("fan", 1),
            Err(StepError::TooManySteps(_))
        ));
    }

    #[test]
    fn options_are_a_run_policy_and_detach() {
        let c = ChildRun::parse(
            0,
            "p".into(),
            br#"{"n":1}"#,
            r#"{"priority":5,"detach":true}"#,
        )
        .expect("parse");
        assert_eq!((c.policy.priority, c.detach), (5, true));
        assert_eq!(c.policy.input, serde_json::json!({"n": 1}));
        let plain = ChildRun::parse(0, "p".into(), b"", "").expect("defaults");
        assert_eq!((plain.policy.input, plain.detach), (Value::Null, false));
        assert!(matches!(
            ChildRun::parse(3, "p".into(), b"{", ""),
            Err(SpawnError::Input { index: 3, .. })
        ));
        assert!(matches!(
            ChildRun::parse(0, "p".into(), b"", r#"{"detach":"yes"}"#),
            Err(SpawnError::Options { .. })
        ));
        assert!(ChildRun::parse(0, "p".into(), b"", r#"{"priority":"high"}"#).is_err());
        let big = vec![b' '; MAX_CHILD_BYTES + 1];
        assert!(matches!(
            ChildRun::parse(2, "p".into(), &big, ""),
            Err(SpawnError::ChildTooLarge { index: 2, .. })
        ));
    }
}
