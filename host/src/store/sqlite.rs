//! The embedded store: one SQLite file, the default.
//!
//! One connection lives on its own thread; async callers send it jobs. The
//! thread runs whatever jobs are waiting as one transaction (group commit: a
//! savepoint per job, one fsync per batch) and answers each caller only after
//! the commit, so an acknowledged write survives `kill -9`. WAL mode lets other
//! processes read while it writes; a busy timeout makes them wait, not fail.
//!
//! Records are JSON documents beside the columns that queries filter and sort
//! on. The schema is versioned with `PRAGMA user_version` (see [`MIGRATIONS`]).

use super::StoreError;
use super::backend::{
    Backend, ExecutionChange, ExecutionFilter, Field, PageQuery, PluginFilter, Result, Row,
    ScheduleFilter, execution_row, from_doc, node_row, plugin_row, schedule_row,
};
use crate::model::{Execution, NodeInfo, PluginRecord, Schedule};
use chrono::{DateTime, Utc};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, ToSql, params};
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Schema migrations, applied in order; `user_version` counts those applied.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

/// Jobs the connection thread runs together in one transaction.
const MAX_BATCH: usize = 512;

/// A unit of work for the connection thread.
trait Job: Send {
    /// Runs inside the batch's transaction; false if it failed (and is rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch committed (or failed to).
    fn finish(self: Box<Self>, commit: std::result::Result<(), String>);
}

struct TypedJob<T, F> {
    work: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send, F: FnOnce(&Connection) -> Result<T> + Send> Job for TypedJob<T, F> {
    fn run(&mut self, conn: &Connection) -> bool {
        let result = match self.work.take() {
            Some(work) => work(conn),
            None => Err(StoreError::Backend("job ran twice".into())),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: std::result::Result<(), String>) {
        let result = match (commit, self.result) {
            (Ok(()), Some(result)) => result,
            (Err(e), _) => Err(StoreError::Backend(format!("commit failed: {e}"))),
            (Ok(()), None) => Err(StoreError::Backend("job did not run".into())),
        };
        let _ = self.reply.send(result);
    }
}

/// The SQLite backend. Cheap to share; dropping the last handle stops its thread.
pub struct SqliteBackend {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub async fn open(path: &str) -> Result<Self> {
        let path = path.to_owned();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (jobs, rx) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("taskhost-sqlite".into())
            .spawn(move || match connect(&path) {
                Ok(conn) => {
                    let _ = ready_tx.send(Ok(()));
                    serve(conn, rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| StoreError::Backend(format!("could not start the SQLite thread: {e}")))?;
        ready_rx
            .await
            .map_err(|_| StoreError::Backend("the SQLite thread stopped".into()))??;
        Ok(SqliteBackend { jobs })
    }

    /// Runs `work` on the connection thread, inside a transaction.
    async fn call<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob {
            work: Some(work),
            result: None,
            reply,
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Backend("the SQLite thread stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the SQLite thread stopped".into()))?
    }
}

fn connect(path: &str) -> Result<Connection> {
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("could not create {}: {e}", dir.display())))?;
    }
    let mut conn = Connection::open(path)
        .map_err(|e| StoreError::Backend(format!("could not open {path}: {e}")))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sql)?;
    // WAL + synchronous=NORMAL: a committed transaction survives a process
    // crash (kill -9); only an OS crash or power loss may lose the last ones.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
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
        return Err(StoreError::Backend(format!(
            "the database has schema version {applied}, newer than this taskhost knows ({}); upgrade taskhost",
            MIGRATIONS.len()
        )));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(migration).map_err(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(sql)?;
    }
    tx.commit().map_err(sql)
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
    for job in batch.iter_mut() {
        let step = conn.execute_batch("SAVEPOINT job").and_then(|()| {
            let ok = job.run(conn);
            conn.execute_batch(if ok {
                "RELEASE job"
            } else {
                "ROLLBACK TO job; RELEASE job"
            })
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

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

impl ToSql for Field {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Field::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Field::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            Field::Null => ToSqlOutput::Owned(Value::Null),
        })
    }
}

/// Inserts a row; `on_conflict` is appended (e.g. `ON CONFLICT (fire_key) DO NOTHING`).
/// Returns the number of rows inserted.
fn insert_row(
    c: &Connection,
    table: &str,
    row: &Row,
    on_conflict: &str,
) -> rusqlite::Result<usize> {
    let names: Vec<&str> = row.fields.iter().map(|(n, _)| *n).collect();
    let text = format!(
        "INSERT INTO {table} (id, {}, doc) VALUES (?{}, ?) {on_conflict}",
        names.join(", "),
        ", ?".repeat(names.len())
    );
    let mut args: Vec<&dyn ToSql> = vec![&row.id];
    args.extend(row.fields.iter().map(|(_, v)| v as &dyn ToSql));
    args.push(&row.doc);
    c.prepare_cached(&text)?.execute(args.as_slice())
}

/// Replaces a row if its stored version is `expected`; true if it did.
fn replace_row(c: &Connection, table: &str, row: &Row, expected: u64) -> rusqlite::Result<bool> {
    let sets: Vec<String> = row.fields.iter().map(|(n, _)| format!("{n} = ?")).collect();
    let text = format!(
        "UPDATE {table} SET {}, doc = ? WHERE id = ? AND version = ?",
        sets.join(", ")
    );
    let mut args: Vec<&dyn ToSql> = row.fields.iter().map(|(_, v)| v as &dyn ToSql).collect();
    let expected = expected as i64;
    args.extend([&row.doc as &dyn ToSql, &row.id, &expected]);
    Ok(c.prepare_cached(&text)?.execute(args.as_slice())? == 1)
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Runs a query whose single column is a JSON document.
fn docs<T: DeserializeOwned>(
    conn: &Connection,
    sql_text: &str,
    args: &[&dyn ToSql],
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql_text).map_err(sql)?;
    let rows = stmt
        .query_map(args, |row| row.get::<_, String>(0))
        .map_err(sql)?;
    rows.map(|row| row.map_err(sql).and_then(|text| from_doc(&text)))
        .collect()
}

fn doc<T: DeserializeOwned>(conn: &Connection, sql_text: &str, id: &str) -> Result<Option<T>> {
    let text: Option<String> = conn
        .prepare_cached(sql_text)
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(sql)?;
    text.map(|t| from_doc(&t)).transpose()
}

/// Appends `AND id < ?` and the order and limit of a page.
fn paged(mut text: String, args: &mut Vec<Box<dyn ToSql + Send>>, page: &PageQuery) -> String {
    if let Some(before) = &page.before {
        text.push_str(" AND id < ?");
        args.push(Box::new(before.clone()));
    }
    text.push_str(&format!(" ORDER BY id DESC LIMIT {}", page.limit));
    text
}

fn list<T: DeserializeOwned>(
    conn: &Connection,
    text: &str,
    args: &[Box<dyn ToSql + Send>],
) -> Result<Vec<T>> {
    let refs: Vec<&dyn ToSql> = args.iter().map(|a| a.as_ref() as &dyn ToSql).collect();
    docs(conn, text, &refs)
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

    async fn plugin_insert(&self, plugin: &PluginRecord, wasm: &[u8]) -> Result<()> {
        let (row, wasm) = (plugin_row(plugin)?, wasm.to_vec());
        let what = format!("plugin {} version {}", plugin.name, plugin.version);
        self.call(move |c| {
            match insert_row(c, "plugins", &row, "") {
                Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict(what)),
                other => other.map_err(sql)?,
            };
            c.execute(
                "INSERT INTO plugin_wasm (id, wasm) VALUES (?, ?)",
                params![row.id, wasm],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn plugin_get(&self, id: &str) -> Result<Option<PluginRecord>> {
        let id = id.to_owned();
        self.call(move |c| doc(c, "SELECT doc FROM plugins WHERE id = ?", &id))
            .await
    }

    async fn plugin_wasm(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let id = id.to_owned();
        self.call(move |c| {
            c.query_row("SELECT wasm FROM plugin_wasm WHERE id = ?", [&id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql)
        })
        .await
    }

    async fn plugin_list(
        &self,
        tenant: &str,
        filter: &PluginFilter,
        page: &PageQuery,
    ) -> Result<Vec<PluginRecord>> {
        let mut args: Vec<Box<dyn ToSql + Send>> = vec![Box::new(tenant.to_owned())];
        let mut text = String::from("SELECT doc FROM plugins WHERE tenant = ?");
        if let Some(name) = &filter.name {
            text.push_str(" AND name = ?");
            args.push(Box::new(name.clone()));
        }
        let text = paged(text, &mut args, page);
        self.call(move |c| list(c, &text, &args)).await
    }

    async fn plugin_delete(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |c| {
            let used: Option<String> = c
                .query_row(
                    "SELECT name FROM schedules WHERE plugin_id = ? LIMIT 1",
                    [&id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            if let Some(schedule) = used {
                return Err(StoreError::InUse(format!(
                    "the plugin is used by schedule {schedule:?}"
                )));
            }
            c.execute("DELETE FROM plugin_wasm WHERE id = ?", [&id])
                .map_err(sql)?;
            Ok(c.execute("DELETE FROM plugins WHERE id = ?", [&id])
                .map_err(sql)?
                > 0)
        })
        .await
    }

    async fn schedule_insert(&self, schedule: &Schedule) -> Result<()> {
        let (row, what) = (
            schedule_row(schedule)?,
            format!("schedule {:?}", schedule.name),
        );
        self.call(move |c| match insert_row(c, "schedules", &row, "") {
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(what)),
            other => other.map(drop).map_err(sql),
        })
        .await
    }

    async fn schedule_get(&self, id: &str) -> Result<Option<Schedule>> {
        let id = id.to_owned();
        self.call(move |c| doc(c, "SELECT doc FROM schedules WHERE id = ?", &id))
            .await
    }

    async fn schedule_replace(&self, schedule: &Schedule, expected_version: u64) -> Result<bool> {
        let (row, what) = (
            schedule_row(schedule)?,
            format!("schedule {:?}", schedule.name),
        );
        self.call(
            move |c| match replace_row(c, "schedules", &row, expected_version) {
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(what)),
                other => other.map_err(sql),
            },
        )
        .await
    }

    async fn schedule_list(
        &self,
        tenant: &str,
        filter: &ScheduleFilter,
        page: &PageQuery,
    ) -> Result<Vec<Schedule>> {
        let mut args: Vec<Box<dyn ToSql + Send>> = vec![Box::new(tenant.to_owned())];
        let mut text = String::from("SELECT doc FROM schedules WHERE tenant = ?");
        if let Some(plugin) = &filter.plugin_id {
            text.push_str(" AND plugin_id = ?");
            args.push(Box::new(plugin.clone()));
        }
        if let Some(paused) = filter.paused {
            text.push_str(" AND paused = ?");
            args.push(Box::new(paused));
        }
        let text = paged(text, &mut args, page);
        self.call(move |c| list(c, &text, &args)).await
    }

    async fn schedule_delete(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |c| {
            Ok(c.execute("DELETE FROM schedules WHERE id = ?", [&id])
                .map_err(sql)?
                > 0)
        })
        .await
    }

    async fn schedules_due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Schedule>> {
        self.call(move |c| {
            docs(
                c,
                "SELECT doc FROM schedules WHERE paused = 0 AND next_fire_at <= ? ORDER BY next_fire_at LIMIT ?",
                &[&ms(now), &limit],
            )
        })
        .await
    }

    async fn execution_insert(&self, execution: &Execution) -> Result<bool> {
        let (row, what) = (
            execution_row(execution)?,
            format!("execution {}", execution.id),
        );
        self.call(move |c| {
            match insert_row(c, "executions", &row, "ON CONFLICT (fire_key) DO NOTHING") {
                Ok(n) => Ok(n == 1),
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(what)),
                Err(e) => Err(sql(e)),
            }
        })
        .await
    }

    async fn execution_get(&self, id: &str) -> Result<Option<Execution>> {
        let id = id.to_owned();
        self.call(move |c| doc(c, "SELECT doc FROM executions WHERE id = ?", &id))
            .await
    }

    async fn execution_replace(
        &self,
        execution: &Execution,
        expected_version: u64,
    ) -> Result<bool> {
        let row = execution_row(execution)?;
        self.call(move |c| replace_row(c, "executions", &row, expected_version).map_err(sql))
            .await
    }

    fn atomic_updates(&self) -> bool {
        true
    }

    async fn execution_update(
        &self,
        id: &str,
        mut change: ExecutionChange,
    ) -> Result<Option<Execution>> {
        let id = id.to_owned();
        self.call(move |c| {
            // Inside the batch's IMMEDIATE transaction: no other writer, in this
            // process or another, can come between the read and the write.
            let Some(mut execution) =
                doc::<Execution>(c, "SELECT doc FROM executions WHERE id = ?", &id)?
            else {
                return Ok(None);
            };
            let expected = execution.version;
            if !change(&mut execution) {
                return Ok(None);
            }
            let row = execution_row(&execution)?;
            Ok(replace_row(c, "executions", &row, expected)
                .map_err(sql)?
                .then_some(execution))
        })
        .await
    }

    async fn execution_list(
        &self,
        tenant: &str,
        filter: &ExecutionFilter,
        page: &PageQuery,
    ) -> Result<Vec<Execution>> {
        let mut args: Vec<Box<dyn ToSql + Send>> = vec![Box::new(tenant.to_owned())];
        let mut text = String::from("SELECT doc FROM executions WHERE tenant = ?");
        let mut add = |clause: &str, arg: Box<dyn ToSql + Send>| {
            text.push_str(clause);
            args.push(arg);
        };
        if let Some(v) = &filter.schedule_id {
            add(" AND schedule_id = ?", Box::new(v.clone()));
        }
        if let Some(v) = &filter.plugin_id {
            add(" AND plugin_id = ?", Box::new(v.clone()));
        }
        if let Some(v) = filter.status {
            add(" AND status = ?", Box::new(v.as_str()));
        }
        if let Some(v) = filter.since {
            add(" AND created_at >= ?", Box::new(ms(v)));
        }
        if let Some(v) = filter.until {
            add(" AND created_at < ?", Box::new(ms(v)));
        }
        let text = paged(text, &mut args, page);
        self.call(move |c| list(c, &text, &args)).await
    }

    async fn executions_due(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<Execution>> {
        self.call(move |c| {
            docs(
                c,
                "SELECT doc FROM executions WHERE status = 'queued' AND due_at <= ?
                 ORDER BY priority DESC, due_at, id LIMIT ?",
                &[&ms(before), &limit],
            )
        })
        .await
    }

    async fn executions_expired(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Execution>> {
        self.call(move |c| {
            docs(
                c,
                "SELECT doc FROM executions WHERE status = 'running' AND lease_expires_at < ?
                 ORDER BY lease_expires_at LIMIT ?",
                &[&ms(now), &limit],
            )
        })
        .await
    }

    async fn lock_acquire(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.call(move |c| {
            let changed = c
                .execute(
                    "INSERT INTO locks (name, owner, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET owner = ?2, expires_at = ?3
                     WHERE locks.expires_at <= ?4 OR locks.owner = ?2",
                    params![name, owner, ms(expires_at), ms(now)],
                )
                .map_err(sql)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn lock_renew(
        &self,
        name: &str,
        owner: &str,
        _now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.call(move |c| {
            let changed = c
                .execute(
                    "UPDATE locks SET expires_at = ? WHERE name = ? AND owner = ?",
                    params![ms(expires_at), name, owner],
                )
                .map_err(sql)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn lock_release(&self, name: &str, owner: &str) -> Result<bool> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.call(move |c| {
            Ok(c.execute(
                "DELETE FROM locks WHERE name = ? AND owner = ?",
                params![name, owner],
            )
            .map_err(sql)?
                == 1)
        })
        .await
    }

    async fn kv_get(&self, tenant: &str, plugin: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let (t, p, k) = (tenant.to_owned(), plugin.to_owned(), key.to_owned());
        self.call(move |c| {
            c.query_row(
                "SELECT value FROM kv WHERE tenant = ? AND plugin = ? AND key = ?",
                params![t, p, k],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
        })
        .await
    }

    async fn kv_set(&self, tenant: &str, plugin: &str, key: &str, value: &[u8]) -> Result<()> {
        let (t, p, k, v) = (
            tenant.to_owned(),
            plugin.to_owned(),
            key.to_owned(),
            value.to_vec(),
        );
        self.call(move |c| {
            c.execute(
                "INSERT INTO kv (tenant, plugin, key, value) VALUES (?, ?, ?, ?)
                 ON CONFLICT (tenant, plugin, key) DO UPDATE SET value = excluded.value",
                params![t, p, k, v],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn kv_delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<bool> {
        let (t, p, k) = (tenant.to_owned(), plugin.to_owned(), key.to_owned());
        self.call(move |c| {
            Ok(c.execute(
                "DELETE FROM kv WHERE tenant = ? AND plugin = ? AND key = ?",
                params![t, p, k],
            )
            .map_err(sql)?
                == 1)
        })
        .await
    }

    async fn node_upsert(&self, node: &NodeInfo) -> Result<()> {
        let row = node_row(node)?;
        self.call(move |c| {
            let upsert = "ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, doc = excluded.doc";
            insert_row(c, "nodes", &row, upsert).map(drop).map_err(sql)
        })
        .await
    }

    async fn nodes_alive(&self, now: DateTime<Utc>) -> Result<Vec<NodeInfo>> {
        self.call(move |c| {
            docs(
                c,
                "SELECT doc FROM nodes WHERE expires_at > ? ORDER BY id",
                &[&ms(now)],
            )
        })
        .await
    }

    async fn node_remove(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |c| {
            Ok(c.execute("DELETE FROM nodes WHERE id = ?", [&id])
                .map_err(sql)?
                == 1)
        })
        .await
    }
}
