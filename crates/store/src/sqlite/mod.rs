//! The embedded store: one SQLite file, the default.
//!
//! One connection lives on its own thread; async callers send it jobs. The
//! thread runs whatever jobs are waiting as one transaction (group commit: a
//! savepoint per job, one fsync per batch) and answers each caller only after
//! the commit, so an acknowledged write survives `kill -9`. WAL mode lets other
//! processes read while it writes; a busy timeout makes them wait, not fail.
//!
//! Records are JSON documents beside the columns that queries filter and sort
//! on. The schema is versioned with `PRAGMA user_version` (see `conn::MIGRATIONS`).

use super::StoreError;
use super::backend::Result;
use crate::traits::Backend;

mod audit;
pub mod backup;
mod cluster;
mod conn;
mod debounce;
mod executions;
mod hooks;
mod idempotency;
mod kv;
mod plugins;
mod rows;
mod schedules;
mod secrets;
mod tokens;

pub use conn::SqliteBackend;
use rows::{docs, insert_row, ms, paged};

/// A SQLite error, classified: a busy or locked database, or failing I/O,
/// may pass; anything else will not.
fn sql(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked | C::SystemIoFailure | C::DiskFull) => {
            StoreError::Unavailable(Box::new(e))
        }
        _ => StoreError::Backend(Box::new(e)),
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

#[async_trait::async_trait]
impl Backend for SqliteBackend {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        self.call(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(sql))
            .await
    }
}
