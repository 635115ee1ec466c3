//! Events and flow control through real processes on both stores (issue
//! 26), in one test binary: idempotency keys, events and hooks, and
//! concurrency, rate-limit and debounce keys.

mod events;
mod idempotency;
mod keys;
