//! taskhost: a task host for WebAssembly plugins.
//!
//! Teams upload sandboxed task plugins (WebAssembly components implementing
//! the `taskhost:plugin` world in `wit/`), and host nodes run them under hard
//! fuel, memory, time and output limits. See `DESIGN.md` in the shared docs for
//! the whole picture.
//!
//! - [`runtime`]: validate, compile, cache and run plugins under limits;
//! - [`cli`]: the `taskhost` command line.

pub mod cli;
pub mod runtime;
