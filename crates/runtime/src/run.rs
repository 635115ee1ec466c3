//! One run: a fresh store, instantiate, call `run`, and turn whatever happened
//! into an [`Outcome`].
//!
//! A run never reuses a store (a trapped instance is poisoned) and never fails
//! the caller: limits, traps and plugin errors all become statuses.

use super::RuntimeConfig;
use super::bounds::{self, HOST_CALL_FUEL};
use super::capture::CaptureOverflow;
use super::host::{Invocation, RunState, RunStateInit, Suspend, TaskError, TaskPre};
use super::http::{HttpHooks, RunNetwork};
use super::limiter::MemoryLimitExceeded;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskhost_model::Limits;
use taskhost_model::clock::SharedClock;
use taskhost_model::kv::{KvNamespace, KvQuota, KvStore};
use taskhost_model::outcome::{Outcome, RunError, Status};
use taskhost_model::workflow::{NoSink, StepError, StepLog, StepRecord, StepSink, Wait};
use wasmtime::{Engine, Store, Trap, UpdateDeadline, WasmBacktrace};

/// Extra time the outer timer gives a run beyond its timeout. Epoch
/// interruption normally ends a busy run on time; this catches a guest blocked
/// in a host call, where epochs cannot reach it.
const BACKSTOP_GRACE: Duration = Duration::from_millis(250);
/// Fuel handed to a guest at a time (about a millisecond of busy compute).
const FUEL_SLICE: u64 = 10_000_000;
/// Longest backtrace kept in an outcome.
const MAX_BACKTRACE_BYTES: usize = 4096;

/// What to run and under which limits.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub execution_id: String,
    pub schedule_id: Option<String>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When the run was due, milliseconds since the Unix epoch.
    pub scheduled_at_ms: i64,
    /// The input bytes; JSON by convention.
    pub input: Vec<u8>,
    /// Limits for this run. A memory limit above the node's cap
    /// ([`RuntimeConfig::max_memory_bytes`]) is lowered to the cap.
    pub limits: Limits,
    /// Read-only configuration the plugin can look up.
    pub config: Arc<BTreeMap<String, String>>,
    /// Whose key-value state the run sees.
    pub namespace: KvNamespace,
    /// The secrets the run may read, by name: the value, or why it cannot
    /// have it. Their values are scrubbed from the outcome.
    pub secrets: Arc<BTreeMap<String, Result<String, String>>>,
    /// How much kv state the tenant may keep; unlimited if unset.
    pub kv_quota: Option<KvQuota>,
    /// What the run may reach over HTTP; nothing if unset.
    pub network: Option<RunNetwork>,
    /// The kv this run reads and writes instead of the runtime's (the
    /// scheduler's [`HeldKv`](taskhost_model::effects::HeldKv), which holds
    /// the run's writes until its result is saved).
    pub kv: Option<RunKv>,
    /// A workflow's recorded steps and where new ones are recorded (none:
    /// no steps yet, and new ones are kept nowhere).
    pub workflow: Option<RunWorkflow>,
}

/// A run's steps (see [`RunRequest::workflow`]).
#[derive(Clone)]
pub struct RunWorkflow {
    pub steps: Vec<StepRecord>,
    pub sink: Arc<dyn StepSink>,
    /// The node's clock (step times, sleeps).
    pub clock: SharedClock,
    /// Events sent to the execution, not taken yet.
    pub inbox: Vec<taskhost_model::event::Event>,
    /// What the execution waited for when this run began.
    pub waiting: Option<Wait>,
    /// The node's workflow bounds.
    pub bounds: taskhost_model::workflow::WorkflowBounds,
}

impl std::fmt::Debug for RunWorkflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RunWorkflow({} steps)", self.steps.len())
    }
}

/// A run's own kv (see [`RunRequest::kv`]).
#[derive(Clone)]
pub struct RunKv(pub Arc<dyn KvStore>);

impl std::fmt::Debug for RunKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunKv")
    }
}

impl RunRequest {
    /// A request with default limits, no config, and the `local` namespace.
    pub fn new(input: impl Into<Vec<u8>>) -> Self {
        RunRequest {
            execution_id: "local".into(),
            schedule_id: None,
            attempt: 1,
            scheduled_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            input: input.into(),
            limits: Limits::default(),
            config: Arc::default(),
            namespace: KvNamespace::new("local", "local"),
            secrets: Arc::default(),
            kv_quota: None,
            network: None,
            kv: None,
            workflow: None,
        }
    }
}

/// The error a run traps with at its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the run took longer than its timeout")]
struct TimedOut;

pub(crate) async fn execute(
    engine: &Engine,
    pre: &TaskPre<RunState>,
    kv: &Arc<dyn KvStore>,
    config: &RuntimeConfig,
    request: RunRequest,
) -> Outcome {
    let started = Instant::now();
    let limits = request.limits;
    let secrets = request.secrets.clone();
    let deadline = started + limits.timeout;
    let invocation = Invocation {
        execution_id: request.execution_id.clone(),
        schedule_id: request.schedule_id.clone(),
        attempt: request.attempt,
        scheduled_at_ms: request.scheduled_at_ms,
        input: request.input.clone(),
    };
    let mut store = sandbox(engine, kv, config, request, deadline);
    let call = async {
        let task = pre.instantiate_async(&mut store).await?;
        task.call_run(&mut store, &invocation).await
    };
    let result = tokio::time::timeout(limits.timeout + BACKSTOP_GRACE, call)
        .await
        .unwrap_or_else(|_| Err(wasmtime::Error::new(TimedOut)));

    let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let state = store.into_data();
    let (suspended_until, waiting) = suspended(&result);
    let (status, output, error) = classify(result, &state, &limits);
    let (http, http_unrecorded) = state.hooks.records.take();
    let mut outcome = Outcome {
        status,
        output,
        error,
        fuel_used,
        peak_memory_bytes: state.limiter.peak as u64,
        duration_us,
        logs_truncated: state.logs.dropped > 0,
        logs: state.logs.lines,
        stdout: state.stdout.text(),
        stderr: state.stderr.text(),
        progress: state.progress,
        http,
        http_unrecorded,
        suspended_until,
        waiting,
    };
    let values: Vec<(String, String)> = secrets
        .iter()
        .filter_map(|(name, value)| Some((name.clone(), value.as_ref().ok()?.clone())))
        .collect();
    if let Some(mut scrubber) = taskhost_model::secrets::Scrubber::new(&values) {
        outcome.scrub(&mut scrubber);
    }
    bounds::enforce(&mut outcome, &limits);
    outcome
}

/// A fresh store for one run, under its limits: memory, fuel (handed out in
/// slices), host calls charged, and the deadline checked at every epoch.
fn sandbox(
    engine: &Engine,
    kv: &Arc<dyn KvStore>,
    config: &RuntimeConfig,
    request: RunRequest,
    deadline: Instant,
) -> Store<RunState> {
    let limits = request.limits;
    let (steps, sink, clock) = match request.workflow {
        Some(w) => {
            let steps = StepLog::new(w.steps, request.attempt)
                .with_events(w.inbox, w.waiting)
                .with_bounds(w.bounds);
            (steps, w.sink, w.clock)
        }
        None => {
            let clock: SharedClock = Arc::new(taskhost_model::clock::SystemClock);
            let steps = StepLog::new(Vec::new(), request.attempt);
            (steps, Arc::new(NoSink) as Arc<dyn StepSink>, clock)
        }
    };
    let mut store = Store::new(
        engine,
        RunState::new(RunStateInit {
            memory_bytes: limits.memory_bytes.min(config.max_memory_bytes),
            log_bytes: limits.log_bytes,
            config: request.config,
            kv: kv.clone(),
            namespace: request.namespace,
            kv_quota: request.kv_quota,
            secrets: request.secrets,
            hooks: HttpHooks::new(request.network, limits, deadline),
            steps,
            sink,
            clock,
        }),
    );
    store.limiter(|state| &mut state.limiter);
    store.call_hook(charge_host_calls);
    // Fuel is always enabled on our engine, so these cannot fail. Handing
    // fuel to the guest in slices makes it report what it burned at each
    // slice's end; without that, a run stopped at its deadline (by the epoch
    // callback) would report stale fuel.
    let _ = store.set_fuel(limits.fuel);
    let _ = store.fuel_async_yield_interval(Some(FUEL_SLICE));
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(wasmtime::Error::new(TimedOut))
        } else {
            // Yield to the executor at every tick so busy runs share threads.
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.set_epoch_deadline(1);
    store
}

/// Charges every call into the host [`HOST_CALL_FUEL`], and what our host
/// functions charged per byte, when it returns. A run without the fuel to pay
/// ends `out_of_fuel`.
fn charge_host_calls(
    mut ctx: wasmtime::StoreContextMut<'_, RunState>,
    hook: wasmtime::CallHook,
) -> wasmtime::Result<()> {
    if !matches!(hook, wasmtime::CallHook::ReturningFromHost) {
        return Ok(());
    }
    let cost = HOST_CALL_FUEL.saturating_add(std::mem::take(&mut ctx.data_mut().fuel_debt));
    let left = ctx.get_fuel()?;
    if left < cost {
        ctx.set_fuel(0)?;
        return Err(Trap::OutOfFuel.into());
    }
    ctx.set_fuel(left - cost)
}

type Classified = (Status, Option<Vec<u8>>, Option<RunError>);

/// When a run that ended suspended is due again, and what it waits for.
fn suspended(
    result: &wasmtime::Result<Result<Vec<u8>, TaskError>>,
) -> (Option<chrono::DateTime<chrono::Utc>>, Option<Wait>) {
    let Err(error) = result else {
        return (None, None);
    };
    match error.downcast_ref::<Suspend>() {
        Some(s) => (
            chrono::DateTime::from_timestamp_millis(s.until),
            s.waiting.clone(),
        ),
        None => (None, None),
    }
}

fn classify(
    result: wasmtime::Result<Result<Vec<u8>, TaskError>>,
    state: &RunState,
    limits: &Limits,
) -> Classified {
    let fail = |status, message: String, retryable| {
        (
            status,
            None,
            Some(RunError {
                message,
                retryable,
                backtrace: None,
            }),
        )
    };
    match result {
        Ok(Ok(output)) if output.len() as u64 > limits.output_bytes => fail(
            Status::OutputTooLarge,
            format!(
                "the plugin returned {} bytes of output; the limit is {} bytes",
                output.len(),
                limits.output_bytes
            ),
            false,
        ),
        Ok(Ok(output)) => (Status::Succeeded, Some(output), None),
        Ok(Err(TaskError::Retryable(message))) => fail(Status::Failed, message, true),
        Ok(Err(TaskError::Fatal(message))) => fail(Status::Failed, message, false),
        Err(error) => classify_trap(&error, state, limits),
    }
}

fn classify_trap(error: &wasmtime::Error, state: &RunState, limits: &Limits) -> Classified {
    let (status, message, retryable) = match limit_hit(error, state, limits) {
        Some(hit) => hit,
        None => trap_kind(error, state, limits),
    };
    let backtrace = error.downcast_ref::<WasmBacktrace>().map(|bt| {
        let mut text = bt.to_string();
        if text.len() > MAX_BACKTRACE_BYTES {
            let cut = text.floor_char_boundary(MAX_BACKTRACE_BYTES);
            text.truncate(cut);
            text.push_str("\n…");
        }
        text
    });
    let error = RunError {
        message,
        retryable,
        backtrace,
    };
    (status, None, Some(error))
}

/// A run's status, message and whether trying again may help.
type Ended = (Status, String, bool);

/// Which of the run's limits stopped it, if one did: output, memory, time.
fn limit_hit(error: &wasmtime::Error, state: &RunState, limits: &Limits) -> Option<Ended> {
    if let Some(overflow) = error.downcast_ref::<CaptureOverflow>() {
        return Some((Status::OutputTooLarge, overflow.to_string(), false));
    }
    if state.stdout.overflowed() || state.stderr.overflowed() {
        let stream = if state.stdout.overflowed() {
            "stdout"
        } else {
            "stderr"
        };
        let message = format!(
            "the plugin wrote more than {} bytes to {stream}",
            limits.log_bytes
        );
        return Some((Status::OutputTooLarge, message, false));
    }
    if let Some(e) = error.downcast_ref::<MemoryLimitExceeded>() {
        return Some((Status::MemoryLimit, e.to_string(), false));
    }
    if state.limiter.exceeded {
        let limit = limits.memory_bytes;
        let message = format!("the plugin exceeded its memory limit of {limit} bytes");
        return Some((Status::MemoryLimit, message, false));
    }
    if error.is::<TimedOut>() {
        let timeout = taskhost_model::time::human(limits.timeout);
        let message = format!("the run took longer than its timeout of {timeout}");
        return Some((Status::TimedOut, message, true));
    }
    None
}

/// How a run that hit no limit stopped: an exit, fuel, a stack overflow,
/// a panic or another trap.
fn trap_kind(error: &wasmtime::Error, state: &RunState, limits: &Limits) -> Ended {
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        // `run` returns its result; a plugin that exits (CPython's
        // `sys.exit`, C's `exit`) has none, and exiting again won't change that.
        let message = format!(
            "the plugin called exit({}) instead of returning from `run`",
            exit.0
        );
        return (Status::Failed, message, false);
    }
    if let Some(at) = error.downcast_ref::<Suspend>() {
        return (Status::Suspended, at.to_string(), false);
    }
    if let Some(step) = error.downcast_ref::<StepError>() {
        // A lost record (its node lost the store) may be better on another try.
        let retryable = matches!(step, StepError::NotRecorded { .. });
        return (Status::Failed, step.to_string(), retryable);
    }
    let Some(trap) = error.downcast_ref::<Trap>() else {
        return (Status::Trapped, format!("{error:#}"), true);
    };
    match trap {
        Trap::OutOfFuel => {
            let message = format!("the run used all of its fuel ({} units)", limits.fuel);
            (Status::OutOfFuel, message, false)
        }
        Trap::StackOverflow => {
            let message = "stack overflow: the plugin recursed too deeply".to_owned();
            (Status::Trapped, message, false)
        }
        other => match panic_message(&state.stderr.text()) {
            Some(panic) => (
                Status::Trapped,
                format!("the plugin panicked: {panic}"),
                true,
            ),
            None => (
                Status::Trapped,
                format!("the plugin trapped: {other}"),
                true,
            ),
        },
    }
}

/// Finds the message of a Rust panic in a plugin's stderr, e.g.
/// `thread '<unnamed>' panicked at src/lib.rs:5:5:\nboom` → `boom (at src/lib.rs:5:5)`.
fn panic_message(stderr: &str) -> Option<String> {
    const MARK: &str = "panicked at ";
    let rest = &stderr[stderr.rfind(MARK)? + MARK.len()..];
    let (location, after) = rest.split_once('\n')?;
    let message: Vec<&str> = after
        .lines()
        .take_while(|l| !l.starts_with("note: "))
        .collect();
    let message = message.join("\n");
    Some(format!(
        "{} (at {})",
        message.trim(),
        location.trim_end_matches(':')
    ))
}

#[cfg(test)]
mod tests {
    use super::panic_message;

    #[test]
    fn finds_panic_messages() {
        let stderr = "thread '<unnamed>' panicked at src/lib.rs:5:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("boom (at src/lib.rs:5:5)")
        );
        assert_eq!(panic_message("no panic here"), None);
    }
}
