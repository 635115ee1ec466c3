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

use super::Lease;
use super::StoreError;
use super::backend::{
    Backend, ClaimOrder, ExecutionChange, ExecutionFilter, FireFilter, PageQuery, PluginFilter,
    Queued, Result, ScheduleFilter, Usage, execution_row, from_doc, node_row, plugin_row,
    schedule_row,
};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, ToSql, params};
use taskhost_model::kv::KvQuota;
use taskhost_model::{Execution, NodeInfo, PluginAlias, PluginRecord, Schedule, SecretInfo};

mod conn;
mod executions;
mod fires;
mod kv;
mod rows;
mod secrets;

pub use conn::SqliteBackend;
use rows::{doc, docs, insert_row, list, ms, paged, replace_row};

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
        if let Some(version) = &filter.version {
            text.push_str(" AND version = ?");
            args.push(Box::new(version.clone()));
        }
        let text = paged(text, &mut args, page);
        self.call(move |c| list(c, &text, &args)).await
    }

    async fn plugin_delete(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |c| {
            if let Some(why) = fires::in_use(c, &id)? {
                return Err(StoreError::InUse(why));
            }
            c.execute("DELETE FROM plugin_wasm WHERE id = ?", [&id])
                .map_err(sql)?;
            Ok(c.execute("DELETE FROM plugins WHERE id = ?", [&id])
                .map_err(sql)?
                > 0)
        })
        .await
    }

    async fn alias_put(&self, alias: &PluginAlias) -> Result<bool> {
        self.put_alias(alias).await
    }

    async fn alias_delete(&self, tenant: &str, name: &str, alias: &str) -> Result<bool> {
        self.delete_alias(tenant, name, alias).await
    }

    async fn alias_get(
        &self,
        tenant: &str,
        name: &str,
        alias: &str,
    ) -> Result<Option<PluginAlias>> {
        self.get_alias(tenant, name, alias).await
    }

    async fn alias_list(&self, tenant: &str, name: &str) -> Result<Vec<PluginAlias>> {
        self.list_aliases(tenant, name).await
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
        if let Some(alias) = &filter.plugin_alias {
            text.push_str(" AND plugin_alias = ?");
            args.push(Box::new(alias.clone()));
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
                "SELECT doc FROM schedules WHERE next_fire_at <= ? ORDER BY next_fire_at LIMIT ?",
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
        self.call_statement(move |c| {
            executions::insert(c, &row, true).map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::Conflict(what),
                other => other,
            })
        })
        .await
    }

    async fn fires_insert(&self, rows: &[Execution]) -> Result<Vec<bool>> {
        self.insert_fires(rows).await
    }

    async fn fires_list(
        &self,
        tenant: &str,
        schedule_id: &str,
        filter: &FireFilter,
        page: &PageQuery,
    ) -> Result<Vec<Execution>> {
        self.list_fires(tenant, schedule_id, filter, page).await
    }

    async fn fires_count(
        &self,
        schedule_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, Option<String>, u64)>> {
        self.count_fires(schedule_id, since).await
    }

    async fn execution_get(&self, id: &str) -> Result<Option<Execution>> {
        let id = id.to_owned();
        self.call(move |c| executions::get(c, &id)).await
    }

    async fn execution_insert_many(&self, executions: &[Execution]) -> Result<()> {
        self.insert_many(executions).await
    }

    fn batch_claims(&self) -> bool {
        true
    }

    async fn executions_claim(&self, ids: &[String], order: &ClaimOrder) -> Result<Vec<Execution>> {
        self.claim_many(ids, order).await
    }

    async fn execution_write_fenced(&self, e: &Execution, held: &Lease) -> Result<Option<u64>> {
        self.write_fenced(e, held).await
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
            let Some(mut execution) = executions::get(c, &id)? else {
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
        self.list_executions(tenant, filter, page).await
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
        self.due(tenant, before, limit).await
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

    async fn tenant_usage(&self, tenant: &str) -> Result<Usage> {
        let tenant = tenant.to_owned();
        self.call(move |c| {
            let (plugins, plugin_bytes) = c
                .query_row(
                    "SELECT COUNT(*), COALESCE(SUM(json_extract(doc, '$.size')), 0)
                     FROM plugins WHERE tenant = ?",
                    [&tenant],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                )
                .map_err(sql)?;
            let schedules: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM schedules WHERE tenant = ?",
                    [&tenant],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            Ok(Usage {
                plugins: plugins as u64,
                plugin_bytes: plugin_bytes as u64,
                schedules: schedules as u64,
            })
        })
        .await
    }

    async fn executions_expired(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Execution>> {
        self.call(move |c| {
            executions::select(
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
                    executions::select(c, &rest, &args)
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
    ) -> Result<Vec<Execution>> {
        self.call(move |c| {
            executions::select(
                c,
                "WHERE notify_due_at <= ? ORDER BY notify_due_at LIMIT ?",
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
        self.kv_read(tenant, plugin, key).await
    }

    async fn kv_set(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
        value: &[u8],
        quota: Option<KvQuota>,
    ) -> Result<()> {
        self.kv_write(tenant, plugin, key, value, quota).await
    }

    async fn kv_delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<bool> {
        self.kv_remove(tenant, plugin, key).await
    }

    async fn secret_put(
        &self,
        tenant: &str,
        name: &str,
        sealed: &[u8],
        now: DateTime<Utc>,
        max: u64,
    ) -> Result<SecretInfo> {
        self.put_secret(tenant, name, sealed, now, max).await
    }

    async fn secret_list(&self, tenant: &str) -> Result<Vec<SecretInfo>> {
        self.list_secrets(tenant).await
    }

    async fn secret_get(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>> {
        self.get_secret(tenant, name).await
    }

    async fn secret_delete(&self, tenant: &str, name: &str) -> Result<bool> {
        self.delete_secret(tenant, name).await
    }

    async fn node_upsert(&self, node: &NodeInfo) -> Result<bool> {
        let row = node_row(node)?;
        self.call(move |c| {
            let upsert = "ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, doc = excluded.doc";
            insert_row(c, "nodes", &row, upsert).map_err(sql)?;
            c.query_row("SELECT draining FROM nodes WHERE id = ?", [&row.id], |r| {
                r.get::<_, bool>(0)
            })
            .map_err(sql)
        })
        .await
    }

    async fn nodes_alive(&self, now: DateTime<Utc>) -> Result<Vec<NodeInfo>> {
        self.call(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT doc, draining FROM nodes WHERE expires_at > ? ORDER BY id")
                .map_err(sql)?;
            let rows = stmt
                .query_map([ms(now)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?))
                })
                .map_err(sql)?;
            rows.map(|row| {
                let (doc, draining) = row.map_err(sql)?;
                let mut node: NodeInfo = from_doc(&doc)?;
                node.draining = draining;
                Ok(node)
            })
            .collect()
        })
        .await
    }

    async fn node_drain(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |c| {
            Ok(
                c.execute("UPDATE nodes SET draining = 1 WHERE id = ?", [&id])
                    .map_err(sql)?
                    == 1,
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
