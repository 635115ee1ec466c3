//! The connection thread: one SQLite connection on its own thread, the
//! schema migrations, and group commit (a batch of jobs per transaction).

use super::sql;
use crate::StoreError;
use crate::backend::Result;
use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Schema migrations, applied in order; `user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE plugins (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
    doc TEXT NOT NULL, UNIQUE (tenant, name, version));
CREATE TABLE plugin_wasm (id TEXT PRIMARY KEY, wasm BLOB NOT NULL);
CREATE TABLE schedules (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL, plugin_id TEXT NOT NULL,
    paused INTEGER NOT NULL, next_fire_at INTEGER, version INTEGER NOT NULL, doc TEXT NOT NULL,
    UNIQUE (tenant, name));
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE paused = 0;
CREATE INDEX schedules_plugin ON schedules (plugin_id);
CREATE INDEX schedules_tenant ON schedules (tenant, id);
CREATE TABLE executions (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, fire_key TEXT NOT NULL UNIQUE,
    schedule_id TEXT, plugin_id TEXT NOT NULL, status TEXT NOT NULL, priority INTEGER NOT NULL,
    due_at INTEGER NOT NULL, lease_expires_at INTEGER, created_at INTEGER NOT NULL,
    version INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE INDEX executions_queued ON executions (due_at) WHERE status = 'queued';
CREATE INDEX executions_leased ON executions (lease_expires_at) WHERE status = 'running';
CREATE INDEX executions_tenant ON executions (tenant, id);
CREATE TABLE locks (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE kv (
    tenant TEXT NOT NULL, plugin TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (tenant, plugin, key)) WITHOUT ROWID;
CREATE TABLE nodes (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, doc TEXT NOT NULL);
"#,
    r#"
ALTER TABLE executions ADD COLUMN expires_at INTEGER;
UPDATE executions SET expires_at = created_at + 604800000
    WHERE status NOT IN ('queued', 'running');
CREATE INDEX executions_expiry ON executions (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX executions_queued_tenant ON executions (tenant, priority DESC, due_at)
    WHERE status = 'queued';
DROP INDEX executions_queued;
CREATE TABLE kv_usage (tenant TEXT PRIMARY KEY, keys INTEGER NOT NULL, bytes INTEGER NOT NULL);
INSERT INTO kv_usage (tenant, keys, bytes)
    SELECT tenant, COUNT(*), SUM(length(CAST(key AS BLOB)) + length(value)) FROM kv GROUP BY tenant;
"#,
    r#"
ALTER TABLE nodes ADD COLUMN draining INTEGER NOT NULL DEFAULT 0;
"#,
    // A claim changes these columns without rewriting the document (see
    // `executions`); NULL in older rows means "as the document says".
    r#"
ALTER TABLE executions ADD COLUMN lease_owner TEXT;
ALTER TABLE executions ADD COLUMN lease_token TEXT;
ALTER TABLE executions ADD COLUMN node TEXT;
ALTER TABLE executions ADD COLUMN started_at INTEGER;
"#,
    r#"
CREATE TABLE secrets (
    tenant TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (tenant, name)) WITHOUT ROWID;
"#,
    // Executions with webhooks to deliver (see the scheduler's `webhooks`).
    r#"
ALTER TABLE executions ADD COLUMN notify_due_at INTEGER;
CREATE INDEX executions_notify ON executions (notify_due_at) WHERE notify_due_at IS NOT NULL;
"#,
    // The fire ledger (see `taskhost_model::FireRecord`): each fire's record is
    // the execution row under its unique fire key, so the executions of
    // earlier fires are its first records (`ran`). Paused schedules are due
    // too (their fires are recorded as skipped). Plugin aliases.
    r#"
ALTER TABLE executions ADD COLUMN fire_at INTEGER;
ALTER TABLE executions ADD COLUMN fate TEXT;
ALTER TABLE executions ADD COLUMN fire_reason TEXT;
UPDATE executions
   SET fire_at = CAST(substr(fire_key, instr(fire_key, '@') + 1) AS INTEGER), fate = 'ran'
 WHERE schedule_id IS NOT NULL AND instr(fire_key, '@') > 0;
CREATE INDEX executions_fires ON executions (schedule_id, fire_at, fate, fire_reason)
    WHERE fire_at IS NOT NULL;
DROP INDEX schedules_due;
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE next_fire_at IS NOT NULL;
ALTER TABLE schedules ADD COLUMN plugin_alias TEXT;
CREATE INDEX schedules_alias ON schedules (plugin_alias) WHERE plugin_alias IS NOT NULL;
CREATE TABLE plugin_aliases (
    tenant TEXT NOT NULL, name TEXT NOT NULL, alias TEXT NOT NULL, plugin_id TEXT NOT NULL,
    doc TEXT NOT NULL, PRIMARY KEY (tenant, name, alias)) WITHOUT ROWID;
CREATE INDEX plugin_aliases_target ON plugin_aliases (plugin_id);
"#,
    // Partitions of the fire path: each schedule's, computed from its id
    // in Rust after this step (see `fill_partitions`).
    r#"
ALTER TABLE schedules ADD COLUMN partition_no INTEGER NOT NULL DEFAULT -1;
DROP INDEX schedules_due;
CREATE INDEX schedules_due ON schedules (partition_no, next_fire_at) WHERE next_fire_at IS NOT NULL;
"#,
    // Revoked tokens (see `TokenStore`).
    r#"
CREATE TABLE revocations (
    tenant TEXT NOT NULL, jti TEXT NOT NULL, expires_at INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (tenant, jti)) WITHOUT ROWID;
CREATE INDEX revocations_expiry ON revocations (expires_at);
"#,
    // Each execution's stored size (its document's bytes), in the tenant
    // index: a tenant's stored count and bytes (its storage quotas) are read
    // from the index alone. (A virtual generated column would not be: SQLite
    // reads the row to compute it.)
    r#"
ALTER TABLE executions ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
UPDATE executions SET bytes = length(CAST(doc AS BLOB));
DROP INDEX executions_tenant;
CREATE INDEX executions_tenant ON executions (tenant, id, bytes);
"#,
    // Idempotency keys (see `IdempotencyStore`).
    r#"
CREATE TABLE idempotency (
    tenant TEXT NOT NULL, key TEXT NOT NULL, expires_at INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (tenant, key)) WITHOUT ROWID;
CREATE INDEX idempotency_expiry ON idempotency (expires_at);
"#,
    // Event triggers (see `taskhost_model::event`): the schedules an event
    // fires, found by tenant and name; and the hooks that send events.
    r#"
ALTER TABLE schedules ADD COLUMN event_name TEXT;
UPDATE schedules SET event_name = json_extract(doc, '$.trigger.name')
    WHERE json_extract(doc, '$.trigger.kind') = 'event';
CREATE INDEX schedules_event ON schedules (tenant, event_name) WHERE event_name IS NOT NULL;
CREATE TABLE hooks (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, version INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE INDEX hooks_tenant ON hooks (tenant, id);
"#,
    // Concurrency keys (see `taskhost_model::flow`): a claim counts the
    // key's running runs by this index.
    r#"
ALTER TABLE executions ADD COLUMN ckey TEXT;
ALTER TABLE executions ADD COLUMN climit INTEGER;
ALTER TABLE executions ADD COLUMN finished_at INTEGER;
CREATE INDEX executions_ckey ON executions (tenant, ckey, lease_expires_at)
    WHERE status = 'running' AND ckey IS NOT NULL;
CREATE INDEX executions_ckey_ended ON executions (tenant, ckey, finished_at)
    WHERE ckey IS NOT NULL;
"#,
    // Rate-limit keys: a claim counts the key's recent starts by this index.
    r#"
ALTER TABLE executions ADD COLUMN rkey TEXT;
ALTER TABLE executions ADD COLUMN rlimit INTEGER;
ALTER TABLE executions ADD COLUMN rper INTEGER;
CREATE INDEX executions_rkey ON executions (tenant, rkey, started_at) WHERE rkey IS NOT NULL;
"#,
    // Debounce keys: each key's pending run (see `DebounceStore`).
    r#"
CREATE TABLE debounce (
    tenant TEXT NOT NULL, key TEXT NOT NULL, pending TEXT NOT NULL, expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)) WITHOUT ROWID;
CREATE INDEX debounce_expiry ON debounce (expires_at);
"#,
    // The audit log (see `AuditStore`).
    r#"
CREATE TABLE audit (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, expires_at INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE INDEX audit_tenant ON audit (tenant, id);
CREATE INDEX audit_expiry ON audit (expires_at);
"#,
    // API keys (see `ApiKeyStore`).
    r#"
CREATE TABLE api_keys (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX api_keys_tenant ON api_keys (tenant, id);
"#,
    // Workflows suspended waiting for an event, found by the tenant's
    // events (see `taskhost_model::workflow::Wait`).
    r#"
ALTER TABLE executions ADD COLUMN waiting_event TEXT;
UPDATE executions SET waiting_event = json_extract(doc, '$.waiting.event')
    WHERE json_extract(doc, '$.waiting.event') IS NOT NULL;
CREATE INDEX executions_waiting ON executions (tenant, waiting_event)
    WHERE waiting_event IS NOT NULL;
"#,
];

/// Jobs the connection thread runs together in one transaction.
const MAX_BATCH: usize = 512;

/// A unit of work for the connection thread.
trait Job: Send {
    /// Runs inside the batch's transaction; false if it failed (and is rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch committed (or failed to).
    fn finish(self: Box<Self>, commit: std::result::Result<(), String>);
    /// Whether the job runs in a savepoint of its own. A job of one
    /// statement needs none: SQLite undoes a failed statement by itself.
    fn savepoint(&self) -> bool;
}

struct TypedJob<T, F> {
    work: Option<F>,
    savepoint: bool,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send, F: FnOnce(&Connection) -> Result<T> + Send> Job for TypedJob<T, F> {
    fn run(&mut self, conn: &Connection) -> bool {
        let result = match self.work.take() {
            Some(work) => work(conn),
            None => Err(StoreError::backend("job ran twice")),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: std::result::Result<(), String>) {
        let result = match (commit, self.result) {
            (Ok(()), Some(result)) => result,
            (Err(e), _) => Err(StoreError::unavailable(format!("commit failed: {e}"))),
            (Ok(()), None) => Err(StoreError::backend("job did not run")),
        };
        let _ = self.reply.send(result);
    }

    fn savepoint(&self) -> bool {
        self.savepoint
    }
}

/// The SQLite backend. Cheap to share; dropping the last handle stops its thread.
pub struct SqliteBackend {
    jobs: mpsc::Sender<Box<dyn Job>>,
    /// Dropped with the backend: the checkpointer thread then stops.
    _checkpoints: Option<mpsc::Sender<()>>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub async fn open(path: &str) -> Result<Self> {
        let path = path.to_owned();
        let conn_path = path.clone();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (jobs, rx) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("taskhost-sqlite".into())
            .spawn(move || match connect(&conn_path) {
                Ok(conn) => {
                    let _ = ready_tx.send(Ok(()));
                    serve(conn, rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| StoreError::backend(format!("could not start the SQLite thread: {e}")))?;
        ready_rx
            .await
            .map_err(|_| StoreError::backend("the SQLite thread stopped"))??;
        let checkpoints = (!path_is_memory(&path)).then(|| start_checkpointer(path));
        Ok(SqliteBackend {
            jobs,
            _checkpoints: checkpoints,
        })
    }

    /// Runs `work` on the connection thread, inside a transaction: all of
    /// it, or (if it fails) none of it.
    pub(super) async fn call<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.submit(work, true).await
    }

    /// [`SqliteBackend::call`] for work of a single statement (which SQLite
    /// makes all or nothing by itself), without the cost of a savepoint.
    pub(super) async fn call_statement<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.submit(work, false).await
    }

    async fn submit<T, F>(&self, work: F, savepoint: bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob {
            savepoint,
            work: Some(work),
            result: None,
            reply,
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::backend("the SQLite thread stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::backend("the SQLite thread stopped"))?
    }
}

fn connect(path: &str) -> Result<Connection> {
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::backend(format!("could not create {}: {e}", dir.display())))?;
    }
    let mut conn = Connection::open(path)
        .map_err(|e| StoreError::backend(format!("could not open {path}: {e}")))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sql)?;
    // WAL + synchronous=NORMAL: a committed transaction survives a process
    // crash (kill -9); only an OS crash or power loss may lose the last ones.
    //
    // Checkpoints (copying the WAL into the database, with an fsync) run on
    // their own thread and connection (`start_checkpointer`), not in the
    // commit of whichever job filled the WAL: a request never waits for one.
    // A 64 MiB page cache and memory-mapped reads keep a large queue's
    // indexes in memory, so that work does not slow as the queue grows.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;
         PRAGMA cache_size = -65536; PRAGMA mmap_size = 268435456; PRAGMA temp_store = MEMORY;",
    )
    .map_err(sql)?;
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)?;
    let applied: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)?;
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::backend(format!(
            "the database has schema version {applied}, newer than this taskhost knows ({}); upgrade taskhost",
            MIGRATIONS.len()
        )));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(migration).map_err(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(sql)?;
    }
    fill_partitions(&tx)?;
    tx.commit().map_err(sql)
}

/// Gives every schedule without one its partition (those stored before
/// partitions existed): a hash of the id, which SQL cannot compute.
fn fill_partitions(c: &Connection) -> Result<()> {
    let ids: Vec<String> = {
        let mut stmt = c
            .prepare("SELECT id FROM schedules WHERE partition_no = -1")
            .map_err(sql)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)?
    };
    let mut update = c
        .prepare("UPDATE schedules SET partition_no = ? WHERE id = ?")
        .map_err(sql)?;
    for id in ids {
        let partition = taskhost_model::partition_of(&id);
        update
            .execute(rusqlite::params![partition, id])
            .map_err(sql)?;
    }
    Ok(())
}

/// The connection thread: batches waiting jobs into one transaction each.
fn serve(conn: Connection, jobs: mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = run_batch(&conn, &mut batch);
        for job in batch {
            job.finish(commit.clone());
        }
    }
}

fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> std::result::Result<(), String> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| e.to_string())?;
    // Cached statements: a batch runs three of them per job.
    let run = |text: &str| conn.prepare_cached(text).and_then(|mut s| s.execute([]));
    for job in batch.iter_mut() {
        if !job.savepoint() {
            job.run(conn);
            continue;
        }
        let step = run("SAVEPOINT job").and_then(|_| {
            if job.run(conn) {
                run("RELEASE job")
            } else {
                run("ROLLBACK TO job").and_then(|_| run("RELEASE job"))
            }
        });
        if let Err(e) = step {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.to_string());
        }
    }
    conn.execute_batch("COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        e.to_string()
    })
}

fn path_is_memory(path: &str) -> bool {
    path.is_empty() || path == ":memory:" || path.starts_with("file::memory:")
}

/// How often the checkpointer copies the WAL into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Starts the thread that checkpoints the WAL (`PASSIVE`: it never blocks the
/// writer or readers). It stops when the returned sender is dropped.
fn start_checkpointer(path: String) -> mpsc::Sender<()> {
    let (stop, stopped) = mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("taskhost-sqlite-checkpoint".into())
        .spawn(move || {
            let conn = match Connection::open(&path) {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "could not open the checkpoint connection; the WAL is checkpointed only when taskhost restarts");
                    return;
                }
            };
            let _ = conn.busy_timeout(std::time::Duration::from_secs(1));
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!(error = %e, "WAL checkpoint failed; trying again");
                }
            }
            // A last full copy, so that the WAL is small when taskhost stops.
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the checkpoint thread");
    }
    stop
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of the schema before event triggers opens, and its
    /// schedules get their event names.
    #[test]
    fn the_schema_before_events_is_migrated() {
        let mut conn = Connection::open_in_memory().expect("open");
        let before = MIGRATIONS
            .iter()
            .position(|m| m.contains("CREATE TABLE hooks"))
            .expect("the events migration");
        for m in &MIGRATIONS[..before] {
            conn.execute_batch(m).expect("old schema");
        }
        conn.pragma_update(None, "user_version", before as i64)
            .expect("version");
        let doc = r#"{"trigger":{"kind":"event","name":"push"}}"#;
        conn.execute(
            "INSERT INTO schedules (id, tenant, name, plugin_id, paused, next_fire_at, version, doc)
             VALUES ('s1', 'acme', 'n', 'p', 0, NULL, 0, ?)",
            [doc],
        )
        .expect("old row");
        migrate(&mut conn).expect("migrate");
        let name: Option<String> = conn
            .query_row(
                "SELECT event_name FROM schedules WHERE id = 's1'",
                [],
                |r| r.get(0),
            )
            .expect("read");
        assert_eq!(name.as_deref(), Some("push"));
        let hooks: i64 = conn
            .query_row("SELECT COUNT(*) FROM hooks", [], |r| r.get(0))
            .expect("hooks table");
        assert_eq!(hooks, 0);
    }
}
