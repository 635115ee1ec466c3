//! A run's result and its held kv writes in one MongoDB transaction (see
//! `taskhost_model::effects`): the execution's compare-and-swap on its
//! version, then each kv write with the tenant's usage, committed together
//! or not at all.

use super::{MongoBackend, db_err, document, record};
use crate::StoreError;
use crate::backend::{ExecutionChange, Result, execution_row};
use mongodb::ClientSession;
use mongodb::bson::{self, Document, doc};
use taskhost_model::Execution;
use taskhost_model::effects::KvEffects;
use taskhost_model::kv::{KvNamespace, KvQuota};

/// Why one try of the transaction did not commit.
enum Try {
    /// `change` refused, or there is no such execution.
    Refused,
    /// Another writer moved the version, or the server asks to try again.
    Again,
}

impl MongoBackend {
    /// See [`crate::traits::ExecutionStore::execution_update_committing`].
    pub(super) async fn update_committing(
        &self,
        id: &str,
        mut change: ExecutionChange,
        effects: &KvEffects,
    ) -> Result<Option<Execution>> {
        for attempt in 0..crate::CAS_ATTEMPTS {
            if attempt > 0 {
                // Transactions writing the same keys (a tenant's kv usage)
                // conflict: a short, growing pause lets one through.
                let pause = 2u64.saturating_mul(attempt as u64).min(50);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            let mut session = self.db.client().start_session().await.map_err(db_err)?;
            session.start_transaction().await.map_err(db_err)?;
            let tried = self.try_once(&mut session, id, &mut change, effects).await;
            match tried {
                Ok(Ok(done)) => match commit(&mut session).await {
                    Ok(true) => return Ok(Some(done)),
                    Ok(false) => continue,
                    Err(e) => return Err(e),
                },
                Ok(Err(why)) => {
                    let _ = session.abort_transaction().await;
                    match why {
                        Try::Refused => return Ok(None),
                        Try::Again => continue,
                    }
                }
                Err(e) => {
                    let _ = session.abort_transaction().await;
                    return Err(e);
                }
            }
        }
        Err(StoreError::Contention(format!("execution {id}")))
    }

    async fn try_once(
        &self,
        session: &mut ClientSession,
        id: &str,
        change: &mut ExecutionChange,
        effects: &KvEffects,
    ) -> Result<std::result::Result<Execution, Try>> {
        let executions = self.coll("executions");
        let found = executions
            .find_one(doc! { "_id": id })
            .session(&mut *session)
            .await;
        let found = match found {
            Ok(found) => found,
            Err(e) if transient(&e) => return Ok(Err(Try::Again)),
            Err(e) => return Err(db_err(e)),
        };
        let Some(mut execution) = found.as_ref().map(record::<Execution>).transpose()? else {
            return Ok(Err(Try::Refused));
        };
        let expected = execution.version;
        if !change(&mut execution) {
            return Ok(Err(Try::Refused));
        }
        execution.version += 1;
        let row = execution_row(&execution)?;
        let filter = doc! { "_id": id, "version": expected as i64 };
        let replaced = executions
            .replace_one(filter, document(&row))
            .session(&mut *session)
            .await;
        match replaced {
            Ok(r) if r.matched_count == 1 => {}
            Ok(_) => return Ok(Err(Try::Again)),
            Err(e) if transient(&e) => return Ok(Err(Try::Again)),
            Err(e) => return Err(db_err(e)),
        }
        if let Some(ns) = &effects.namespace {
            for (key, value) in &effects.writes {
                let wrote = self
                    .write_in(session, ns, key, value.as_deref(), effects.quota)
                    .await;
                match wrote {
                    Ok(()) => {}
                    // Another transaction wrote the same key or usage: again.
                    Err(StoreError::Contention(_)) => return Ok(Err(Try::Again)),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Ok(execution))
    }

    /// One held write (`None`: a delete) in the transaction, with the
    /// tenant's usage and quota.
    async fn write_in(
        &self,
        session: &mut ClientSession,
        ns: &KvNamespace,
        key: &str,
        value: Option<&[u8]>,
        quota: Option<KvQuota>,
    ) -> Result<()> {
        let (kv, usage) = (self.coll("kv"), self.coll("kv_usage"));
        let id = doc! { "t": &ns.tenant, "p": &ns.plugin, "k": key };
        let old = kv
            .find_one(doc! { "_id": id.clone() })
            .session(&mut *session)
            .await
            .map_err(tx_err)?
            .and_then(|d| d.get_binary_generic("value").ok().map(Vec::len))
            .map(|len| (len + key.len()) as u64);
        let (keys, bytes) = match value {
            Some(v) => {
                let used = match quota {
                    Some(_) => Some(self.usage_in(session, &ns.tenant).await?),
                    None => None,
                };
                let change = KvQuota::admit(quota, used, old, (key.len() + v.len()) as u64)?;
                let data = bson::Binary {
                    subtype: bson::spec::BinarySubtype::Generic,
                    bytes: v.to_vec(),
                };
                kv.update_one(doc! { "_id": id }, doc! { "$set": { "value": data } })
                    .upsert(true)
                    .session(&mut *session)
                    .await
                    .map_err(tx_err)?;
                change
            }
            None => {
                let Some(old) = old else { return Ok(()) };
                kv.delete_one(doc! { "_id": id })
                    .session(&mut *session)
                    .await
                    .map_err(tx_err)?;
                (-1, -(old as i64))
            }
        };
        usage
            .update_one(
                doc! { "_id": &ns.tenant },
                doc! { "$inc": { "keys": keys, "bytes": bytes } },
            )
            .upsert(true)
            .session(&mut *session)
            .await
            .map(drop)
            .map_err(tx_err)
    }

    async fn usage_in(&self, session: &mut ClientSession, tenant: &str) -> Result<(u64, u64)> {
        let found = self
            .coll("kv_usage")
            .find_one(doc! { "_id": tenant })
            .session(&mut *session)
            .await
            .map_err(tx_err)?;
        let number = |d: &Document, k: &str| d.get_i64(k).unwrap_or(0).max(0) as u64;
        Ok(found.map_or((0, 0), |d| (number(&d, "keys"), number(&d, "bytes"))))
    }
}

/// Commits; `false` if the whole transaction should be tried again. A
/// commit whose result is unknown is itself tried again (that is safe).
async fn commit(session: &mut ClientSession) -> Result<bool> {
    for _ in 0..3 {
        match session.commit_transaction().await {
            Ok(()) => return Ok(true),
            Err(e) if e.contains_label(mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT) => {}
            Err(e) if transient(&e) => return Ok(false),
            Err(e) => return Err(db_err(e)),
        }
    }
    Err(StoreError::unavailable(
        "the commit's result stayed unknown",
    ))
}

/// A write's error in the transaction: `Contention` when the server asks
/// for the transaction to be tried again.
fn tx_err(e: mongodb::error::Error) -> StoreError {
    if transient(&e) {
        StoreError::Contention("a transaction's write conflicted".into())
    } else {
        db_err(e)
    }
}

/// Whether the server asks for the transaction to be tried again.
fn transient(e: &mongodb::error::Error) -> bool {
    e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR)
}
