//! Write [taskhost](https://example.invalid/taskhost) task plugins in Rust.
//!
//! A task is a plain function from a typed input to a typed output. The SDK
//! deserializes the run's input from JSON, calls your function with a
//! [`Context`] (logging, key-value state, config, progress), serializes what it
//! returns as JSON, and reports errors as retryable or fatal so the host knows
//! whether to try again.
//!
//! ```ignore
//! use taskhost_sdk::{export_task, Context, Result};
//!
//! #[derive(serde::Deserialize)]
//! struct Input { name: String }
//!
//! fn hello(ctx: &Context, input: Input) -> Result<String> {
//!     ctx.info(&format!("greeting {}", input.name));
//!     Ok(format!("Hello, {}!", input.name))
//! }
//!
//! export_task!(hello);
//! ```
//!
//! Build it as a `cdylib` for the `wasm32-wasip2` target and run it locally:
//!
//! ```text
//! cargo build --release --target wasm32-wasip2
//! taskhost run target/wasm32-wasip2/release/hello.wasm --input '{"name":"Ada"}'
//! ```
//!
//! # Outbound HTTP
//!
//! [`http`] is a small blocking client on `wasi:http`. A plugin reaches only
//! the hosts its schedule or run grants (`"network": {"allow": [...]}`);
//! anything else fails with an error saying why.
//!
//! ```ignore
//! let status: Status = taskhost_sdk::http::get("https://api.example.com/status")
//!     .header("authorization", &format!("Bearer {}", ctx.secret("API_TOKEN")?))
//!     .send()?
//!     .error_for_status()?
//!     .json()?;
//! ```
//!
//! # Workflows
//!
//! [`Context::step`] makes a piece of work durable: done once per execution,
//! its result recorded before the next step; [`Context::sleep`] waits for
//! minutes or days without holding a worker. A failed, crashed or woken run
//! replays the recorded steps and goes on from the first that is not.
//!
//! ```ignore
//! let order: Order = ctx.step("fetch", || fetch_order(&input.id))?;
//! ctx.sleep("cool-off", Duration::from_secs(3600));
//! let receipt: String = ctx.step("charge", || charge(&order))?;
//! ```
//!
//! # Errors
//!
//! [`Error::retryable`] failures are retried by the host according to the
//! schedule's retry policy; [`Error::fatal`] ones are not. The `?` operator turns
//! any `std::error::Error` into a retryable error (a transient failure is the safe
//! guess); use [`ResultExt::fatal`] to say otherwise. Input that does not
//! deserialize is a fatal error: retrying would not change it.
//!
//! # Panics
//!
//! A panic ends the run with the status `trapped`; the host reports the panic
//! message. Prefer returning an [`Error`].

mod children;
pub mod http;

pub use children::{Child, ChildOutcome};

// Lets the generated bindings name this crate the same way from inside and outside.
extern crate self as taskhost_sdk;

use serde::{Serialize, de::DeserializeOwned};
use std::fmt;

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use wit_bindgen;
}

#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated code
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "task",
        pub_export_macro: true,
        export_macro_name: "__export_task_world",
        default_bindings_module: "taskhost_sdk::__private::bindings",
        runtime_path: "taskhost_sdk::__private::wit_bindgen::rt",
        // The world's `wasi:http` import and what it uses (`wasi:io`,
        // `wasi:clocks`); a plugin that makes no request imports none of it.
        generate_all,
    });
}

use bindings::taskhost::plugin::host;
pub use bindings::taskhost::plugin::types::LogLevel;
use bindings::taskhost::plugin::types::{Invocation, TaskError};

/// The result type of a task function.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a task failed, and whether the host should try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A transient failure: the host retries per the schedule's retry policy.
    Retryable(String),
    /// A permanent failure: the host does not retry.
    Fatal(String),
}

impl Error {
    /// A failure that may succeed if tried again (a timeout, a busy dependency).
    pub fn retryable(message: impl fmt::Display) -> Self {
        Error::Retryable(message.to_string())
    }

    /// A failure that will not go away by retrying (bad input, a missing resource).
    pub fn fatal(message: impl fmt::Display) -> Self {
        Error::Fatal(message.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Retryable(m) => write!(f, "retryable: {m}"),
            Error::Fatal(m) => write!(f, "fatal: {m}"),
        }
    }
}

// Like anyhow, `Error` deliberately does not implement `std::error::Error`, so
// that every such error converts with `?`.
impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Self {
        Error::Retryable(error.to_string())
    }
}

/// Say how an error should be treated: `do_thing().fatal()?`.
pub trait ResultExt<T> {
    /// Map the error to [`Error::Fatal`].
    fn fatal(self) -> Result<T>;
    /// Map the error to [`Error::Retryable`].
    fn retryable(self) -> Result<T>;
}

impl<T, E: fmt::Display> ResultExt<T> for std::result::Result<T, E> {
    fn fatal(self) -> Result<T> {
        self.map_err(Error::fatal)
    }
    fn retryable(self) -> Result<T> {
        self.map_err(Error::retryable)
    }
}

/// What a task can see of its run and of the host.
pub struct Context {
    execution_id: String,
    schedule_id: Option<String>,
    attempt: u32,
    scheduled_at_ms: i64,
}

impl Context {
    /// Unique id of this execution (the same across retries).
    pub fn execution_id(&self) -> &str {
        &self.execution_id
    }

    /// The schedule that produced this run, if any.
    pub fn schedule_id(&self) -> Option<&str> {
        self.schedule_id.as_deref()
    }

    /// 1 on the first attempt, 2 on the first retry, and so on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When the run was due, in milliseconds since the Unix epoch (UTC).
    pub fn scheduled_at_ms(&self) -> i64 {
        self.scheduled_at_ms
    }

    /// Write a log line at `level`; the host stores it with the execution.
    pub fn log(&self, level: LogLevel, message: &str) {
        host::log(level, message);
    }

    /// Log at debug level.
    pub fn debug(&self, message: &str) {
        self.log(LogLevel::Debug, message);
    }

    /// Log at info level.
    pub fn info(&self, message: &str) {
        self.log(LogLevel::Info, message);
    }

    /// Log at warn level.
    pub fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message);
    }

    /// Log at error level.
    pub fn error(&self, message: &str) {
        self.log(LogLevel::Error, message);
    }

    /// A read-only configuration value given to this run.
    pub fn config(&self, key: &str) -> Option<String> {
        host::config_get(key)
    }

    /// One of the tenant's secrets, if this run may read it (its schedule
    /// or request names it in `secrets`). The host scrubs the value from the
    /// run's output, errors and logs before storing them, so logging it by
    /// mistake does not leak it.
    ///
    /// ```no_run
    /// # use taskhost_sdk::{Context, Result};
    /// fn call_partner(ctx: &Context, _input: ()) -> Result<String> {
    ///     let token = ctx.secret("PARTNER_TOKEN")?;
    ///     Ok(format!("token has {} characters", token.len()))
    /// }
    /// ```
    pub fn secret(&self, name: &str) -> Result<String> {
        host::secret_get(name).map_err(Error::Fatal)
    }

    /// Read a JSON value from this plugin's key-value state.
    pub fn kv_get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.kv_get_bytes(key)? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::fatal(format!("kv value {key:?} is not the expected JSON: {e}"))
            }),
            None => Ok(None),
        }
    }

    /// Store a value as JSON in this plugin's key-value state.
    pub fn kv_set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).fatal()?;
        self.kv_set_bytes(key, &bytes)
    }

    /// Read raw bytes from this plugin's key-value state.
    pub fn kv_get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        host::kv_get(key).map_err(Error::Retryable)
    }

    /// Store raw bytes in this plugin's key-value state.
    pub fn kv_set_bytes(&self, key: &str, value: &[u8]) -> Result<()> {
        host::kv_set(key, value).map_err(Error::Retryable)
    }

    /// Delete a key; returns whether it existed.
    pub fn kv_delete(&self, key: &str) -> Result<bool> {
        host::kv_delete(key).map_err(Error::Retryable)
    }

    /// Report progress (0–100, clamped) with an optional note; also a heartbeat.
    pub fn progress(&self, percent: u8, note: Option<&str>) {
        host::progress(percent.min(100), note);
    }

    /// A durable step: runs `work` once per execution. Its result (JSON) is
    /// recorded, with the kv writes made so far, before the workflow goes
    /// on; a later run of the execution (after a retry, a crash or a sleep)
    /// gets the recorded result and does not run `work` again. Run the same
    /// steps in the same order on every run: a replay that asks for another
    /// step than the record ends the run with a "non-deterministic
    /// workflow" error.
    pub fn step<T, F>(&self, name: &str, work: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Result<T>,
    {
        if let Some(recorded) = host::step_get(name) {
            return serde_json::from_slice(&recorded).map_err(|e| {
                Error::fatal(format!(
                    "step {name:?}'s record is not the expected JSON: {e}"
                ))
            });
        }
        let value = work()?;
        host::step_done(name, &serde_json::to_vec(&value).fatal()?);
        Ok(value)
    }

    /// A durable sleep, itself a step named `name`: the run ends here,
    /// holding no worker, and the execution runs again (replaying its
    /// steps) once `duration` has passed since the sleep was first reached.
    pub fn sleep(&self, name: &str, duration: std::time::Duration) {
        host::sleep(
            name,
            u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        );
    }

    /// A step that waits for event `event` sent to this execution
    /// (`POST /v1/executions/{id}/events`) whose data has the fields of
    /// `filter` (`Value::Null` for any): the event (`id`, `name`, `data`,
    /// `received_at`), or `None` once `timeout` has passed since the wait
    /// began. Meanwhile the run ends, holding no worker, and the execution
    /// runs again (replaying its steps) when the event comes or time is up.
    pub fn wait_for_event(
        &self,
        name: &str,
        event: &str,
        filter: &serde_json::Value,
        timeout: std::time::Duration,
    ) -> Result<Option<serde_json::Value>> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        match host::wait_for_event(name, event, &filter.to_string(), ms) {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::fatal(format!("event of step {name:?} is not JSON: {e}"))),
            None => Ok(None),
        }
    }

    /// A durable sleep until `at_ms` (Unix milliseconds): see [`Context::sleep`].
    pub fn sleep_until(&self, name: &str, at_ms: i64) {
        host::sleep_until(name, at_ms);
    }
}

/// Runs a typed task function for one invocation. Called by [`export_task!`].
#[doc(hidden)]
pub fn __run<I, O, F>(invocation: Invocation, task: F) -> std::result::Result<Vec<u8>, TaskError>
where
    I: DeserializeOwned,
    O: Serialize,
    F: FnOnce(&Context, I) -> Result<O>,
{
    // An empty input reads as JSON `null`, so tasks may take `()` or `Option<T>`.
    let raw: &[u8] = if invocation.input.is_empty() {
        b"null"
    } else {
        &invocation.input
    };
    let input: I =
        serde_json::from_slice(raw).map_err(|e| TaskError::Fatal(format!("invalid input: {e}")))?;
    let ctx = Context {
        execution_id: invocation.execution_id,
        schedule_id: invocation.schedule_id,
        attempt: invocation.attempt,
        scheduled_at_ms: invocation.scheduled_at_ms,
    };
    let output = task(&ctx, input).map_err(|e| match e {
        Error::Retryable(m) => TaskError::Retryable(m),
        Error::Fatal(m) => TaskError::Fatal(m),
    })?;
    serde_json::to_vec(&output).map_err(|e| TaskError::Fatal(format!("output is not JSON: {e}")))
}

/// Export a task function as this component's `run`.
///
/// The function takes `(&Context, Input)` and returns `Result<Output>`, where
/// `Input: serde::de::DeserializeOwned` and `Output: serde::Serialize`.
#[macro_export]
macro_rules! export_task {
    ($task:path) => {
        #[doc(hidden)]
        struct __TaskhostTask;

        impl $crate::__private::bindings::Guest for __TaskhostTask {
            fn run(
                invocation: $crate::__private::bindings::taskhost::plugin::types::Invocation,
            ) -> ::core::result::Result<
                ::std::vec::Vec<u8>,
                $crate::__private::bindings::taskhost::plugin::types::TaskError,
            > {
                $crate::__run(invocation, $task)
            }
        }

        $crate::__private::bindings::__export_task_world!(
            __TaskhostTask with_types_in $crate::__private::bindings
        );
    };
}
