//! Per-run limits.
//!
//! Every run gets hard limits. Fuel and wall-clock time are enforced by the
//! engine (fuel metering and epoch interruption); memory by the runtime's
//! memory limiter, which wasmtime consults before each memory or table growth;
//! output and log bytes by the runtime and the capture pipes. Hitting any of
//! them ends the run with its own status, never the process.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Hard limits for one run. Defaults are sane for small tasks; a schedule may
/// raise them up to what the node allows (the node's caps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel units (roughly, WebAssembly instructions) a run may burn.
    pub fuel: u64,
    /// Bytes of linear memory a run may use, over all its memories.
    pub memory_bytes: u64,
    /// Wall-clock time a run may take, including instantiation.
    #[serde(with = "crate::time::duration")]
    #[schema(value_type = String, example = "5s")]
    pub timeout: Duration,
    /// Bytes the plugin may return as output.
    pub output_bytes: u64,
    /// Bytes the plugin may write to stdout, to stderr, and through `log` (each).
    pub log_bytes: u64,
    /// Outbound HTTP requests a run may make (refused ones count too).
    pub http_requests: u32,
    /// Request body bytes a run may send, over all its requests.
    pub http_sent_bytes: u64,
    /// Response body bytes a run may receive, over all its requests.
    pub http_received_bytes: u64,
    /// Longest one request may take, to the end of its response (and never
    /// past the run's own timeout).
    #[serde(with = "crate::time::duration")]
    #[schema(value_type = String, example = "10s")]
    pub http_timeout: Duration,
}

impl Limits {
    /// 1 billion fuel: about a second of busy compute.
    pub const DEFAULT_FUEL: u64 = 1_000_000_000;
    /// 64 MiB of linear memory.
    pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;
    /// 5 seconds of wall-clock time.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    /// 1 MiB of output.
    pub const DEFAULT_OUTPUT_BYTES: u64 = 1 << 20;
    /// 1 MiB each of stdout, stderr and structured logs.
    pub const DEFAULT_LOG_BYTES: u64 = 1 << 20;
    /// 20 outbound HTTP requests.
    pub const DEFAULT_HTTP_REQUESTS: u32 = 20;
    /// 1 MiB of request bodies.
    pub const DEFAULT_HTTP_SENT_BYTES: u64 = 1 << 20;
    /// 8 MiB of response bodies.
    pub const DEFAULT_HTTP_RECEIVED_BYTES: u64 = 8 << 20;
    /// 10 seconds per request.
    pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: Self::DEFAULT_FUEL,
            memory_bytes: Self::DEFAULT_MEMORY_BYTES,
            timeout: Self::DEFAULT_TIMEOUT,
            output_bytes: Self::DEFAULT_OUTPUT_BYTES,
            log_bytes: Self::DEFAULT_LOG_BYTES,
            http_requests: Self::DEFAULT_HTTP_REQUESTS,
            http_sent_bytes: Self::DEFAULT_HTTP_SENT_BYTES,
            http_received_bytes: Self::DEFAULT_HTTP_RECEIVED_BYTES,
            http_timeout: Self::DEFAULT_HTTP_TIMEOUT,
        }
    }
}
