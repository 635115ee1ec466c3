//! The host side of the plugin contract: bindings for `wit/task.wit`, the
//! per-run store data, and the `host` interface a plugin imports.

use super::capture::CapturePipe;
use super::kv::{self, KvNamespace, KvStore};
use super::limits::MemoryLimiter;
use super::outcome::{LogLevel, LogLine, Progress};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "task",
    imports: { default: async },
    exports: { default: async },
});

use self::taskhost::plugin::{host, types};

/// Everything one run's `wasmtime::Store` holds. A fresh one per run.
pub(crate) struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stdout: CapturePipe,
    pub(crate) stderr: CapturePipe,
    pub(crate) logs: LogBuffer,
    pub(crate) progress: Option<Progress>,
    config: Arc<BTreeMap<String, String>>,
    kv: Arc<dyn KvStore>,
    namespace: KvNamespace,
}

pub(crate) struct RunStateInit {
    pub memory_bytes: u64,
    pub log_bytes: u64,
    pub config: Arc<BTreeMap<String, String>>,
    pub kv: Arc<dyn KvStore>,
    pub namespace: KvNamespace,
}

impl RunState {
    pub(crate) fn new(init: RunStateInit) -> Self {
        let stdout = CapturePipe::new("stdout", init.log_bytes);
        let stderr = CapturePipe::new("stderr", init.log_bytes);
        // No preopened directories, no network, no environment, no arguments:
        // only clocks, randomness and the captured stdout/stderr.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        RunState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(init.memory_bytes),
            stdout,
            stderr,
            logs: LogBuffer::new(init.log_bytes),
            progress: None,
            config: init.config,
            kv: init.kv,
            namespace: init.namespace,
        }
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

/// Structured log lines of a run, bounded in bytes; lines past the bound are
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
        let size = message.len() as u64;
        if self.used + size > self.limit {
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
        self.logs.push(level.into(), message);
    }

    async fn kv_get(&mut self, key: String) -> Result<Option<Vec<u8>>, String> {
        kv::check(&key, None).map_err(|e| e.to_string())?;
        self.kv
            .kv_get(&self.namespace, &key)
            .await
            .map_err(|e| e.to_string())
    }

    async fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        kv::check(&key, Some(&value)).map_err(|e| e.to_string())?;
        self.kv
            .kv_set(&self.namespace, &key, &value)
            .await
            .map_err(|e| e.to_string())
    }

    async fn kv_delete(&mut self, key: String) -> Result<bool, String> {
        kv::check(&key, None).map_err(|e| e.to_string())?;
        self.kv
            .kv_delete(&self.namespace, &key)
            .await
            .map_err(|e| e.to_string())
    }

    async fn config_get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    async fn progress(&mut self, percent: u8, note: Option<String>) {
        self.progress = Some(Progress {
            percent: percent.min(100),
            note,
        });
    }
}
