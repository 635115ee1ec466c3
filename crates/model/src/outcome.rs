//! What a run produced: its status, output or error, metrics and logs.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a run ended. Every run ends with exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// `run` returned `ok` within every limit.
    Succeeded,
    /// `run` returned a task error (see [`RunError::retryable`]).
    Failed,
    /// The run burned all its fuel.
    OutOfFuel,
    /// The run asked for more memory than its limit.
    MemoryLimit,
    /// The run took longer than its timeout.
    TimedOut,
    /// The plugin trapped: a panic, a stack overflow, an illegal operation.
    Trapped,
    /// The output, stdout or stderr was larger than its limit.
    OutputTooLarge,
    /// The plugin could not be loaded: not a component, wrong world, or it
    /// imports something it is not granted.
    InvalidPlugin,
    /// A workflow's run ended in a durable sleep: neither success nor
    /// failure; the execution is due again at `suspended_until`.
    Suspended,
}

impl Status {
    /// The name used in JSON, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::OutOfFuel => "out_of_fuel",
            Status::MemoryLimit => "memory_limit",
            Status::TimedOut => "timed_out",
            Status::Trapped => "trapped",
            Status::OutputTooLarge => "output_too_large",
            Status::InvalidPlugin => "invalid_plugin",
            Status::Suspended => "suspended",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunError {
    /// A readable explanation, e.g. the plugin's error message, the panic
    /// message, or which limit was hit.
    pub message: String,
    /// Whether trying again may help: a retryable task error, a timeout or a
    /// trap. Deterministic limits and fatal errors are not retryable.
    pub retryable: bool,
    /// The WebAssembly backtrace of a trap, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backtrace: Option<String>,
}

/// Severity of a log line written through the host's `log` import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// One structured log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    pub level: LogLevel,
    pub message: String,
}

/// The last progress the plugin reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    pub percent: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Everything a run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Outcome {
    pub status: Status,
    /// The output of a successful run. Serialized as the JSON value itself when
    /// the bytes are JSON (the convention), otherwise as a string.
    #[serde(default, with = "output_repr", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// Fuel burned by the run.
    pub fuel_used: u64,
    /// Largest linear memory the run had, in bytes.
    pub peak_memory_bytes: u64,
    /// Wall-clock time of instantiation and the call, in microseconds.
    pub duration_us: u64,
    /// Structured log lines, up to the log limit.
    #[serde(default)]
    pub logs: Vec<LogLine>,
    /// Whether log lines were dropped at the log limit.
    #[serde(default)]
    pub logs_truncated: bool,
    /// Captured stdout, up to the log limit.
    #[serde(default)]
    pub stdout: String,
    /// Captured stderr, up to the log limit.
    #[serde(default)]
    pub stderr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The outbound HTTP requests the run made or was refused, in order
    /// (at most [`MAX_HTTP_RECORDS`](super::bounds::MAX_HTTP_RECORDS)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRecord>,
    /// Requests past the records kept, counted only.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub http_unrecorded: u64,
    /// `suspended`: when the execution is due again (its durable sleep's end).
    #[serde(
        default,
        with = "crate::time::option_utc",
        skip_serializing_if = "Option::is_none"
    )]
    pub suspended_until: Option<chrono::DateTime<chrono::Utc>>,
    /// `suspended` waiting for an event: what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<crate::workflow::Wait>,
}

pub(crate) fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One outbound HTTP request of a run: what was asked, and what came of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HttpRecord {
    pub method: String,
    /// `host:port`.
    pub host: String,
    /// The path, without the query (which may carry credentials).
    pub path: String,
    /// The response's status, once headers arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Request body bytes sent.
    pub sent_bytes: u64,
    /// Response body bytes the plugin read.
    pub received_bytes: u64,
    /// From the request to its response's headers (or its failure), in milliseconds.
    pub duration_ms: u64,
    /// Why it was not sent (the network policy or a limit refused it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Why it failed after it was sent (connection, TLS, timeout, body limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Outcome {
    /// An outcome for a run that never started, e.g. an invalid plugin.
    pub fn not_run(status: Status, message: impl Into<String>) -> Self {
        Outcome {
            status,
            output: None,
            error: Some(RunError {
                message: message.into(),
                retryable: false,
                backtrace: None,
            }),
            fuel_used: 0,
            peak_memory_bytes: 0,
            duration_us: 0,
            logs: Vec::new(),
            logs_truncated: false,
            stdout: String::new(),
            stderr: String::new(),
            progress: None,
            http: Vec::new(),
            http_unrecorded: 0,
            suspended_until: None,
            waiting: None,
        }
    }

    /// Replaces the run's secret values wherever the run could have put
    /// them: output, error, backtrace, logs, stdout, stderr, progress.
    pub fn scrub(&mut self, scrubber: &mut crate::secrets::Scrubber) {
        if let Some(scrubbed) = self.output.as_deref().and_then(|o| scrubber.bytes(o)) {
            self.output = Some(scrubbed);
        }
        if let Some(error) = &mut self.error {
            scrubber.text(&mut error.message);
            if let Some(backtrace) = &mut error.backtrace {
                scrubber.text(backtrace);
            }
        }
        for line in &mut self.logs {
            scrubber.text(&mut line.message);
        }
        scrubber.text(&mut self.stdout);
        scrubber.text(&mut self.stderr);
        if let Some(note) = self.progress.as_mut().and_then(|p| p.note.as_mut()) {
            scrubber.text(note);
        }
        for record in &mut self.http {
            scrubber.text(&mut record.path);
            for text in [&mut record.refused, &mut record.error]
                .into_iter()
                .flatten()
            {
                scrubber.text(text);
            }
        }
    }

    /// The output parsed as JSON, if it is JSON.
    pub fn output_json(&self) -> Option<serde_json::Value> {
        self.output
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
    }

    /// The output as it is shown: the JSON it contains, else its text.
    pub fn output_value(&self) -> Option<serde_json::Value> {
        self.output.as_deref().map(shown)
    }
}

/// Output bytes as shown: the JSON they contain, else their text.
fn shown(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Output bytes are shown as the JSON they (by convention) contain.
mod output_repr {
    use super::*;

    pub fn serialize<S: Serializer>(output: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match output {
            Some(bytes) => shown(bytes).serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let value = Option::<serde_json::Value>::deserialize(d)?;
        value
            .map(|v| serde_json::to_vec(&v).map_err(serde::de::Error::custom))
            .transpose()
    }
}
