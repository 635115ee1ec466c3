//! Backup and restore of the embedded store, with SQLite's online backup.
//!
//! A backup copies the database in one step of the backup API, so it reads
//! one snapshot (a read transaction: WAL mode lets the serving node go on
//! writing meanwhile, and its writes are not seen halfway). The copy is
//! written beside the target, checked (`PRAGMA integrity_check`) and only
//! then renamed into place, so a file at the target is always whole. A
//! restore copies a checked backup into a data folder that has no store yet;
//! the node that opens it migrates it as it would any older store.

use super::sql;
use crate::StoreError;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a backup or restore copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub pages: u64,
    pub bytes: u64,
}

/// Why a backup or restore did nothing. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} exists already; choose a new file (a backup never overwrites one)")]
    TargetExists(PathBuf),
    #[error("{0} holds a store already; restore into an empty data folder")]
    StoreExists(PathBuf),
    #[error("{path} is not a taskhost store: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("the copy failed its integrity check: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Copies the store at `source` (which a node may be serving) to a new
/// file `target`.
pub fn backup(source: &Path, target: &Path) -> Result<Copied, BackupError> {
    if target.exists() {
        return Err(BackupError::TargetExists(target.to_owned()));
    }
    let from = open_existing(source)?;
    copy(&from, target)
}

/// Copies the backup `file` to `target`, the store file of a data folder
/// with no store yet.
pub fn restore(file: &Path, target: &Path) -> Result<Copied, BackupError> {
    if target.exists() {
        return Err(BackupError::StoreExists(target.to_owned()));
    }
    let from = open_existing(file)?;
    check(&from)?;
    copy(&from, target)
}

fn open_existing(path: &Path) -> Result<Connection, BackupError> {
    let unreadable = |reason: String| BackupError::Unreadable {
        path: path.to_owned(),
        reason,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| unreadable(e.to_string()))?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'executions'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| unreadable(e.to_string()))?;
    if tables == 0 {
        return Err(unreadable("it has no executions table".into()));
    }
    Ok(conn)
}

/// Copies `from` whole, in one step (one snapshot), to `target` through a
/// file beside it, checked before it is renamed into place.
fn copy(from: &Connection, target: &Path) -> Result<Copied, BackupError> {
    let partial = target.with_extension("partial");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BackupError::Io { path, source }
    };
    if partial.exists() {
        std::fs::remove_file(&partial).map_err(io(&partial))?;
    }
    let copied = {
        let mut to = Connection::open(&partial).map_err(sql)?;
        {
            let backup = Backup::new(from, &mut to).map_err(sql)?;
            loop {
                match backup.step(-1).map_err(sql)? {
                    StepResult::Done => break,
                    // The source is being written or is locked: try again.
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        check(&to)?;
        let pages: i64 = to
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(sql)?;
        let size: i64 = to
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(sql)?;
        Copied {
            pages: pages as u64,
            bytes: (pages * size) as u64,
        }
    };
    std::fs::rename(&partial, target).map_err(io(target))?;
    Ok(copied)
}

fn check(conn: &Connection) -> Result<(), BackupError> {
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(sql)?;
    match verdict.as_str() {
        "ok" => Ok(()),
        other => Err(BackupError::Corrupt(other.to_owned())),
    }
}
