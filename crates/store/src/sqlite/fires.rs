//! The fire ledger and plugin aliases on SQLite.
//!
//! A fire's record is its execution row (or a `skipped` row) under the
//! unique `fire_key`; `fire_at`, `fate` and `fire_reason` are columns so the
//! ledger pages and counts from one index (`executions_fires`).

use super::{SqliteBackend, executions, from_doc, ms, sql};
use crate::StoreError;
use crate::backend::{FireFilter, PageQuery, Result, execution_row};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, ToSql, params};
use taskhost_model::{Execution, PluginAlias};

impl SqliteBackend {
    /// Every row insert-if-absent, in one transaction.
    pub(super) async fn insert_fires(&self, rows: &[Execution]) -> Result<Vec<bool>> {
        let rows = rows.iter().map(execution_row).collect::<Result<Vec<_>>>()?;
        self.call(move |c| {
            rows.iter()
                .map(|row| executions::insert(c, row, true))
                .collect()
        })
        .await
    }

    pub(super) async fn list_fires(
        &self,
        tenant: &str,
        schedule_id: &str,
        filter: &FireFilter,
        page: &PageQuery,
    ) -> Result<Vec<Execution>> {
        let mut args: Vec<Box<dyn ToSql + Send>> = vec![
            Box::new(schedule_id.to_owned()),
            Box::new(tenant.to_owned()),
        ];
        let mut text = String::from("WHERE schedule_id = ? AND fire_at IS NOT NULL AND tenant = ?");
        let mut add = |clause: &str, arg: Box<dyn ToSql + Send>| {
            text.push_str(clause);
            args.push(arg);
        };
        if let Some(v) = filter.since {
            add(" AND fire_at >= ?", Box::new(ms(v)));
        }
        if let Some(v) = filter.until {
            add(" AND fire_at < ?", Box::new(ms(v)));
        }
        if let Some(v) = filter.fate {
            add(" AND fate = ?", Box::new(v.as_str()));
        }
        for (i, t) in filter.at.iter().enumerate() {
            let open = if i == 0 { " AND fire_at IN (?" } else { ", ?" };
            let close = if i + 1 == filter.at.len() { ")" } else { "" };
            add(&format!("{open}{close}"), Box::new(ms(*t)));
        }
        if let Some(before) = &page.before {
            let before: i64 = before
                .parse()
                .map_err(|_| StoreError::backend(format!("invalid fire cursor {before:?}")))?;
            add(" AND fire_at < ?", Box::new(before));
        }
        text.push_str(&format!(" ORDER BY fire_at DESC LIMIT {}", page.limit));
        self.call(move |c| {
            let refs: Vec<&dyn ToSql> = args.iter().map(|a| a.as_ref() as &dyn ToSql).collect();
            executions::select(c, &text, &refs)
        })
        .await
    }

    pub(super) async fn count_fires(
        &self,
        schedule_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, Option<String>, u64)>> {
        let schedule_id = schedule_id.to_owned();
        self.call(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT fate, fire_reason, COUNT(*) FROM executions
                     WHERE schedule_id = ? AND fire_at >= ? AND fate IS NOT NULL
                     GROUP BY fate, fire_reason",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![schedule_id, ms(since)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
                })
                .map_err(sql)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql)
        })
        .await
    }

    pub(super) async fn put_alias(&self, alias: &PluginAlias) -> Result<bool> {
        let doc = serde_json::to_string(alias).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let a = alias.clone();
        self.call_statement(move |c| {
            // One statement: a delete of the plugin cannot come in between.
            c.execute(
                "INSERT INTO plugin_aliases (tenant, name, alias, plugin_id, doc)
                 SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM plugins WHERE id = ?4)
                 ON CONFLICT (tenant, name, alias) DO UPDATE
                 SET plugin_id = excluded.plugin_id, doc = excluded.doc",
                params![a.tenant, a.name, a.alias, a.plugin_id, doc],
            )
            .map(|n| n == 1)
            .map_err(sql)
        })
        .await
    }

    pub(super) async fn delete_alias(&self, tenant: &str, name: &str, alias: &str) -> Result<bool> {
        let key = [tenant.to_owned(), name.to_owned(), alias.to_owned()];
        self.call_statement(move |c| {
            c.execute(
                "DELETE FROM plugin_aliases WHERE tenant = ? AND name = ? AND alias = ?",
                params![key[0], key[1], key[2]],
            )
            .map(|n| n == 1)
            .map_err(sql)
        })
        .await
    }

    pub(super) async fn get_alias(
        &self,
        tenant: &str,
        name: &str,
        alias: &str,
    ) -> Result<Option<PluginAlias>> {
        let key = [tenant.to_owned(), name.to_owned(), alias.to_owned()];
        self.call(move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM plugin_aliases WHERE tenant = ? AND name = ? AND alias = ?",
                    params![key[0], key[1], key[2]],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            doc.map(|d| from_doc(&d)).transpose()
        })
        .await
    }

    pub(super) async fn list_aliases(&self, tenant: &str, name: &str) -> Result<Vec<PluginAlias>> {
        let key = [tenant.to_owned(), name.to_owned()];
        self.call(move |c| {
            super::docs(
                c,
                "SELECT doc FROM plugin_aliases WHERE tenant = ? AND name = ? ORDER BY alias",
                &[&key[0], &key[1]],
            )
        })
        .await
    }
}

/// Why a plugin may not be deleted, if it may not: a schedule pinned to it,
/// an alias pointing to it, or a schedule following `name@latest` while it
/// is the newest version of its name. Runs in the delete's transaction.
pub(super) fn in_use(c: &rusqlite::Connection, id: &str) -> Result<Option<String>> {
    let one = |text: &str, args: &[&dyn ToSql]| -> Result<Option<String>> {
        c.query_row(text, args, |r| r.get(0))
            .optional()
            .map_err(sql)
    };
    if let Some(s) = one(
        "SELECT name FROM schedules WHERE plugin_id = ? AND plugin_alias IS NULL LIMIT 1",
        &[&id],
    )? {
        return Ok(Some(format!("the plugin is used by schedule {s:?}")));
    }
    if let Some(a) = one(
        "SELECT name || '@' || alias FROM plugin_aliases WHERE plugin_id = ? LIMIT 1",
        &[&id],
    )? {
        return Ok(Some(format!(
            "alias {a} points to this plugin; move the alias first"
        )));
    }
    let Some((tenant, name)) = c
        .query_row("SELECT tenant, name FROM plugins WHERE id = ?", [id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()
        .map_err(sql)?
    else {
        return Ok(None);
    };
    let newest = one(
        "SELECT id FROM plugins WHERE tenant = ? AND name = ? ORDER BY id DESC LIMIT 1",
        &[&tenant, &name],
    )?;
    let latest = format!("{name}@{}", taskhost_model::LATEST);
    if newest.as_deref() == Some(id)
        && let Some(s) = one(
            "SELECT name FROM schedules WHERE tenant = ? AND plugin_alias = ? LIMIT 1",
            &[&tenant, &latest],
        )?
    {
        return Ok(Some(format!(
            "schedule {s:?} follows {latest}, and this is the newest version"
        )));
    }
    Ok(None)
}
