//! taskhost: a task host for WebAssembly plugins.
//!
//! Teams upload sandboxed task plugins (WebAssembly components implementing
//! the `taskhost:plugin` world in `wit/`), and host nodes run them under hard
//! fuel, memory, time and output limits. See `DESIGN.md` in the shared docs for
//! the whole picture.
//!
//! - [`runtime`]: validate, compile, cache and run plugins under limits;
//! - [`model`]: plugins, schedules, executions — the records everything shares;
//! - [`net`]: the network policy and the client plugins and webhooks use;
//! - [`quota`]: what each tenant may keep and ask for;
//! - [`store`]: durable state behind one API, on SQLite or MongoDB;
//! - [`scheduler`]: triggers, the hybrid queue, leases, retries, nodes;
//! - [`clock`]: injectable time;
//! - [`metrics`]: what a node counts, in one Prometheus registry;
//! - [`tls`]: rustls (ring) for the CLI's client and `serve`;
//! - [`webhooks`]: signed, durable notifications when runs end;
//! - [`api`]: the REST API and `taskhost serve`;
//! - [`cli`]: the `taskhost` command line.

pub mod api;
pub mod cli;
pub mod clock;
pub mod metrics;
pub mod model;
pub mod net;
pub mod quota;
pub mod runtime;
pub mod scheduler;
pub mod secrets;
mod serde_util;
pub mod store;
pub mod tls;
pub mod webhooks;
