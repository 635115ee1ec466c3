//! taskhost's vocabulary: the records every other crate shares, and the
//! rules that need nothing but the records themselves.
//!
//! Nothing here touches a store, the network or wasmtime, so every crate
//! above (runtime, store, scheduler, the binary) can depend on it, and a
//! change to a handler never rebuilds it.
//!
//! - records: plugins, schedules, executions, fires, webhooks, nodes;
//! - [`clock`] and [`time`]: injectable time, time arithmetic, and how times and
//!   durations are written;
//! - [`limits`], [`outcome`]: what a run may use, and what it produced;
//! - [`policy`]: what a tenant may ask for, checked once;
//! - [`trigger`]: when a schedule fires (cron, intervals, catch-up);
//! - [`quota`]: what each tenant may keep and ask for;
//! - [`secrets`]: sealing, scrubbing and naming of tenant secrets;
//! - [`kv`]: the key-value trait plugins' state lives behind;
//! - [`effects`]: a run's kv writes, held until its result is written;
//! - [`workflow`]: durable steps and sleep;
//! - [`audit`]: the record of each write request;
//! - [`apikey`]: API keys for machines, stored hashed;
//! - [`flow`]: concurrency keys, rate-limit keys and debounce;
//! - [`event`], [`hook`]: events, what they fire, and the public hooks that send them.

pub mod apikey;
pub mod audit;
pub mod clock;
pub mod effects;
pub mod error;
pub mod event;
mod fire;
pub mod flow;
pub mod hook;
pub mod kv;
pub mod limits;
pub mod outcome;
pub mod policy;
pub mod quota;
mod records;
pub mod secrets;
pub mod time;
pub mod trigger;
mod webhook;
pub mod workflow;

pub use fire::{
    FireCounts, FireFate, FireInfo, FireReason, FireRecord, FireWas, LATEST, PluginAlias,
};
pub use hook::HookRecord;
pub use limits::Limits;
pub use outcome::{HttpRecord, LogLevel, LogLine, Outcome, Progress, RunError, Status};
pub use policy::{PolicyContext, PolicyError, RunPolicy};
pub use records::*;
pub use webhook::{
    Delivery, DeliveryAttempt, DeliveryState, EVENTS, KEEP_WHILE_DELIVERING, NotifyTarget,
};
