//! Plugins, their wasm and their aliases on MongoDB. The wasm is stored in
//! chunks of [`CHUNK_BYTES`] (a document is at most 16 MiB), written first,
//! so a plugin's record is visible only with all its bytes. Aliases are
//! documents with `_id = tenant/name/alias`; a delete marks the plugin
//! `deleting` before it checks its aliases, and a move checks the plugin
//! again after its write, so a move and a delete cannot both succeed.

use super::set_if;
use super::usage::Take;
use super::{MongoBackend, db_err, document, is_duplicate, record};
use crate::StoreError;
use crate::backend::{PageQuery, PluginFilter, Result, Usage, plugin_row};
use crate::traits::PluginStore;
use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use taskhost_model::PluginAlias;
use taskhost_model::PluginRecord;
use taskhost_model::quota::{QuotaKind, Quotas};

impl MongoBackend {
    /// Writes a plugin's chunks, then its record (removing the chunks if the
    /// record is refused).
    async fn plugin_write(&self, plugin: &PluginRecord, wasm: &[u8]) -> Result<()> {
        let chunks: Vec<Document> = wasm
            .chunks(CHUNK_BYTES)
            .enumerate()
            .map(|(n, bytes)| {
                let data = bson::Binary {
                    subtype: bson::spec::BinarySubtype::Generic,
                    bytes: bytes.to_vec(),
                };
                doc! { "plugin_id": &plugin.id, "n": n as i64, "data": data }
            })
            .collect();
        // Chunks first: a plugin document is visible only with all its bytes.
        if !chunks.is_empty() {
            self.coll("plugin_chunks")
                .insert_many(chunks)
                .await
                .map_err(db_err)?;
        }
        match self
            .coll("plugins")
            .insert_one(document(&plugin_row(plugin)?))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = self
                    .coll("plugin_chunks")
                    .delete_many(doc! { "plugin_id": &plugin.id })
                    .await;
                Err(if is_duplicate(&e) {
                    StoreError::Conflict(format!(
                        "plugin {} version {}",
                        plugin.name, plugin.version
                    ))
                } else {
                    db_err(e)
                })
            }
        }
    }
}

/// Size of one stored chunk of plugin wasm.
const CHUNK_BYTES: usize = 1 << 20;

#[async_trait::async_trait]
impl PluginStore for MongoBackend {
    async fn plugin_insert(
        &self,
        plugin: &PluginRecord,
        wasm: &[u8],
        quota: Option<&Quotas>,
    ) -> Result<()> {
        // Counted first (see `usage`): of racing uploads, only those that fit.
        let size = wasm.len() as u64;
        let takes = [
            Take {
                kind: QuotaKind::Plugins,
                amount: 1,
                limit: quota.map_or(u64::MAX, |q| q.plugins),
            },
            Take {
                kind: QuotaKind::PluginBytes,
                amount: size,
                limit: quota.map_or(u64::MAX, |q| q.plugin_bytes),
            },
        ];
        self.usage_take(&plugin.tenant, &takes).await?;
        let written = self.plugin_write(plugin, wasm).await;
        if written.is_err() {
            let gives = [(QuotaKind::Plugins, 1), (QuotaKind::PluginBytes, size)];
            self.usage_give(&plugin.tenant, &gives).await?;
        }
        written
    }

    async fn plugin_get(&self, id: &str) -> Result<Option<PluginRecord>> {
        self.get("plugins", id).await
    }

    async fn plugin_wasm(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let cursor = self
            .coll("plugin_chunks")
            .find(doc! { "plugin_id": id })
            .sort(doc! { "n": 1 })
            .await
            .map_err(db_err)?;
        let chunks: Vec<Document> = cursor.try_collect().await.map_err(db_err)?;
        if chunks.is_empty() {
            return Ok(None);
        }
        let mut wasm = Vec::new();
        for chunk in &chunks {
            let data = chunk
                .get_binary_generic("data")
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            wasm.extend_from_slice(data);
        }
        Ok(Some(wasm))
    }

    async fn plugin_list(
        &self,
        tenant: &str,
        filter: &PluginFilter,
        page: &PageQuery,
    ) -> Result<Vec<PluginRecord>> {
        let mut query = doc! { "tenant": tenant };
        set_if(&mut query, "name", filter.name.clone());
        set_if(&mut query, "version", filter.version.clone());
        self.list("plugins", query, page).await
    }

    async fn alias_put(&self, alias: &PluginAlias) -> Result<bool> {
        // A plugin being deleted is marked `deleting` before its delete
        // checks for aliases (see `plugin_delete`).
        let usable = || async {
            self.coll("plugins")
                .find_one(doc! { "_id": &alias.plugin_id, "deleting": { "$ne": true } })
                .await
                .map(|d| d.is_some())
                .map_err(db_err)
        };
        if !usable().await? {
            return Ok(false);
        }
        let json = serde_json::to_string(alias).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let id = alias_id(&alias.tenant, &alias.name, &alias.alias);
        let d = doc! {
            "_id": &id, "tenant": &alias.tenant, "name": &alias.name, "alias": &alias.alias,
            "plugin_id": &alias.plugin_id, "doc": json,
        };
        let aliases = self.coll("plugin_aliases");
        let before = aliases
            .find_one_and_replace(doc! { "_id": &id }, d)
            .upsert(true)
            .await
            .map_err(db_err)?;
        // A delete marked the plugin after the first look: put the alias
        // back as it was (unless another move has replaced this one since).
        if !usable().await? {
            let ours = doc! { "_id": &id, "plugin_id": &alias.plugin_id };
            match before {
                Some(previous) => aliases.replace_one(ours, previous).await.map(drop),
                None => aliases.delete_one(ours).await.map(drop),
            }
            .map_err(db_err)?;
            return Ok(false);
        }
        Ok(true)
    }

    async fn alias_delete(&self, tenant: &str, name: &str, alias: &str) -> Result<bool> {
        self.delete(
            "plugin_aliases",
            doc! { "_id": alias_id(tenant, name, alias) },
        )
        .await
    }

    async fn alias_get(
        &self,
        tenant: &str,
        name: &str,
        alias: &str,
    ) -> Result<Option<PluginAlias>> {
        self.get("plugin_aliases", &alias_id(tenant, name, alias))
            .await
    }

    async fn alias_list(&self, tenant: &str, name: &str) -> Result<Vec<PluginAlias>> {
        self.find(
            "plugin_aliases",
            doc! { "tenant": tenant, "name": name },
            doc! { "alias": 1 },
            1000,
        )
        .await
    }

    async fn plugin_delete(&self, id: &str) -> Result<bool> {
        // Marked first: an alias moved onto it from now on sees the mark and
        // takes itself back; one moved before is seen by the check.
        let plugins = self.coll("plugins");
        plugins
            .update_one(doc! { "_id": id }, doc! { "$set": { "deleting": true } })
            .await
            .map_err(db_err)?;
        if let Some(why) = self.plugin_in_use(id).await? {
            plugins
                .update_one(doc! { "_id": id }, doc! { "$unset": { "deleting": "" } })
                .await
                .map_err(db_err)?;
            return Err(StoreError::InUse(why));
        }
        let deleted = plugins
            .find_one_and_delete(doc! { "_id": id })
            .await
            .map_err(db_err)?;
        self.coll("plugin_chunks")
            .delete_many(doc! { "plugin_id": id })
            .await
            .map_err(db_err)?;
        let Some(deleted) = deleted else {
            return Ok(false);
        };
        if let Ok(plugin) = record::<PluginRecord>(&deleted) {
            let gives = [
                (QuotaKind::Plugins, 1),
                (QuotaKind::PluginBytes, plugin.size),
            ];
            self.usage_give(&plugin.tenant, &gives).await?;
        }
        Ok(true)
    }

    async fn tenant_usage(&self, tenant: &str) -> Result<Usage> {
        let plugins: Vec<taskhost_model::PluginRecord> = self
            .find(
                "plugins",
                doc! { "tenant": tenant },
                doc! { "_id": 1 },
                1_000_000,
            )
            .await?;
        let schedules = self
            .coll("schedules")
            .count_documents(doc! { "tenant": tenant })
            .await
            .map_err(db_err)?;
        Ok(Usage {
            plugins: plugins.len() as u64,
            plugin_bytes: plugins.iter().map(|p| p.size).sum(),
            schedules,
        })
    }
}

pub(super) fn alias_id(tenant: &str, name: &str, alias: &str) -> String {
    format!("{tenant}/{name}/{alias}")
}

impl MongoBackend {
    /// Why a plugin may not be deleted, if it may not (see
    /// [`crate::Backend::plugin_delete`]). Checked, then deleted: an
    /// alias moved onto the plugin between the two is not seen (MongoDB is
    /// used without multi-document transactions).
    pub(super) async fn plugin_in_use(&self, id: &str) -> Result<Option<String>> {
        let schedules = self.coll("schedules");
        if let Some(s) = schedules
            .find_one(doc! { "plugin_id": id, "plugin_alias": Bson::Null })
            .await
            .map_err(db_err)?
        {
            let name = s.get_str("name").unwrap_or("?");
            return Ok(Some(format!("the plugin is used by schedule {name:?}")));
        }
        if let Some(a) = self
            .coll("plugin_aliases")
            .find_one(doc! { "plugin_id": id })
            .await
            .map_err(db_err)?
        {
            let alias: PluginAlias = record(&a)?;
            return Ok(Some(format!(
                "alias {}@{} points to this plugin; move the alias first",
                alias.name, alias.alias
            )));
        }
        let Some(plugin) = self
            .get::<taskhost_model::PluginRecord>("plugins", id)
            .await?
        else {
            return Ok(None);
        };
        let newest: Vec<taskhost_model::PluginRecord> = self
            .find(
                "plugins",
                doc! { "tenant": &plugin.tenant, "name": &plugin.name },
                doc! { "_id": -1 },
                1,
            )
            .await?;
        let latest = format!("{}@{}", plugin.name, taskhost_model::LATEST);
        if newest.first().is_some_and(|p| p.id == id)
            && let Some(s) = schedules
                .find_one(doc! { "tenant": &plugin.tenant, "plugin_alias": &latest })
                .await
                .map_err(db_err)?
        {
            let name = s.get_str("name").unwrap_or("?");
            return Ok(Some(format!(
                "schedule {name:?} follows {latest}, and this is the newest version"
            )));
        }
        Ok(None)
    }
}
