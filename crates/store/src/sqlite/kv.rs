//! Plugin key-value state on SQLite, with each tenant's usage (keys and
//! bytes) kept in `kv_usage` in the same transaction as every write, so a
//! quota check is one read and never races another writer.

use super::{SqliteBackend, sql};
use crate::backend::Result;
use crate::traits::StateStore;
use rusqlite::{Connection, OptionalExtension, params};
use taskhost_model::effects::KvEffects;
use taskhost_model::kv::KvQuota;

/// A tenant's kv keys and bytes.
fn kv_usage(c: &Connection, tenant: &str) -> Result<(u64, u64)> {
    let usage: Option<(i64, i64)> = c
        .query_row(
            "SELECT keys, bytes FROM kv_usage WHERE tenant = ?",
            [tenant],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql)?;
    let (keys, bytes) = usage.unwrap_or((0, 0));
    Ok((keys.max(0) as u64, bytes.max(0) as u64))
}

fn add_kv_usage(c: &Connection, tenant: &str, keys: i64, bytes: i64) -> Result<()> {
    c.execute(
        "INSERT INTO kv_usage (tenant, keys, bytes) VALUES (?1, ?2, ?3)
         ON CONFLICT (tenant) DO UPDATE SET keys = keys + ?2, bytes = bytes + ?3",
        params![tenant, keys, bytes],
    )
    .map(drop)
    .map_err(sql)
}

/// Sets `key` in the caller's transaction: the usage read, the check and
/// both writes with no other writer in between.
fn set_in(
    c: &Connection,
    t: &str,
    p: &str,
    k: &str,
    v: &[u8],
    quota: Option<KvQuota>,
) -> Result<()> {
    let old: Option<i64> = c
        .query_row(
            "SELECT length(value) FROM kv WHERE tenant = ? AND plugin = ? AND key = ?",
            params![t, p, k],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    let old = old.map(|v| v as u64 + k.len() as u64);
    let usage = quota.map(|_| kv_usage(c, t)).transpose()?;
    let (keys, bytes) = KvQuota::admit(quota, usage, old, (k.len() + v.len()) as u64)?;
    c.execute(
        "INSERT INTO kv (tenant, plugin, key, value) VALUES (?, ?, ?, ?)
         ON CONFLICT (tenant, plugin, key) DO UPDATE SET value = excluded.value",
        params![t, p, k, v],
    )
    .map_err(sql)?;
    add_kv_usage(c, t, keys, bytes)
}

/// Deletes `key` in the caller's transaction; whether it was there.
fn delete_in(c: &Connection, t: &str, p: &str, k: &str) -> Result<bool> {
    let old: Option<i64> = c
        .query_row(
            "DELETE FROM kv WHERE tenant = ? AND plugin = ? AND key = ? RETURNING length(value)",
            params![t, p, k],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    match old {
        Some(len) => {
            add_kv_usage(c, t, -1, -(len + k.len() as i64))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Writes a run's held kv writes in the caller's transaction (that of its
/// result); a quota they now break fails it all.
pub(super) fn commit_in(c: &Connection, effects: &KvEffects) -> Result<()> {
    let Some(ns) = &effects.namespace else {
        return Ok(());
    };
    for (key, value) in &effects.writes {
        match value {
            Some(v) => set_in(c, &ns.tenant, &ns.plugin, key, v, effects.quota)?,
            None => {
                delete_in(c, &ns.tenant, &ns.plugin, key)?;
            }
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl StateStore for SqliteBackend {
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

    async fn kv_set(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
        value: &[u8],
        quota: Option<KvQuota>,
    ) -> Result<()> {
        let (t, p, k, v) = (
            tenant.to_owned(),
            plugin.to_owned(),
            key.to_owned(),
            value.to_vec(),
        );
        self.call(move |c| set_in(c, &t, &p, &k, &v, quota)).await
    }

    async fn kv_delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<bool> {
        let (t, p, k) = (tenant.to_owned(), plugin.to_owned(), key.to_owned());
        self.call(move |c| delete_in(c, &t, &p, &k)).await
    }

    async fn kv_usage(&self, tenant: &str) -> Result<(u64, u64)> {
        let tenant = tenant.to_owned();
        self.call_statement(move |c| kv_usage(c, &tenant)).await
    }
}
