//! Schedules and their fire ledger on SQLite. A fire's record is its
//! execution row (or a `skipped` row) under the unique `fire_key`;
//! `fire_at`, `fate` and `fire_reason` are columns, so the ledger pages and
//! counts from one index (`executions_fires`).

use super::rows::{doc, docs, insert_row, list, ms, paged, replace_row};
use super::{SqliteBackend, executions, is_unique_violation, sql};
use crate::PassWritten;
use crate::StoreError;
use crate::backend::execution_row;
use crate::backend::{FireFilter, PageQuery, Result, ScheduleFilter, schedule_row};
use crate::traits::ScheduleStore;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, ToSql, params};
use taskhost_model::quota::{QuotaExceeded, QuotaKind};
use taskhost_model::{Execution, Schedule};

#[async_trait::async_trait]
impl ScheduleStore for SqliteBackend {
    async fn schedule_insert(&self, schedule: &Schedule, max: Option<u64>) -> Result<()> {
        let (row, what) = (
            schedule_row(schedule)?,
            format!("schedule {:?}", schedule.name),
        );
        let tenant = schedule.tenant.clone();
        self.call(move |c| {
            // In the write's transaction: racing creates are counted in turn.
            if let Some(max) = max {
                let kept = schedules_kept(c, &tenant)?;
                QuotaExceeded::check(QuotaKind::Schedules, max, kept, 1)?;
            }
            match insert_row(c, "schedules", &row, "") {
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(what)),
                other => other.map(drop).map_err(sql),
            }
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
        if let Some(event) = &filter.event {
            text.push_str(" AND event_name = ?");
            args.push(Box::new(event.clone()));
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

    async fn schedules_due(
        &self,
        before: DateTime<Utc>,
        partitions: Option<&[u32]>,
        limit: u32,
    ) -> Result<Vec<Schedule>> {
        let partitions = partitions.map(<[u32]>::to_vec);
        self.call(move |c| {
            let mut text = "SELECT doc FROM schedules WHERE next_fire_at <= ?1".to_owned();
            if let Some(partitions) = &partitions {
                let list: Vec<String> = partitions.iter().map(u32::to_string).collect();
                text.push_str(&format!(" AND partition_no IN ({})", list.join(",")));
            }
            text.push_str(" ORDER BY next_fire_at LIMIT ?2");
            docs(c, &text, &[&ms(before), &limit])
        })
        .await
    }

    async fn fires_record(&self, rows: &[Execution], moves: &[Schedule]) -> Result<PassWritten> {
        let rows = rows.iter().map(execution_row).collect::<Result<Vec<_>>>()?;
        let moves = moves
            .iter()
            .map(|s| Ok((schedule_row(s)?, s.version.saturating_sub(1))))
            .collect::<Result<Vec<_>>>()?;
        // One job: one transaction for the records and the cursors.
        self.call(move |c| {
            let inserted = rows
                .iter()
                .map(|row| super::executions::insert(c, row, true))
                .collect::<Result<Vec<bool>>>()?;
            let moved = moves
                .iter()
                .map(|(row, expected)| replace_row(c, "schedules", row, *expected).map_err(sql))
                .collect::<Result<Vec<bool>>>()?;
            Ok(PassWritten { inserted, moved })
        })
        .await
    }

    async fn fires_list(
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

    async fn fires_count(
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
}

/// How many schedules `tenant` keeps.
pub(super) fn schedules_kept(c: &Connection, tenant: &str) -> Result<u64> {
    let count: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM schedules WHERE tenant = ?",
            [tenant],
            |r| r.get(0),
        )
        .map_err(sql)?;
    Ok(count.max(0) as u64)
}
