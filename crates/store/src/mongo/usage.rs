//! What each tenant keeps, counted in one `tenant_usage` document per
//! tenant (plugins, their bytes, schedules), so that a quota is enforced
//! inside the write even with several nodes and no transaction: a write
//! first takes its share with one conditional `$inc` that matches only while
//! every count stays within its limit — of racing writers at the edge, only
//! as many as fit succeed — and a delete gives it back.
//!
//! The counts start from a scan the first time a tenant writes (a store from
//! before the counters). A node that dies between taking and writing leaves
//! the count one too high (a quota slightly too strict, never too loose).

use super::{MongoBackend, db_err, is_duplicate};
use crate::StoreError;
use crate::backend::Result;
use mongodb::bson::{Document, doc};
use taskhost_model::quota::{QuotaExceeded, QuotaKind};

/// One count a write takes: `amount` of `kind`, whose limit is `limit`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Take {
    pub kind: QuotaKind,
    pub amount: u64,
    pub limit: u64,
}

/// The field of `tenant_usage` that counts `kind`.
fn field(kind: QuotaKind) -> &'static str {
    kind.as_str()
}

fn count(d: &Document, kind: QuotaKind) -> u64 {
    d.get_i64(field(kind)).unwrap_or(0).max(0) as u64
}

impl MongoBackend {
    /// Takes every count of `takes` from `tenant`'s usage at once, or none
    /// (the first count over its limit is the refusal).
    pub(super) async fn usage_take(&self, tenant: &str, takes: &[Take]) -> Result<()> {
        let mut filter = doc! { "_id": tenant };
        let mut inc = Document::new();
        for t in takes {
            let Some(room) = t.limit.checked_sub(t.amount) else {
                return Err(StoreError::Quota(QuotaExceeded {
                    quota: t.kind,
                    limit: t.limit,
                    wanted: t.amount,
                }));
            };
            let room = i64::try_from(room).unwrap_or(i64::MAX);
            filter.insert(field(t.kind), doc! { "$lte": room });
            inc.insert(field(t.kind), t.amount as i64);
        }
        let usage = self.coll("tenant_usage");
        // Again after starting the counts, or after a delete made room.
        for _ in 0..3 {
            let taken = usage
                .update_one(filter.clone(), doc! { "$inc": inc.clone() })
                .await
                .map_err(db_err)?;
            if taken.matched_count == 1 {
                return Ok(());
            }
            match usage
                .find_one(doc! { "_id": tenant })
                .await
                .map_err(db_err)?
            {
                Some(d) => {
                    if let Some(refusal) = over(&d, takes) {
                        return Err(StoreError::Quota(refusal));
                    }
                }
                None => self.usage_start(tenant).await?,
            }
        }
        Err(StoreError::Contention(format!(
            "the usage of tenant {tenant}"
        )))
    }

    /// Gives back what a delete (or a failed write) freed.
    pub(super) async fn usage_give(&self, tenant: &str, gives: &[(QuotaKind, u64)]) -> Result<()> {
        let mut inc = Document::new();
        for (kind, amount) in gives {
            inc.insert(field(*kind), -(*amount as i64));
        }
        self.coll("tenant_usage")
            .update_one(doc! { "_id": tenant }, doc! { "$inc": inc })
            .await
            .map(drop)
            .map_err(db_err)
    }

    /// The tenant's first counts, from what it keeps now.
    async fn usage_start(&self, tenant: &str) -> Result<()> {
        use crate::traits::PluginStore;
        let kept = self.tenant_usage(tenant).await?;
        let start = doc! {
            "_id": tenant,
            field(QuotaKind::Plugins): kept.plugins as i64,
            field(QuotaKind::PluginBytes): kept.plugin_bytes as i64,
            field(QuotaKind::Schedules): kept.schedules as i64,
        };
        match self.coll("tenant_usage").insert_one(start).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => Ok(()),
            Err(e) => Err(db_err(e)),
        }
    }
}

/// The first count a take would pass, if any.
fn over(usage: &Document, takes: &[Take]) -> Option<QuotaExceeded> {
    takes.iter().find_map(|t| {
        let wanted = count(usage, t.kind).saturating_add(t.amount);
        (wanted > t.limit).then_some(QuotaExceeded {
            quota: t.kind,
            limit: t.limit,
            wanted,
        })
    })
}
