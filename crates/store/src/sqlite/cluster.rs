//! Locks and node heartbeats on SQLite: a lock is a row held by one owner
//! until its `expires_at`; every acquire compares that with now.

use super::rows::{insert_row, ms};
use super::{SqliteBackend, sql};
use crate::backend::{Result, from_doc, node_row};
use crate::traits::ClusterStore;
use chrono::{DateTime, Utc};
use rusqlite::params;
use taskhost_model::NodeInfo;

#[async_trait::async_trait]
impl ClusterStore for SqliteBackend {
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
