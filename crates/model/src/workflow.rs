//! Durable workflows: steps recorded as they complete, and durable sleep.
//!
//! A plugin wraps each piece of work in a named step (`ctx.step("charge",
//! || …)` in the SDKs). The host answers `step-get` with the step's
//! recorded result if this execution completed it in an earlier run (a
//! replay), and records the result on `step-done` — in the store, with the
//! run's kv writes so far, before the plugin goes on. So a run that fails,
//! is retried, or is cut by a crash resumes after its last completed step,
//! and a completed step's effects happen once.
//!
//! `sleep-until` is a step too: the first time, the host records the wake
//! time and ends the run *suspended* (no attempt used, no worker held); the
//! execution is due again at that time, and its next run replays the steps
//! before the sleep and goes on past it.
//!
//! Replay must ask for the same steps in the same order: a run whose step
//! at some position has another name than the record fails, not retried,
//! with a "non-deterministic workflow" error naming both.
//!
//! Child runs (`spawn` and `join`) are steps as well: see [`children`].

mod bounds;
pub mod children;
mod lifetime;

pub use bounds::{BoundsError, WorkflowBounds};
pub use children::{ChildOutcome, ChildRun, Parent, Spawn, SpawnError};
pub use lifetime::{MAX_LIFETIME, TOTAL_FUEL_RUNS, WorkflowBound, suspension};

use crate::event::Event;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most steps one execution may record.
pub const MAX_STEPS: usize = 1_000;
/// The largest result of one step, in bytes.
pub const MAX_STEP_RESULT_BYTES: usize = 256 * 1024;
/// The most bytes of step results one execution may keep.
pub const MAX_STEPS_BYTES: usize = 1 << 20;
/// The longest step name, in bytes.
pub const MAX_STEP_NAME_BYTES: usize = 200;

/// What kind of step a record is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// `step`: work the plugin did.
    #[default]
    Step,
    /// `sleep` / `sleep-until`: its result is the wake time.
    Sleep,
    /// `wait-for-event`: its result is the event, or `null`.
    Event,
    /// `spawn`: its result is the children's ids.
    Spawn,
    /// `join`: its result is the children's outcomes.
    Join,
}

impl StepKind {
    fn is_step(&self) -> bool {
        *self == StepKind::Step
    }
}

/// One completed step of an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepRecord {
    pub name: String,
    #[serde(default, skip_serializing_if = "StepKind::is_step")]
    pub kind: StepKind,
    /// What the step returned (JSON by the SDKs' convention); for a sleep,
    /// its wake time in Unix milliseconds. Lists of executions leave it
    /// empty (see `bytes`); one execution's record shows it.
    #[serde(default)]
    pub result: String,
    /// The size of `result`, in bytes.
    #[serde(default)]
    pub bytes: u64,
    #[serde(with = "crate::time::utc")]
    pub completed_at: DateTime<Utc>,
    /// The attempt that completed it.
    pub attempt: u32,
}

/// The most events an execution keeps waiting to be taken.
pub const MAX_INBOX: usize = 100;
/// The most bytes (as JSON) of events an execution keeps waiting to be taken.
pub const MAX_INBOX_BYTES: usize = 256 * 1024;
/// The largest filter of a wait for an event, as JSON.
pub const MAX_FILTER_BYTES: usize = 16 * 1024;

/// What a suspended workflow waits for: an event (or the time), taken by
/// its step `step`, or the end of children it joins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Wait {
    /// The step that takes the event (or joins).
    pub step: String,
    /// The event's name (empty for a join).
    #[serde(default)]
    pub event: String,
    /// Fields the event's data must have (as schedules' event filters).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub filter: Value,
    /// The children a join waits for: those not ended when it last looked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    /// When it stops waiting: the step's result is then `null` (a join
    /// looks at its children again).
    #[serde(with = "crate::time::utc")]
    pub until: DateTime<Utc>,
}

impl Wait {
    /// Whether `event` is what it waits for (any data, without a filter).
    pub fn takes(&self, event: &Event) -> bool {
        !self.event.is_empty()
            && event.name == self.event
            && (self.filter.is_null() || crate::event::matches(&self.filter, &event.data))
    }
}

/// What a wait-for-event call comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Waited {
    /// The recorded or newly taken result: the event's JSON, or `null`
    /// (timed out).
    Result(String),
    /// End the run suspended, waiting for this.
    Suspend(Wait),
}

/// Where a run's completed steps are recorded and its children made (the
/// scheduler writes them to the store, fenced by the run's lease).
#[async_trait::async_trait]
pub trait StepSink: Send + Sync {
    /// Records `step`; an error stops the run (it runs again from its last
    /// recorded step).
    async fn record(&self, step: &StepRecord) -> Result<(), String>;

    /// Makes the children of spawn step `name` at `position`, with the ids
    /// [`children::child_id`] gives (finding them made if a run before
    /// this one made them). Their ids, or why not (the plugin gets it).
    async fn spawn(
        &self,
        _position: usize,
        _name: &str,
        _children: Vec<ChildRun>,
    ) -> Result<Vec<String>, String> {
        Err("this host runs no child runs".into())
    }

    /// How the execution's children `ids` stand now.
    async fn outcomes(&self, _ids: &[String]) -> Result<Vec<ChildOutcome>, String> {
        Err("this host runs no child runs".into())
    }
}

/// A sink that keeps nothing (runs that are not workflows, tests).
pub struct NoSink;

#[async_trait::async_trait]
impl StepSink for NoSink {
    async fn record(&self, _: &StepRecord) -> Result<(), String> {
        Ok(())
    }
}

/// A sink that keeps the steps in memory: `taskhost run` replays a local
/// workflow from it after a sleep.
#[derive(Default)]
pub struct MemorySink(std::sync::Mutex<Vec<StepRecord>>);

impl MemorySink {
    /// The steps recorded so far.
    pub fn steps(&self) -> Vec<StepRecord> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait::async_trait]
impl StepSink for MemorySink {
    async fn record(&self, step: &StepRecord) -> Result<(), String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(step.clone());
        Ok(())
    }
}

/// Why a step call cannot be taken; each ends the run `failed`, not retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error(
        "non-deterministic workflow: step {position} was recorded as `{recorded}`, and this run asks for `{asked}`; a workflow must ask for the same steps in the same order on every run"
    )]
    NonDeterministic {
        position: usize,
        recorded: String,
        asked: String,
    },
    #[error("step-done for `{0}` without a step-get of it that found no record")]
    NotStarted(String),
    #[error("step name `{0}` is empty or longer than {MAX_STEP_NAME_BYTES} bytes")]
    BadName(String),
    #[error("step `{name}` returned {bytes} bytes; a step's result may have {max}")]
    ResultTooLarge {
        name: String,
        bytes: usize,
        max: usize,
    },
    #[error("the execution's step results would pass {0} bytes")]
    TooManyBytes(usize),
    #[error("the execution would pass {0} steps")]
    TooManySteps(usize),
    #[error("step `{0}`'s result is not UTF-8 text (JSON by convention)")]
    NotText(String),
    #[error("wait-for-event {0} (its filter must be JSON)")]
    BadFilter(String),
    #[error("could not record step `{name}`: {why}")]
    NotRecorded { name: String, why: String },
    #[error("join `{step}`: {id} is not a child this execution spawned")]
    NotAChild { step: String, id: String },
    #[error("a join may name at most {max} children; this one names {names}")]
    JoinTooLarge { names: usize, max: usize },
    #[error(
        "non-deterministic workflow: step {position} `{name}` was recorded as a {recorded:?} step, and this run asks for a {asked:?} step"
    )]
    KindChanged {
        position: usize,
        name: String,
        recorded: StepKind,
        asked: StepKind,
    },
}

/// A run's view of its execution's steps: the record, and where the replay is.
pub struct StepLog {
    recorded: Vec<StepRecord>,
    position: usize,
    /// The step a `step-get` found no record of, awaiting its `step-done`.
    pending: Option<String>,
    attempt: u32,
    /// Events sent to the execution, not taken yet.
    inbox: Vec<Event>,
    /// What the execution waited for when this run began.
    waiting: Option<Wait>,
    /// The node's bounds.
    bounds: WorkflowBounds,
}

/// What a sleep asks of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sleep {
    /// The wake time has passed: go on.
    Over,
    /// End the run suspended until this time (Unix ms).
    Until(i64),
}

impl StepLog {
    pub fn new(recorded: Vec<StepRecord>, attempt: u32) -> StepLog {
        StepLog {
            recorded,
            position: 0,
            pending: None,
            attempt,
            inbox: Vec::new(),
            waiting: None,
            bounds: WorkflowBounds::default(),
        }
    }

    /// Held to the node's `bounds` rather than the defaults.
    #[must_use]
    pub fn with_bounds(mut self, bounds: WorkflowBounds) -> StepLog {
        self.bounds = bounds;
        self
    }

    /// The bounds it is held to.
    pub fn bounds(&self) -> &WorkflowBounds {
        &self.bounds
    }

    /// With the execution's undelivered events and what it waited for.
    #[must_use]
    pub fn with_events(mut self, inbox: Vec<Event>, waiting: Option<Wait>) -> StepLog {
        self.inbox = inbox;
        self.waiting = waiting;
        self
    }

    /// Wait-for-event step `name`: the recorded result on a replay; else a
    /// matching event sent meanwhile, or `null` once `timeout_ms` has passed
    /// since the wait began (a record to write first, `Some`); else suspend.
    pub fn wait(
        &mut self,
        name: &str,
        event: &str,
        filter: Value,
        timeout_ms: i64,
        now: DateTime<Utc>,
    ) -> Result<(Waited, Option<StepRecord>), StepError> {
        if filter.to_string().len() > MAX_FILTER_BYTES {
            return Err(StepError::BadFilter(format!(
                "{name}: longer than {MAX_FILTER_BYTES} bytes"
            )));
        }
        if let Some(result) = self.get(name)? {
            return Ok((Waited::Result(result), None));
        }
        let until = match &self.waiting {
            Some(w) if w.step == name => w.until,
            _ => crate::time::add_saturating(
                now,
                std::time::Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0)),
            ),
        };
        let wait = Wait {
            step: name.to_owned(),
            event: event.to_owned(),
            filter,
            children: Vec::new(),
            until,
        };
        let taken = self.inbox.iter().find(|e| wait.takes(e));
        let result = match taken {
            Some(e) => e.input().to_string(),
            None if now >= until => "null".to_owned(),
            None => return Ok((Waited::Suspend(wait), None)),
        };
        let record = self.make_kind(StepKind::Event, name, result.clone().into_bytes(), now)?;
        Ok((Waited::Result(result), Some(record)))
    }

    /// The recorded result of step `name` at this position, if the replay
    /// has one; `None`: run it, then [`StepLog::done`].
    pub fn get(&mut self, name: &str) -> Result<Option<String>, StepError> {
        check_name(name)?;
        match self.recorded.get(self.position) {
            Some(step) if step.name == name => {
                self.position += 1;
                Ok(Some(step.result.clone()))
            }
            Some(step) => Err(StepError::NonDeterministic {
                position: self.position + 1,
                recorded: step.name.clone(),
                asked: name.to_owned(),
            }),
            None => {
                self.pending = Some(name.to_owned());
                Ok(None)
            }
        }
    }

    /// The record of step `name` completed with `result` at `now`, to write
    /// (then [`StepLog::recorded`]).
    pub fn done(
        &mut self,
        name: &str,
        result: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<StepRecord, StepError> {
        self.done_kind(StepKind::Step, name, result, now)
    }

    /// The record of pending step `name` (of `kind`) with `result`.
    fn done_kind(
        &mut self,
        kind: StepKind,
        name: &str,
        result: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<StepRecord, StepError> {
        if self.pending.as_deref() != Some(name) {
            return Err(StepError::NotStarted(name.to_owned()));
        }
        self.make_kind(kind, name, result, now)
    }

    /// A sleep named `name` until `at_ms`: the recorded wake time on a
    /// replay, else the record to write first (`Some`).
    pub fn sleep(
        &mut self,
        name: &str,
        at_ms: i64,
        now: DateTime<Utc>,
    ) -> Result<(Sleep, Option<StepRecord>), StepError> {
        let (wake, record) = match self.get(name)? {
            Some(result) => (result.parse::<i64>().unwrap_or(at_ms), None),
            None => {
                let wake = at_ms.to_string().into_bytes();
                let record = self.make_kind(StepKind::Sleep, name, wake, now)?;
                (at_ms, Some(record))
            }
        };
        let sleep = if now.timestamp_millis() >= wake {
            Sleep::Over
        } else {
            Sleep::Until(wake)
        };
        Ok((sleep, record))
    }

    /// Whether the step just replayed was recorded as a `kind` step.
    fn replayed_as(&self, kind: StepKind) -> Result<(), StepError> {
        let Some(step) = self
            .position
            .checked_sub(1)
            .and_then(|i| self.recorded.get(i))
        else {
            return Ok(());
        };
        if step.kind == kind {
            return Ok(());
        }
        Err(StepError::KindChanged {
            position: self.position,
            name: step.name.clone(),
            recorded: step.kind,
            asked: kind,
        })
    }

    /// Whether a step named `name` with a result of `bytes` fits the
    /// execution's step bounds.
    fn has_room(&self, name: &str, bytes: usize) -> Result<(), StepError> {
        let b = &self.bounds;
        if bytes > b.max_step_result_bytes {
            return Err(StepError::ResultTooLarge {
                name: name.to_owned(),
                bytes,
                max: b.max_step_result_bytes,
            });
        }
        if self.recorded.len() >= b.max_steps {
            return Err(StepError::TooManySteps(b.max_steps));
        }
        let used: usize = self.recorded.iter().map(|s| s.result.len()).sum();
        if used + bytes > b.max_steps_bytes {
            return Err(StepError::TooManyBytes(b.max_steps_bytes));
        }
        Ok(())
    }

    /// Notes that `step` is in the store: the replay moves past it.
    pub fn recorded(&mut self, step: StepRecord) {
        self.pending = None;
        self.recorded.push(step);
        self.position = self.recorded.len();
    }

    fn make_kind(
        &self,
        kind: StepKind,
        name: &str,
        result: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<StepRecord, StepError> {
        self.has_room(name, result.len())?;
        let result = String::from_utf8(result).map_err(|_| StepError::NotText(name.to_owned()))?;
        Ok(StepRecord {
            name: name.to_owned(),
            kind,
            bytes: result.len() as u64,
            result,
            completed_at: now,
            attempt: self.attempt,
        })
    }
}

fn check_name(name: &str) -> Result<(), StepError> {
    if name.is_empty() || name.len() > MAX_STEP_NAME_BYTES {
        return Err(StepError::BadName(name.chars().take(40).collect()));
    }
    Ok(())
}

/// Whether an inbox holding `inbox` has room for `event`: under
/// [`MAX_INBOX`] events and [`MAX_INBOX_BYTES`] in all.
pub fn inbox_has_room(inbox: &[Event], event: &Event) -> bool {
    let size = |e: &Event| serde_json::to_vec(e).map_or(usize::MAX, |v| v.len());
    let used: usize = inbox.iter().map(size).sum();
    inbox.len() < MAX_INBOX && used.saturating_add(size(event)) <= MAX_INBOX_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_returns_recorded_steps_and_refuses_another_order() {
        let now = Utc::now();
        let mut first = StepLog::new(Vec::new(), 1);
        assert_eq!(first.get("one").expect("get"), None);
        let one = first.done("one", b"1".to_vec(), now).expect("done");
        first.recorded(one.clone());
        assert!(matches!(
            first.done("two", b"2".to_vec(), now),
            Err(StepError::NotStarted(_))
        ));

        let mut replay = StepLog::new(vec![one.clone()], 2);
        assert_eq!(replay.get("one").expect("replayed"), Some("1".to_owned()));
        assert_eq!(replay.get("two").expect("new"), None);

        let mut changed = StepLog::new(vec![one], 2);
        let err = changed.get("uno").expect_err("renamed");
        assert!(
            err.to_string().contains("non-deterministic workflow"),
            "{err}"
        );
        assert!(err.to_string().contains("`one`") && err.to_string().contains("`uno`"));
    }

    #[test]
    fn a_sleep_is_recorded_once_and_over_when_its_time_has_come() {
        let now = Utc::now();
        let wake = now.timestamp_millis() + 2_000;
        let mut log = StepLog::new(Vec::new(), 1);
        let (sleep, record) = log.sleep("nap", wake, now).expect("sleep");
        assert_eq!(sleep, Sleep::Until(wake));
        let record = record.expect("to record");
        log.recorded(record.clone());
        // The next run, before and after the wake time.
        let mut early = StepLog::new(vec![record.clone()], 1);
        let (sleep, again) = early.sleep("nap", wake + 5_000, now).expect("sleep");
        assert_eq!(
            (sleep, again),
            (Sleep::Until(wake), None),
            "the recorded time"
        );
        let later = now + chrono::Duration::seconds(3);
        let mut woken = StepLog::new(vec![record], 1);
        assert_eq!(woken.sleep("nap", 0, later).expect("sleep").0, Sleep::Over);
    }

    #[test]
    fn every_step_bound_is_refused_saying_which() {
        let now = Utc::now();
        let mut log = StepLog::new(Vec::new(), 1);
        assert!(matches!(log.get(""), Err(StepError::BadName(_))));
        assert!(matches!(
            log.get(&"n".repeat(MAX_STEP_NAME_BYTES + 1)),
            Err(StepError::BadName(_))
        ));
        assert_eq!(log.get("big").expect("get"), None);
        let big = vec![b'x'; MAX_STEP_RESULT_BYTES + 1];
        assert!(matches!(
            log.done("big", big, now),
            Err(StepError::ResultTooLarge { .. })
        ));
        assert!(matches!(
            log.done("big", vec![0xff], now),
            Err(StepError::NotText(_))
        ));
        let step = |i: usize, bytes: usize| StepRecord {
            name: format!("s{i}"),
            kind: StepKind::Step,
            bytes: bytes as u64,
            result: "x".repeat(bytes),
            completed_at: now,
            attempt: 1,
        };
        let full: Vec<StepRecord> = (0..MAX_STEPS).map(|i| step(i, 1)).collect();
        let mut log = StepLog::new(full, 1);
        for i in 0..MAX_STEPS {
            log.get(&format!("s{i}")).expect("replay");
        }
        assert_eq!(log.get("one-more").expect("get"), None);
        assert!(matches!(
            log.done("one-more", b"1".to_vec(), now),
            Err(StepError::TooManySteps(_))
        ));
        let heavy: Vec<StepRecord> = (0..4).map(|i| step(i, MAX_STEPS_BYTES / 4)).collect();
        let mut log = StepLog::new(heavy, 1);
        for i in 0..4 {
            log.get(&format!("s{i}")).expect("replay");
        }
        assert_eq!(log.get("more").expect("get"), None);
        assert!(matches!(
            log.done("more", b"1".to_vec(), now),
            Err(StepError::TooManyBytes(_))
        ));
    }

    #[test]
    fn an_inbox_is_bounded_in_events_and_bytes() {
        let event = |bytes: usize| Event {
            id: crate::new_id(),
            name: "approved".into(),
            tenant: "acme".into(),
            data: serde_json::Value::String("x".repeat(bytes)),
            received_at: Utc::now(),
            hook: None,
        };
        let small: Vec<Event> = (0..MAX_INBOX).map(|_| event(1)).collect();
        assert!(inbox_has_room(&small[..MAX_INBOX - 1], &event(1)));
        assert!(!inbox_has_room(&small, &event(1)), "past the count");
        assert!(
            !inbox_has_room(&[], &event(MAX_INBOX_BYTES)),
            "past the bytes"
        );
        let half = event(MAX_INBOX_BYTES / 2);
        assert!(inbox_has_room(&[], &half));
        assert!(!inbox_has_room(std::slice::from_ref(&half), &half));
    }
}
