//! The audit log on SQLite: one row per record; expired rows go a few at a
//! time with each new one.

use super::{SqliteBackend, docs, ms, sql};
use crate::backend::{PageQuery, Result, json};
use crate::traits::AuditStore;
use chrono::{DateTime, Utc};
use rusqlite::ToSql;
use rusqlite::params;
use taskhost_model::audit::AuditRecord;

/// Expired records removed at each append, at most.
const SWEEP: i64 = 100;

#[async_trait::async_trait]
impl AuditStore for SqliteBackend {
    async fn audit_append(&self, record: &AuditRecord, now: DateTime<Utc>) -> Result<()> {
        let doc = json(record)?;
        let r = record.clone();
        self.call(move |c| {
            c.execute(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE expires_at <= ? LIMIT ?)",
                params![ms(now), SWEEP],
            )
            .map_err(sql)?;
            c.execute(
                "INSERT INTO audit (id, tenant, expires_at, doc) VALUES (?, ?, ?, ?)",
                params![r.id, r.tenant, ms(r.expires_at), doc],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn audit_list(&self, tenant: Option<&str>, page: &PageQuery) -> Result<Vec<AuditRecord>> {
        let (tenant, page) = (tenant.map(str::to_owned), page.clone());
        self.call_statement(move |c| {
            let mut text = String::from("SELECT doc FROM audit WHERE 1 = 1");
            let mut args: Vec<&dyn ToSql> = Vec::new();
            if let Some(t) = &tenant {
                text.push_str(" AND tenant = ?");
                args.push(t);
            }
            if let Some(before) = &page.before {
                text.push_str(" AND id < ?");
                args.push(before);
            }
            text.push_str(&format!(" ORDER BY id DESC LIMIT {}", page.limit));
            docs(c, &text, &args)
        })
        .await
    }
}
