//! Plugins' wasm on MongoDB, in chunks of [`CHUNK_BYTES`] (a document is
//! at most 16 MiB): the chunks are written first, so a plugin's record is
//! visible only with all its bytes.

use super::{MongoBackend, db_err, document, is_duplicate};
use crate::StoreError;
use crate::backend::{Result, plugin_row};
use futures::TryStreamExt;
use mongodb::bson::{self, Document, doc};
use taskhost_model::PluginRecord;

/// Size of one stored chunk of plugin wasm.
const CHUNK_BYTES: usize = 1 << 20;

impl MongoBackend {
    pub(super) async fn insert_plugin(&self, plugin: &PluginRecord, wasm: &[u8]) -> Result<()> {
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

    pub(super) async fn wasm_chunks(&self, id: &str) -> Result<Option<Vec<u8>>> {
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
}
