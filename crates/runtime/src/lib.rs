//! The sandboxed plugin runtime: validate, compile, cache and run plugins
//! under hard limits.
//!
//! ```text
//!  wasm bytes ──prepare()──▶ header check ─▶ artifact cache ─(miss)─▶ compile
//!                                                 │
//!                             check imports/exports, link ─▶ Plugin (InstancePre)
//!  Plugin + RunRequest ──run()──▶ fresh Store ─▶ instantiate ─▶ call `run` ─▶ Outcome
//! ```
//!
//! One [`Runtime`] per process owns the wasmtime `Engine`, the `Linker` with
//! the host's imports, the caches, and a semaphore sized to the instance pool so
//! that runs beyond its capacity wait instead of failing. Module map:
//!
//! - [`engine`]: engine configuration and the epoch ticker thread;
//! - [`validate`]: what a plugin may import and must export;
//! - [`admission`]: what makes a plugin costly to compile, checked first; compile slots;
//! - [`cache`]: precompiled artifacts keyed by wasm sha256 + engine fingerprint;
//! - [`host`]: bindings for `wit/task.wit` and the host interface;
//! - [`http`]: outbound HTTP (`wasi:http`) under the run's grant and limits;
//! - [`limiter`], [`capture`]: the memory limit and bounded stdout/stderr;
//! - [`bounds`]: caps on everything a run produces, and the fuel host calls cost;
//! - [`run`]: one run from instantiation to [`Outcome`].
//!
//! The records a run takes and gives (limits, outcome) and the key-value
//! trait the store implements are `taskhost_model`'s: the runtime knows no
//! store and no HTTP server.

mod admission;
mod bounds;
mod cache;
mod capture;
pub mod compile_queue;
mod engine;
mod host;
mod http;
mod limiter;
mod run;
mod upload;
mod validate;

pub use admission::CompileBudget;
pub use bounds::{
    HOST_BYTE_FUEL, HOST_CALL_FUEL, LOG_LINE_OVERHEAD, MAX_ERROR_BYTES, MAX_HTTP_RECORDS,
    MAX_LOG_LINES, MAX_NOTE_BYTES, MAX_STORED_OUTCOME_BYTES, TASKHOST_CALL_FUEL,
};
pub use cache::{ArtifactCache, DEFAULT_ARTIFACT_BYTES, DirArtifacts, MemoryArtifacts, sha256_hex};
pub use http::RunNetwork;
pub use run::{RunKv, RunRequest, RunWorkflow};
pub use taskhost_model::kv::{
    KvError, KvNamespace, KvQuota, KvStore, MAX_KEY_BYTES, MAX_VALUE_BYTES, MemoryKv,
};
pub use taskhost_model::{
    HttpRecord, Limits, LogLevel, LogLine, Outcome, Progress, RunError, Status,
};
pub use upload::UploadError;
pub use validate::{InvalidPlugin, WORLD};

use host::{RunState, TaskPre};
use lru::LruCache;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

/// Node-wide runtime settings. Per-run limits are in [`Limits`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Runs that may be instantiated at once (the size of the instance pool);
    /// further runs wait for a slot.
    pub max_concurrent_runs: u32,
    /// The largest memory limit any run may have (each pool slot reserves it).
    pub max_memory_bytes: u64,
    /// WebAssembly stack size; deeper recursion traps with a stack overflow.
    pub max_wasm_stack: usize,
    /// Epoch tick: the granularity of timeouts and of yielding between runs.
    pub epoch_tick: Duration,
    /// Bytes of compiled plugins kept ready to instantiate (by the size of
    /// their compiled code); the least recently used go first.
    pub instance_cache_bytes: u64,
    /// What one plugin may ask of the compiler, and compilations at once.
    pub compile: admission::CompileBudget,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_concurrent_runs: 1000,
            max_memory_bytes: 1 << 30,
            max_wasm_stack: 512 << 10,
            epoch_tick: Duration::from_millis(10),
            instance_cache_bytes: 512 << 20,
            compile: admission::CompileBudget::default(),
        }
    }
}

/// Setting up the runtime failed (not a plugin's fault).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("could not create the WebAssembly engine: {0}")]
    Engine(String),
    #[error("could not start the epoch ticker thread: {0}")]
    Ticker(#[from] std::io::Error),
}

/// A validated, compiled plugin, ready to instantiate in microseconds.
/// Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    sha256: String,
    /// Size of its compiled code, what it costs the cache.
    bytes: u64,
    pre: TaskPre<RunState>,
}

impl Plugin {
    /// Hex sha256 of the plugin's wasm bytes.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }
}

/// How a plugin was made ready, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// It was already in the in-memory instance cache.
    Cached,
    /// Its precompiled artifact was loaded.
    Loaded,
    /// It was compiled now.
    Compiled,
}

/// The plugin runtime of one process. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<RunState>,
    fingerprint: String,
    artifacts: Arc<dyn ArtifactCache>,
    plugins: Mutex<PluginCache>,
    kv: Arc<dyn KvStore>,
    slots: Arc<Semaphore>,
    compiles: admission::CompileSlots,
    /// Uploads' compiles, admitted fairly between tenants.
    uploads: compile_queue::CompileQueue,
    config: RuntimeConfig,
    _ticker: engine::EpochTicker,
}

impl Runtime {
    /// A runtime with in-memory artifact and kv stores.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        Self::with_stores(
            config,
            Arc::new(MemoryArtifacts::default()),
            Arc::new(MemoryKv::default()),
        )
    }

    /// A runtime whose compiled artifacts and plugin kv state live in the given stores.
    pub fn with_stores(
        config: RuntimeConfig,
        artifacts: Arc<dyn ArtifactCache>,
        kv: Arc<dyn KvStore>,
    ) -> Result<Self, RuntimeError> {
        let engine = engine::build(&config).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        let link = |l: &mut Linker<RunState>| -> wasmtime::Result<()> {
            wasmtime_wasi::p2::add_to_linker_async(l)?;
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(l)?;
            host::taskhost::plugin::types::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
                l,
                |s| s,
            )?;
            host::taskhost::plugin::host::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
                l,
                |s| s,
            )
        };
        link(&mut linker).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let ticker = engine::EpochTicker::start(engine.clone(), config.epoch_tick)?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                fingerprint: cache::engine_fingerprint(&engine),
                engine,
                linker,
                artifacts,
                plugins: Mutex::new(PluginCache::new(config.instance_cache_bytes)),
                kv,
                slots: Arc::new(Semaphore::new(config.max_concurrent_runs.max(1) as usize)),
                compiles: admission::CompileSlots::new(config.compile.concurrent),
                uploads: compile_queue::CompileQueue::new(compile_queue::CompileFairness::new(
                    config.compile.concurrent,
                )),
                config,
                _ticker: ticker,
            }),
        })
    }

    /// The node-wide settings this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Validates and compiles (or loads) a plugin, ready to run.
    ///
    /// CPU-bound on a cache miss (compiling takes ~100s of ms): call it from a
    /// blocking thread in async code.
    pub fn prepare(&self, wasm: &[u8]) -> Result<Plugin, InvalidPlugin> {
        self.prepare_traced(wasm).map(|(plugin, _)| plugin)
    }

    /// Like [`Runtime::prepare`], and says whether it compiled, loaded or hit the cache.
    pub fn prepare_traced(&self, wasm: &[u8]) -> Result<(Plugin, Prepared), InvalidPlugin> {
        self.prepare_with(wasm, true)
    }

    fn prepare_with(&self, wasm: &[u8], reuse: bool) -> Result<(Plugin, Prepared), InvalidPlugin> {
        let sha256 = sha256_hex(wasm);
        if reuse && let Some(plugin) = self.plugins().get(&sha256) {
            return Ok((plugin.clone(), Prepared::Cached));
        }
        validate::check_header(wasm)?;
        admission::admit(wasm, &self.inner.config.compile)?;
        let (component, how, bytes, artifact) = self.load_or_compile(&sha256, wasm, reuse)?;
        validate::check_component(&self.inner.engine, &component)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .and_then(TaskPre::new)
            .map_err(|e| InvalidPlugin::Mismatch(format!("{e:#}")))?;
        // Only an accepted plugin's compiled code is kept.
        if let Some((key, artifact)) = artifact {
            self.inner.artifacts.put(&key, &artifact);
        }
        let plugin = Plugin {
            inner: Arc::new(PluginInner {
                sha256: sha256.clone(),
                bytes,
                pre,
            }),
        };
        self.plugins().put(sha256, plugin.clone());
        Ok((plugin, how))
    }

    fn plugins(&self) -> std::sync::MutexGuard<'_, PluginCache> {
        self.inner.plugins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The prepared plugin with this wasm hash, if it is in the cache.
    pub fn cached(&self, sha256: &str) -> Option<Plugin> {
        self.plugins().get(sha256)
    }

    /// Drops a plugin from the cache (it was deleted).
    pub fn evict(&self, sha256: &str) {
        self.plugins().remove(sha256);
    }

    /// Compilations in progress, and the most there were at once.
    pub fn compile_usage(&self) -> (usize, usize) {
        self.inner.compiles.usage()
    }

    /// Bytes of compiled code in the cache, and how many plugins.
    pub fn cache_usage(&self) -> (u64, usize) {
        let cache = self.plugins();
        (cache.bytes, cache.lru.len())
    }

    /// The component, how it was made ready, its size, and — when it was
    /// compiled here — the artifact to keep once it is accepted.
    #[allow(clippy::type_complexity)]
    fn load_or_compile(
        &self,
        sha256: &str,
        wasm: &[u8],
        reuse: bool,
    ) -> Result<(Component, Prepared, u64, Option<(String, Vec<u8>)>), InvalidPlugin> {
        let key = format!("{sha256}-{}", self.inner.fingerprint);
        if reuse && let Some(artifact) = self.inner.artifacts.get(&key) {
            // SAFETY: the key carries this engine's fingerprint, and artifact
            // caches hold only what `compile` below wrote (see `cache`).
            match unsafe { Component::deserialize(&self.inner.engine, &artifact) } {
                Ok(component) => {
                    return Ok((component, Prepared::Loaded, artifact.len() as u64, None));
                }
                Err(e) => tracing::warn!(%key, error = %e, "discarding an unloadable artifact"),
            }
        }
        let component = {
            let _slot = self.inner.compiles.acquire();
            Component::new(&self.inner.engine, wasm)
                .map_err(|e| InvalidPlugin::Malformed(format!("{e:#}")))?
        };
        match component.serialize() {
            Ok(artifact) => {
                let bytes = artifact.len() as u64;
                Ok((component, Prepared::Compiled, bytes, Some((key, artifact))))
            }
            Err(e) => {
                tracing::warn!(%key, error = %e, "could not serialize a compiled plugin");
                let bytes = wasm.len() as u64;
                Ok((component, Prepared::Compiled, bytes, None))
            }
        }
    }

    /// Runs a prepared plugin once, under `request.limits`. Never fails: every
    /// way a run can end is an [`Outcome`]. Waits for a free instance slot first.
    pub async fn run(&self, plugin: &Plugin, request: RunRequest) -> Outcome {
        let Ok(_slot) = self.inner.slots.clone().acquire_owned().await else {
            return Outcome::not_run(Status::Trapped, "the runtime is shutting down");
        };
        let kv = request
            .kv
            .as_ref()
            .map_or_else(|| self.inner.kv.clone(), |kv| kv.0.clone());
        run::execute(
            &self.inner.engine,
            &plugin.inner.pre,
            &kv,
            &self.inner.config,
            request,
        )
        .await
    }

    /// Prepares and runs in one step; an invalid plugin is an `invalid_plugin` outcome.
    pub async fn run_wasm(&self, wasm: &[u8], request: RunRequest) -> Outcome {
        let started = Instant::now();
        match self.prepare(wasm) {
            Ok(plugin) => self.run(&plugin, request).await,
            Err(e) => {
                let mut outcome = Outcome::not_run(Status::InvalidPlugin, e.to_string());
                outcome.duration_us = started.elapsed().as_micros() as u64;
                outcome
            }
        }
    }
}

/// Prepared plugins by wasm hash, least recently used first out, bounded by
/// the bytes of their compiled code.
struct PluginCache {
    lru: LruCache<String, Plugin>,
    bytes: u64,
    max_bytes: u64,
}

impl PluginCache {
    fn new(max_bytes: u64) -> Self {
        PluginCache {
            lru: LruCache::unbounded(),
            bytes: 0,
            max_bytes,
        }
    }

    fn get(&mut self, sha256: &str) -> Option<Plugin> {
        self.lru.get(sha256).cloned()
    }

    fn put(&mut self, sha256: String, plugin: Plugin) {
        self.bytes += plugin.inner.bytes;
        if let Some(old) = self.lru.put(sha256, plugin) {
            self.bytes -= old.inner.bytes;
        }
        // Always keep the newest, even if it alone is over the bound.
        while self.bytes > self.max_bytes && self.lru.len() > 1 {
            match self.lru.pop_lru() {
                Some((_, old)) => self.bytes -= old.inner.bytes,
                None => break,
            }
        }
    }

    fn remove(&mut self, sha256: &str) {
        if let Some(old) = self.lru.pop(sha256) {
            self.bytes -= old.inner.bytes;
        }
    }
}
