//! The host side of the plugin contract: bindings for `wit/task.wit`, the
//! per-run store data, and the `host` interface a plugin imports.

use super::bounds::{
    self, HOST_BYTE_FUEL, LOG_LINE_OVERHEAD, MAX_LOG_LINES, MAX_NOTE_BYTES, TASKHOST_CALL_FUEL,
};
use super::capture::CapturePipe;
use super::http::{HttpHooks, MAX_FIELDS_BYTES, MAX_RESOURCES};
use super::limiter::MemoryLimiter;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use taskhost_model::clock::SharedClock;
use taskhost_model::kv::{self, KvNamespace, KvQuota, KvStore};
use taskhost_model::outcome::{LogLevel, LogLine, Progress};
use taskhost_model::workflow::children::{JOIN_RECHECK, MAX_SPAWN_BYTES};
use taskhost_model::workflow::{
    ChildOutcome, ChildRun, Sleep, Spawn, SpawnError, StepError, StepLog, StepRecord, StepSink,
    Wait, Waited,
};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

wasmtime::component::bindgen!({
    path: "../../sdk/wit",
    world: "task",
    // A workflow's step calls may end the run: a replay that departs from
    // the record, or a durable sleep.
    imports: {
        "taskhost:plugin/host.step-get": async | trappable,
        "taskhost:plugin/host.step-done": async | trappable,
        "taskhost:plugin/host.sleep-until": async | trappable,
        "taskhost:plugin/host.sleep": async | trappable,
        "taskhost:plugin/host.wait-for-event": async | trappable,
        "taskhost:plugin/host.spawn": async | trappable,
        "taskhost:plugin/host.join": async | trappable,
        default: async,
    },
    exports: { default: async },
    // The world imports `wasi:http/outgoing-handler`; these come from
    // wasmtime-wasi(-http), linked by `Runtime::with_stores`.
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
});

use self::taskhost::plugin::{host, types};

/// Everything one run's `wasmtime::Store` holds. A fresh one per run.
pub(crate) struct RunState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) hooks: HttpHooks,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stdout: CapturePipe,
    pub(crate) stderr: CapturePipe,
    pub(crate) logs: LogBuffer,
    pub(crate) progress: Option<Progress>,
    config: Arc<BTreeMap<String, String>>,
    kv: Arc<dyn KvStore>,
    namespace: KvNamespace,
    kv_quota: Option<KvQuota>,
    secrets: Arc<BTreeMap<String, Result<String, String>>>,
    /// The execution's steps (a workflow's) and where they are recorded.
    steps: StepLog,
    sink: Arc<dyn StepSink>,
    /// The node's clock: step times and sleeps' wake times.
    clock: SharedClock,
    /// Fuel our host functions charged that the call hook has not taken yet.
    pub(crate) fuel_debt: u64,
}

/// The trap that ends a run suspended: in a durable sleep until this Unix
/// ms, or waiting for an event (until at most then).
#[derive(Debug, thiserror::Error)]
#[error("suspended until {until} (a durable sleep or a wait for an event)")]
pub(crate) struct Suspend {
    pub until: i64,
    pub waiting: Option<Wait>,
}

pub(crate) struct RunStateInit {
    pub memory_bytes: u64,
    pub log_bytes: u64,
    pub config: Arc<BTreeMap<String, String>>,
    pub kv: Arc<dyn KvStore>,
    pub namespace: KvNamespace,
    pub kv_quota: Option<KvQuota>,
    pub secrets: Arc<BTreeMap<String, Result<String, String>>>,
    pub hooks: HttpHooks,
    pub steps: StepLog,
    pub sink: Arc<dyn StepSink>,
    pub clock: SharedClock,
}

impl RunState {
    pub(crate) fn new(init: RunStateInit) -> Self {
        let stdout = CapturePipe::new("stdout", init.log_bytes);
        let stderr = CapturePipe::new("stderr", init.log_bytes);
        // No preopened directories, no sockets, no environment, no arguments:
        // only clocks, randomness and the captured stdout/stderr. A plugin
        // may import `wasi:filesystem` and `wasi:sockets` (interpreters do),
        // but no path resolves without a preopen, and every socket operation
        // is refused: TCP, UDP and name lookups are off, and the default
        // address check admits no address. Outbound HTTP goes through
        // `wasi:http` and the run's grant (see `http`).
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_FIELDS_BYTES);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        RunState {
            wasi,
            http,
            hooks: init.hooks,
            table,
            limiter: MemoryLimiter::new(init.memory_bytes),
            stdout,
            stderr,
            logs: LogBuffer::new(init.log_bytes),
            progress: None,
            config: init.config,
            kv: init.kv,
            namespace: init.namespace,
            kv_quota: init.kv_quota,
            secrets: init.secrets,
            steps: init.steps,
            sink: init.sink,
            clock: init.clock,
            fuel_debt: 0,
        }
    }

    /// Charges fuel for a call of the `host` interface given `bytes`.
    fn charge(&mut self, bytes: usize) {
        let cost = TASKHOST_CALL_FUEL.saturating_add((bytes as u64).saturating_mul(HOST_BYTE_FUEL));
        self.fuel_debt = self.fuel_debt.saturating_add(cost);
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Structured log lines of a run, bounded in bytes (each line's message as
/// stored, plus a fixed overhead) and in lines; lines past either bound are
/// dropped and counted.
pub(crate) struct LogBuffer {
    started: Instant,
    limit: u64,
    used: u64,
    pub(crate) lines: Vec<LogLine>,
    pub(crate) dropped: u64,
}

impl LogBuffer {
    fn new(limit: u64) -> Self {
        LogBuffer {
            started: Instant::now(),
            limit,
            used: 0,
            lines: Vec::new(),
            dropped: 0,
        }
    }

    fn push(&mut self, level: LogLevel, message: String) {
        let size = bounds::escaped_len(&message) as u64 + LOG_LINE_OVERHEAD;
        if self.lines.len() >= MAX_LOG_LINES || self.used + size > self.limit {
            self.dropped += 1;
            return;
        }
        self.used += size;
        let at_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.lines.push(LogLine {
            at_ms,
            level,
            message,
        });
    }
}

impl From<types::LogLevel> for LogLevel {
    fn from(level: types::LogLevel) -> Self {
        match level {
            types::LogLevel::Trace => LogLevel::Trace,
            types::LogLevel::Debug => LogLevel::Debug,
            types::LogLevel::Info => LogLevel::Info,
            types::LogLevel::Warn => LogLevel::Warn,
            types::LogLevel::Error => LogLevel::Error,
        }
    }
}

impl types::Host for RunState {}

impl host::Host for RunState {
    async fn log(&mut self, level: types::LogLevel, message: String) {
        self.charge(message.len());
        self.logs.push(level.into(), message);
    }

    async fn kv_get(&mut self, key: String) -> Result<Option<Vec<u8>>, String> {
        self.charge(key.len());
        kv::check(&key, None).map_err(|e| e.to_string())?;
        self.kv
            .kv_get(&self.namespace, &key)
            .await
            .map_err(|e| e.to_string())
    }

    async fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        self.charge(key.len() + value.len());
        kv::check(&key, Some(&value)).map_err(|e| e.to_string())?;
        self.kv
            .kv_set(&self.namespace, &key, &value, self.kv_quota)
            .await
            .map_err(|e| e.to_string())
    }

    async fn kv_delete(&mut self, key: String) -> Result<bool, String> {
        self.charge(key.len());
        kv::check(&key, None).map_err(|e| e.to_string())?;
        self.kv
            .kv_delete(&self.namespace, &key)
            .await
            .map_err(|e| e.to_string())
    }

    async fn config_get(&mut self, key: String) -> Option<String> {
        self.charge(key.len());
        self.config.get(&key).cloned()
    }

    async fn secret_get(&mut self, name: String) -> Result<String, String> {
        self.charge(name.len());
        match self.secrets.get(&name) {
            Some(value) => value.clone(),
            None => Err(format!(
                "secret {name:?} is not granted to this run; name it in the schedule's or the run's `secrets`"
            )),
        }
    }

    async fn progress(&mut self, percent: u8, note: Option<String>) {
        self.charge(note.as_ref().map_or(0, String::len));
        let note = note.map(|mut note| {
            bounds::truncate_escaped(&mut note, MAX_NOTE_BYTES);
            note
        });
        self.progress = Some(Progress {
            percent: percent.min(100),
            note,
        });
    }

    async fn step_get(&mut self, name: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.charge(name.len());
        let found = self.steps.get(&name).map_err(wasmtime::Error::new)?;
        if let Some(result) = &found {
            self.charge(result.len());
        }
        Ok(found.map(String::into_bytes))
    }

    async fn step_done(&mut self, name: String, result: Vec<u8>) -> wasmtime::Result<()> {
        self.charge(name.len() + result.len());
        let now = self.clock.now();
        let step = self
            .steps
            .done(&name, result, now)
            .map_err(wasmtime::Error::new)?;
        self.record(step).await
    }

    async fn sleep(&mut self, name: String, ms: u64) -> wasmtime::Result<()> {
        let ms = i64::try_from(ms).unwrap_or(i64::MAX);
        let at = self.clock.now().timestamp_millis().saturating_add(ms);
        self.sleep_until(name, at).await
    }

    async fn sleep_until(&mut self, name: String, at_ms: i64) -> wasmtime::Result<()> {
        self.charge(name.len());
        let now = self.clock.now();
        let (sleep, step) = self
            .steps
            .sleep(&name, at_ms, now)
            .map_err(wasmtime::Error::new)?;
        if let Some(step) = step {
            self.record(step).await?;
        }
        match sleep {
            Sleep::Over => Ok(()),
            Sleep::Until(at) => Err(wasmtime::Error::new(Suspend {
                until: at,
                waiting: None,
            })),
        }
    }

    async fn wait_for_event(
        &mut self,
        name: String,
        event: String,
        filter: String,
        timeout_ms: u64,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        self.charge(name.len() + event.len() + filter.len());
        let filter: serde_json::Value = serde_json::from_str(&filter)
            .map_err(|e| wasmtime::Error::new(StepError::BadFilter(format!("{name}: {e}"))))?;
        let timeout = i64::try_from(timeout_ms).unwrap_or(i64::MAX);
        let now = self.clock.now();
        let (waited, step) = self
            .steps
            .wait(&name, &event, filter, timeout, now)
            .map_err(wasmtime::Error::new)?;
        if let Some(step) = step {
            self.record(step).await?;
        }
        match waited {
            Waited::Result(result) if result == "null" => Ok(None),
            Waited::Result(result) => {
                self.charge(result.len());
                Ok(Some(result.into_bytes()))
            }
            Waited::Suspend(wait) => Err(wasmtime::Error::new(Suspend {
                until: wait.until.timestamp_millis(),
                waiting: Some(wait),
            })),
        }
    }

    async fn spawn(
        &mut self,
        name: String,
        children: Vec<types::ChildRun>,
    ) -> wasmtime::Result<Result<Vec<String>, String>> {
        let bytes: usize = children
            .iter()
            .map(|c| c.plugin.len() + c.input.len() + c.options.len())
            .sum();
        self.charge(name.len() + bytes);
        if bytes > MAX_SPAWN_BYTES {
            return Ok(Err(SpawnError::TooLarge(bytes).to_string()));
        }
        let position = match self.steps.spawn(&name, children.len())? {
            Spawn::Recorded(ids) => return Ok(Ok(ids)),
            Spawn::At(position) => position,
            Spawn::Refused(why) => return Ok(Err(why.to_string())),
        };
        let parsed: Result<Vec<ChildRun>, _> = children
            .into_iter()
            .enumerate()
            .map(|(i, c)| ChildRun::parse(i, c.plugin, &c.input, &c.options))
            .collect();
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(refused) => return Ok(Err(refused.to_string())),
        };
        let ids = match self.sink.spawn(position, &name, parsed).await {
            Ok(ids) => ids,
            Err(refused) => return Ok(Err(refused)),
        };
        let step = self.steps.spawned(&name, &ids, self.clock.now())?;
        self.record(step).await?;
        Ok(Ok(ids))
    }

    async fn join(&mut self, name: String, children: Vec<String>) -> wasmtime::Result<Vec<u8>> {
        self.charge(name.len() + children.iter().map(String::len).sum::<usize>());
        if let Some(result) = self.steps.join(&name, &children)? {
            self.charge(result.len());
            return Ok(result.into_bytes());
        }
        // First those still running when it last looked: while one of
        // them runs, the others need not be read.
        let before = self.steps.still_running(&name).map(<[String]>::to_vec);
        if let Some(before) = before {
            let running = still_running(&children_now(self.sink.clone(), &name, &before).await?);
            if !running.is_empty() {
                return Err(join_wait(name, running, self.clock.now()));
            }
        }
        let outcomes = children_now(self.sink.clone(), &name, &children).await?;
        let now = self.clock.now();
        let running = still_running(&outcomes);
        if !running.is_empty() {
            return Err(join_wait(name, running, now));
        }
        let step = self.steps.joined(&name, &outcomes, now)?;
        let result = step.result.clone().into_bytes();
        self.record(step).await?;
        self.charge(result.len());
        Ok(result)
    }
}

/// The ids of `outcomes` not ended.
fn still_running(outcomes: &[ChildOutcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|o| !o.ended())
        .map(|o| o.id.clone())
        .collect()
}

/// The trap that ends a join's run suspended, waiting for `running`.
fn join_wait(step: String, running: Vec<String>, now: DateTime<Utc>) -> wasmtime::Error {
    let until = taskhost_model::time::add_saturating(now, JOIN_RECHECK);
    wasmtime::Error::new(Suspend {
        until: until.timestamp_millis(),
        waiting: Some(Wait {
            step,
            event: String::new(),
            filter: serde_json::Value::Null,
            children: running,
            until,
        }),
    })
}

/// How children `ids` of join `name` stand now.
async fn children_now(
    sink: Arc<dyn StepSink>,
    name: &str,
    ids: &[String],
) -> wasmtime::Result<Vec<ChildOutcome>> {
    sink.outcomes(ids).await.map_err(|why| {
        wasmtime::Error::new(StepError::NotRecorded {
            name: name.to_owned(),
            why,
        })
    })
}

impl RunState {
    /// Writes a completed step through the sink; a failure ends the run.
    async fn record(&mut self, step: StepRecord) -> wasmtime::Result<()> {
        match self.sink.record(&step).await {
            Ok(()) => {
                self.steps.recorded(step);
                Ok(())
            }
            Err(why) => Err(wasmtime::Error::new(StepError::NotRecorded {
                name: step.name,
                why,
            })),
        }
    }
}
