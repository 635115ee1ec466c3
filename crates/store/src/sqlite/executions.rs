//! Executions on SQLite, and the hot path's shortcuts.
//!
//! An execution is its JSON document beside the columns that queries use.
//! The claim — the one change every run makes before it starts — updates
//! only columns (`status`, the lease, `node`, `started_at`, `version`) and
//! leaves the document as it was; a read lays those columns over the
//! document ([`State::overlay`]). Every other write (a completion, a
//! release, a cancel) writes the whole row, document and columns alike, so
//! they never disagree after it.
//!
//! A batch of claims is one job on the connection thread: one transaction,
//! one `UPDATE … RETURNING` per execution, and the documents are parsed by
//! the caller, off that thread. A completion is written by the node that ran
//! it from its own copy of the execution, fenced by the lease in the `WHERE`
//! clause, so it needs no read first.

use super::rows::replace_row;
use super::{SqliteBackend, insert_row, is_unique_violation, ms, sql};
use crate::backend::ExecutionChange;
use crate::backend::{
    ClaimOrder, ExecutionFilter, PageQuery, Queued, Result, execution_row, from_doc,
};
use crate::traits::ExecutionStore;
use crate::{Lease, StoreError};
use chrono::{DateTime, Utc};
use rusqlite::params;
use rusqlite::{Connection, ToSql};
use std::sync::LazyLock;
use taskhost_model::effects::KvEffects;
use taskhost_model::{Execution, ExecutionStatus};

/// The columns a read of an execution selects, in [`State`]'s order.
pub(super) const COLUMNS: &str =
    "doc, status, version, lease_expires_at, lease_owner, lease_token, node, started_at";

/// The columns a completion by the running node changes (besides the
/// document and the version). [`SqliteBackend::write_fenced`] is used for
/// final completions only, which change nothing else.
const FINISH_COLUMNS: [&str; 8] = [
    "bytes",
    "status",
    "finished_at",
    "lease_expires_at",
    "lease_owner",
    "lease_token",
    "expires_at",
    "notify_due_at",
];

/// An execution as read: its document and the columns laid over it.
pub(super) struct RawExecution {
    doc: String,
    state: State,
}

/// The columns a claim changes without rewriting the document.
struct State {
    status: String,
    version: i64,
    lease_expires_at: Option<i64>,
    lease_owner: Option<String>,
    lease_token: Option<String>,
    node: Option<String>,
    started_at: Option<i64>,
}

impl RawExecution {
    /// Reads a row selected with [`COLUMNS`].
    pub(super) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawExecution> {
        Ok(RawExecution {
            doc: r.get(0)?,
            state: State {
                status: r.get(1)?,
                version: r.get(2)?,
                lease_expires_at: r.get(3)?,
                lease_owner: r.get(4)?,
                lease_token: r.get(5)?,
                node: r.get(6)?,
                started_at: r.get(7)?,
            },
        })
    }

    pub(super) fn parse(self) -> Result<Execution> {
        let mut e: Execution = from_doc(&self.doc)?;
        self.state.overlay(&mut e)?;
        Ok(e)
    }
}

impl State {
    /// Lays the columns over the document. `status`, `version` and
    /// `lease_expires_at` are always written with the row, so they are the
    /// truth. The others are written by every full write and by a claim; a
    /// NULL means "as the document says" (the rows of schema version 3 and
    /// older have NULL there).
    fn overlay(self, e: &mut Execution) -> Result<()> {
        e.status = ExecutionStatus::parse(&self.status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {:?}", self.status)))?;
        e.version = self.version as u64;
        e.lease_expires_at = self
            .lease_expires_at
            .and_then(DateTime::from_timestamp_millis);
        if self.lease_owner.is_some() {
            e.lease_owner = self.lease_owner;
        }
        if self.lease_token.is_some() {
            e.lease_token = self.lease_token;
        }
        if self.node.is_some() {
            e.node = self.node;
        }
        if let Some(at) = self
            .started_at
            .and_then(DateTime::<Utc>::from_timestamp_millis)
        {
            e.started_at = Some(at);
        }
        Ok(())
    }
}

/// Runs `SELECT COLUMNS FROM executions <rest>`, parsing on this thread.
pub(super) fn select(conn: &Connection, rest: &str, args: &[&dyn ToSql]) -> Result<Vec<Execution>> {
    let text = format!("SELECT {COLUMNS} FROM executions {rest}");
    let mut stmt = conn.prepare_cached(&text).map_err(sql)?;
    let rows = stmt.query_map(args, RawExecution::from_row).map_err(sql)?;
    crate::backend::readable(
        "execution",
        rows.map(|row| row.map_err(sql).and_then(RawExecution::parse)),
    )
}

/// Inserts an execution's row unless its fire key is taken; whether it is
/// stored. With `again`, the same row stored before (its own id under its
/// fire key) counts as stored, as on MongoDB after a retried insert. A taken
/// id (not a fire key) is a `Conflict`.
pub(super) fn insert(c: &Connection, row: &crate::backend::Row, again: bool) -> Result<bool> {
    match insert_row(c, "executions", row, "ON CONFLICT (fire_key) DO NOTHING") {
        Ok(1) => Ok(true),
        Ok(_) if !again => Ok(false),
        Ok(_) => c
            .prepare_cached("SELECT 1 FROM executions WHERE id = ?")
            .and_then(|mut s| s.exists([&row.id]))
            .map_err(sql),
        Err(e) if is_unique_violation(&e) => {
            Err(StoreError::Conflict(format!("execution {}", row.id)))
        }
        Err(e) => Err(sql(e)),
    }
}

/// One execution by id; unlike a list, a record that cannot be read is an
/// error (`Corrupt`) rather than left out.
pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<Execution>> {
    let text = format!("SELECT {COLUMNS} FROM executions WHERE id = ?");
    let mut stmt = conn.prepare_cached(&text).map_err(sql)?;
    let mut rows = stmt.query_map([id], RawExecution::from_row).map_err(sql)?;
    rows.next()
        .transpose()
        .map_err(sql)?
        .map(RawExecution::parse)
        .transpose()
}

/// The statements of the hot path, written out once (a statement's text is
/// also its key in the connection's statement cache).
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE executions SET status = 'running', lease_owner = ?1, node = ?1, lease_token = ?2,
           lease_expires_at = ?3, started_at = ?4, version = version + 1
         WHERE id = ?5 AND status = 'queued' AND due_at <= ?4
           AND (ckey IS NULL OR climit > (
             SELECT COUNT(*) FROM executions AS held
              WHERE held.tenant = executions.tenant AND held.ckey = executions.ckey
                AND held.status = 'running') + (
             SELECT COUNT(*) FROM executions AS ended
              WHERE ended.tenant = executions.tenant AND ended.ckey = executions.ckey
                AND ended.finished_at > ?4))
           AND (rkey IS NULL OR rlimit > (
             SELECT COUNT(*) FROM executions AS began
              WHERE began.tenant = executions.tenant AND began.rkey = executions.rkey
                AND began.started_at > ?4 - executions.rper))
         RETURNING {COLUMNS}"
    )
});
/// Sets [`FINISH_COLUMNS`] in their order, then the document.
static FINISH: LazyLock<String> = LazyLock::new(|| {
    let sets: Vec<String> = FINISH_COLUMNS.iter().map(|n| format!("{n} = ?")).collect();
    format!(
        "UPDATE executions SET {}, doc = ?, version = version + 1
         WHERE id = ? AND status = 'running' AND lease_owner = ? AND lease_token = ?
         RETURNING version",
        sets.join(", ")
    )
});

/// Claims one execution by columns alone; the row as it is now, if claimed.
/// A run with a concurrency key is claimed only while fewer than its limit
/// of the key's runs are running (a lapsed lease too, until a reaper
/// re-queues the run: its node may still start it), or ended after this
/// claim's instant (so a run's start never comes before the end of the run
/// whose slot it takes); a run with a rate-limit key, only while fewer than
/// its limit of the key's runs started within its period before (or after)
/// this claim's instant. Both in the same write transaction, so no other
/// claim comes between the count and the claim.
fn claim_one(conn: &Connection, id: &str, order: &ClaimOrder) -> Result<Option<RawExecution>> {
    let token = taskhost_model::new_id();
    let args: [&dyn ToSql; 5] = [
        &order.owner,
        &token,
        &ms(order.lease_until),
        &ms(order.now),
        &id,
    ];
    let mut stmt = conn.prepare_cached(&CLAIM).map_err(sql)?;
    let mut rows = stmt.query(args.as_slice()).map_err(sql)?;
    match rows.next().map_err(sql)? {
        Some(row) => Ok(Some(RawExecution::from_row(row).map_err(sql)?)),
        None => Ok(None),
    }
}

#[async_trait::async_trait]
impl ExecutionStore for SqliteBackend {
    async fn execution_insert(&self, execution: &Execution) -> Result<bool> {
        let (row, what) = (
            execution_row(execution)?,
            format!("execution {}", execution.id),
        );
        self.call_statement(move |c| {
            insert(c, &row, true).map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::Conflict(what),
                other => other,
            })
        })
        .await
    }

    async fn execution_get(&self, id: &str) -> Result<Option<Execution>> {
        let id = id.to_owned();
        self.call(move |c| get(c, &id)).await
    }

    async fn execution_get_many(&self, ids: &[String]) -> Result<Vec<Execution>> {
        let ids = ids.to_vec();
        self.call(move |c| {
            let mut found = Vec::with_capacity(ids.len());
            for id in &ids {
                found.extend(get(c, id)?);
            }
            Ok(found)
        })
        .await
    }

    async fn execution_insert_many(&self, executions: &[Execution]) -> Result<()> {
        let rows = executions
            .iter()
            .map(execution_row)
            .collect::<Result<Vec<_>>>()?;
        self.call(move |c| {
            // One job: its savepoint makes the whole batch all or nothing.
            for row in &rows {
                if !insert(c, row, false)? {
                    return Err(StoreError::Conflict(format!("execution {}", row.id)));
                }
            }
            Ok(())
        })
        .await
    }

    async fn executions_claim(&self, ids: &[String], order: &ClaimOrder) -> Result<Vec<Execution>> {
        let (ids, order) = (ids.to_vec(), order.clone());
        let raw = self
            .call(move |c| {
                let mut claimed = Vec::with_capacity(ids.len());
                for id in &ids {
                    claimed.extend(claim_one(c, id, &order)?);
                }
                Ok(claimed)
            })
            .await?;
        raw.into_iter().map(RawExecution::parse).collect()
    }

    async fn execution_write_fenced(&self, e: &Execution, held: &Lease) -> Result<Option<u64>> {
        let row = execution_row(e)?;
        let (owner, token) = (held.owner.clone(), held.token.clone());
        self.call_statement(move |c| {
            // Only the columns a finished run changes: an index is updated
            // only when a column it holds is set.
            let mut args: Vec<&dyn ToSql> = Vec::with_capacity(FINISH_COLUMNS.len() + 4);
            for name in FINISH_COLUMNS {
                let (_, value) = row
                    .fields
                    .iter()
                    .find(|(n, _)| *n == name)
                    .ok_or_else(|| StoreError::backend(format!("no column {name} in a row")))?;
                args.push(value);
            }
            args.extend([&row.doc as &dyn ToSql, &row.id, &owner, &token]);
            let mut stmt = c.prepare_cached(&FINISH).map_err(sql)?;
            let mut rows = stmt.query(args.as_slice()).map_err(sql)?;
            match rows.next().map_err(sql)? {
                Some(r) => Ok(Some(r.get::<_, i64>(0).map_err(sql)? as u64)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn execution_update(
        &self,
        id: &str,
        change: ExecutionChange,
    ) -> Result<Option<Execution>> {
        self.execution_update_committing(id, change, &KvEffects::default())
            .await
    }

    async fn execution_update_committing(
        &self,
        id: &str,
        mut change: ExecutionChange,
        effects: &KvEffects,
    ) -> Result<Option<Execution>> {
        let (id, effects) = (id.to_owned(), effects.clone());
        self.call(move |c| {
            // Inside the batch's IMMEDIATE transaction: no other writer, in this
            // process or another, can come between the read and the write.
            let Some(mut execution) = get(c, &id)? else {
                return Ok(None);
            };
            let expected = execution.version;
            if !change(&mut execution) {
                return Ok(None);
            }
            execution.version += 1;
            let row = execution_row(&execution)?;
            if !replace_row(c, "executions", &row, expected).map_err(sql)? {
                return Ok(None);
            }
            // In the job's savepoint: a refused write undoes the record too.
            super::kv::commit_in(c, &effects)?;
            Ok(Some(execution))
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
        let mut text = String::from("WHERE tenant = ?");
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
        let status = filter.status.map_or("skipped", |v| v.as_str());
        let op = if filter.status.is_some() { "=" } else { "!=" };
        add(&format!(" AND status {op} ?"), Box::new(status));
        if let Some(v) = filter.since {
            add(" AND created_at >= ?", Box::new(ms(v)));
        }
        if let Some(v) = filter.until {
            add(" AND created_at < ?", Box::new(ms(v)));
        }
        if let Some(v) = &filter.waiting_for {
            add(" AND waiting_event = ?", Box::new(v.clone()));
        }
        let text = super::paged(text, &mut args, page);
        self.call(move |c| {
            let refs: Vec<&dyn ToSql> = args.iter().map(|a| a.as_ref() as &dyn ToSql).collect();
            select(c, &text, &refs)
        })
        .await
    }

    async fn executions_due_tenants(&self, before: DateTime<Utc>) -> Result<Vec<String>> {
        let _ = before; // tenants with only later work answer empty in `executions_due`
        self.call(move |c| {
            // Distinct tenants by one index seek each (a loose index scan),
            // not a scan of the whole queue.
            let mut stmt = c
                .prepare_cached(
                    "WITH RECURSIVE t(tenant) AS (
                       SELECT MIN(tenant) FROM executions WHERE status = 'queued'
                       UNION ALL
                       SELECT (SELECT MIN(tenant) FROM executions
                               WHERE status = 'queued' AND tenant > t.tenant)
                       FROM t WHERE t.tenant IS NOT NULL)
                     SELECT tenant FROM t WHERE tenant IS NOT NULL",
                )
                .map_err(sql)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(sql)?;
            rows.collect::<rusqlite::Result<Vec<String>>>().map_err(sql)
        })
        .await
    }

    async fn executions_due(
        &self,
        tenant: &str,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Queued>> {
        let tenant = tenant.to_owned();
        self.call(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, priority, due_at FROM executions
                     WHERE status = 'queued' AND tenant = ? AND due_at <= ?
                     ORDER BY priority DESC, due_at, id LIMIT ?",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map(rusqlite::params![tenant, ms(before), limit], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i32>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(sql)?;
            rows.map(|row| {
                let (id, priority, due) = row.map_err(sql)?;
                let due_at = DateTime::from_timestamp_millis(due)
                    .ok_or_else(|| StoreError::Corrupt(format!("due_at {due} of {id}")))?;
                Ok(Queued {
                    id,
                    tenant: tenant.clone(),
                    priority,
                    due_at,
                })
            })
            .collect()
        })
        .await
    }

    async fn executions_queued_count(&self, tenant: &str) -> Result<u64> {
        let tenant = tenant.to_owned();
        self.call(move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM executions WHERE status = 'queued' AND tenant = ?",
                [&tenant],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(sql)
        })
        .await
    }

    async fn executions_stored(&self, tenant: &str) -> Result<(u64, u64)> {
        let tenant = tenant.to_owned();
        // From the index alone (`executions_tenant` holds each row's size).
        self.call_statement(move |c| {
            c.query_row(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM executions WHERE tenant = ?",
                [&tenant],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .map(|(n, bytes)| (n.max(0) as u64, bytes.max(0) as u64))
            .map_err(sql)
        })
        .await
    }

    async fn executions_delete_expired(&self, now: DateTime<Utc>, limit: u32) -> Result<u64> {
        self.call(move |c| {
            c.execute(
                "DELETE FROM executions WHERE id IN (
                   SELECT id FROM executions WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)",
                params![ms(now), limit],
            )
            .map(|n| n as u64)
            .map_err(sql)
        })
        .await
    }

    async fn executions_expired(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Execution>> {
        self.call(move |c| {
            select(
                c,
                "WHERE status = 'running' AND lease_expires_at < ? ORDER BY lease_expires_at LIMIT ?",
                &[&ms(now), &limit],
            )
        })
        .await
    }

    async fn executions_active(&self, schedule_ids: &[String]) -> Result<Vec<Execution>> {
        let mut found = Vec::new();
        // At most 500 parameters a statement.
        for ids in schedule_ids.chunks(500) {
            let marks = vec!["?"; ids.len()].join(",");
            let rest =
                format!("WHERE schedule_id IN ({marks}) AND status IN ('queued', 'running')");
            let ids = ids.to_vec();
            let mut part = self
                .call(move |c| {
                    let args: Vec<&dyn rusqlite::ToSql> =
                        ids.iter().map(|id| id as &dyn rusqlite::ToSql).collect();
                    select(c, &rest, &args)
                })
                .await?;
            found.append(&mut part);
        }
        Ok(found)
    }

    async fn executions_notify_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<Execution>> {
        let marks = vec!["?"; skip.len()].join(", ");
        let text = format!(
            "WHERE notify_due_at <= ? AND tenant NOT IN ({marks}) ORDER BY notify_due_at LIMIT ?"
        );
        let mut args: Vec<Box<dyn ToSql + Send>> = vec![Box::new(ms(now))];
        args.extend(
            skip.iter()
                .map(|t| Box::new(t.clone()) as Box<dyn ToSql + Send>),
        );
        args.push(Box::new(limit));
        self.call(move |c| {
            let refs: Vec<&dyn ToSql> = args.iter().map(|a| a.as_ref() as &dyn ToSql).collect();
            select(c, &text, &refs)
        })
        .await
    }
}
