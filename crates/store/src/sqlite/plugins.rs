//! Plugins, their wasm and their aliases on SQLite. A plugin's delete and
//! an alias's move each check in their own transaction that nothing uses
//! what they remove, so the two cannot both succeed.

use super::rows::{doc, insert_row, list, paged};
use super::{SqliteBackend, is_unique_violation, sql};
use crate::StoreError;
use crate::backend::{PageQuery, PluginFilter, Result, Usage, from_doc, plugin_row};
use crate::traits::PluginStore;
use rusqlite::{Connection, OptionalExtension, ToSql, params};
use taskhost_model::quota::{QuotaExceeded, QuotaKind, Quotas};
use taskhost_model::{PluginAlias, PluginRecord};

#[async_trait::async_trait]
impl PluginStore for SqliteBackend {
    async fn plugin_insert(
        &self,
        plugin: &PluginRecord,
        wasm: &[u8],
        quota: Option<&Quotas>,
    ) -> Result<()> {
        let (row, wasm) = (plugin_row(plugin)?, wasm.to_vec());
        let what = format!("plugin {} version {}", plugin.name, plugin.version);
        let (tenant, quota) = (plugin.tenant.clone(), quota.copied());
        self.call(move |c| {
            // In the write's transaction: racing uploads are counted in turn.
            if let Some(q) = quota {
                let (kept, bytes) = plugins_kept(c, &tenant)?;
                QuotaExceeded::check(QuotaKind::Plugins, q.plugins, kept, 1)?;
                let size = wasm.len() as u64;
                QuotaExceeded::check(QuotaKind::PluginBytes, q.plugin_bytes, bytes, size)?;
            }
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
            if let Some(why) = in_use(c, &id)? {
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

    async fn alias_delete(&self, tenant: &str, name: &str, alias: &str) -> Result<bool> {
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

    async fn alias_get(
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

    async fn alias_list(&self, tenant: &str, name: &str) -> Result<Vec<PluginAlias>> {
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

    async fn tenant_usage(&self, tenant: &str) -> Result<Usage> {
        let tenant = tenant.to_owned();
        self.call(move |c| {
            let (plugins, plugin_bytes) = plugins_kept(c, &tenant)?;
            Ok(Usage {
                plugins,
                plugin_bytes,
                schedules: super::schedules::schedules_kept(c, &tenant)?,
            })
        })
        .await
    }
}

/// How many plugin versions `tenant` keeps, and their bytes.
fn plugins_kept(c: &Connection, tenant: &str) -> Result<(u64, u64)> {
    let (count, bytes) = c
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(json_extract(doc, '$.size')), 0)
             FROM plugins WHERE tenant = ?",
            [tenant],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )
        .map_err(sql)?;
    Ok((count.max(0) as u64, bytes.max(0) as u64))
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
