//! taskhost: a task host for WebAssembly plugins — the binary's crate.
//!
//! Teams upload sandboxed task plugins (WebAssembly components implementing
//! the `taskhost:plugin` world in `wit/`), and host nodes run them under hard
//! fuel, memory, time and output limits. See `DESIGN.md` in the shared docs
//! for the whole picture. The layers below this crate, each a crate of its
//! own and each depending only on those below it:
//!
//! - `taskhost-net`: the network policy, and the client plugins and
//!   webhooks go out through;
//! - `taskhost-model`: the records, the run policy and its checks, triggers,
//!   quotas, time;
//! - `taskhost-runtime`: validate, compile, cache and run plugins under
//!   limits (wasmtime; no store, no HTTP server);
//! - `taskhost-store`: durable state on SQLite or MongoDB;
//! - `taskhost-scheduler`: intake, fires, the hybrid queue, leases,
//!   retries, webhooks, metrics.
//!
//! This crate is the edge: [`api`] (the REST API, the console and `serve`),
//! [`cli`] (the `taskhost` command line) and [`tls`] (the server's TLS).

pub mod api;
pub mod cli;
pub mod tls;
